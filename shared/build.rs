//! The API serves `openapi.yaml` (the repository's top level) as JSON at
//! `GET /openapi.json`: converted here, once per build, so the function
//! carries no YAML parser.

fn main() {
    // Read at run time: the build script's binary can be reused from a
    // checkout at another path (cargo hashes path packages by their place
    // in the workspace), and a path baked in with env! would then read
    // that checkout's spec.
    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let spec = std::path::Path::new(&dir).join("../openapi.yaml");
    println!("cargo:rerun-if-changed={}", spec.display());
    let yaml = std::fs::read_to_string(&spec).unwrap_or_else(|e| panic!("{}: {e}", spec.display()));
    let value: serde_json::Value =
        serde_norway::from_str(&yaml).unwrap_or_else(|e| panic!("openapi.yaml: {e}"));
    let out = std::path::Path::new(&std::env::var("OUT_DIR").unwrap()).join("openapi.json");
    std::fs::write(out, serde_json::to_string(&value).unwrap()).unwrap();
}
