//! Shared by the benchmark binaries: argument parsing and the seeded
//! dataset's shape.

/// `--name value` from the command line, or `default`.
pub fn arg<T: std::str::FromStr>(name: &str, default: T) -> T {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(|v| {
            v.parse()
                .unwrap_or_else(|_| panic!("{name}: cannot parse {v:?}"))
        })
        .unwrap_or(default)
}

pub fn database_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "mysql://imagegram:imagegram@127.0.0.1:3306/imagegram".into())
}

/// The feed's skew, for 1M posts and 5M comments: a few posts with 100k
/// comments, a power-law middle, a long tail with none. Each tier is
/// (share of posts, comments per post); both scale with the requested sizes.
pub const TIERS: &[(f64, u64)] = &[
    (0.000_005, 100_000), // 5 posts
    (0.000_05, 10_000),   // 50
    (0.000_5, 1_000),     // 500
    (0.005, 100),         // 5,000
    (0.1, 25),            // 100,000
    (0.5, 1),             // 500,000; the rest (~39%) have none
];

/// TLS by aws-lc-rs, the provider the rest of the project uses; reqwest
/// needs one installed before its first client.
pub fn install_tls_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}
