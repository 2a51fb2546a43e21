//! Tracing, set up once per process. In Lambda, `AWS_LAMBDA_LOG_FORMAT=JSON`
//! switches to JSON lines that CloudWatch can query; the runtime's span puts
//! the request id on every line of an invocation.

use tracing_subscriber::EnvFilter;

pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let json = std::env::var("AWS_LAMBDA_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false);
    // try_init: a second call (tests, the local gateway) keeps the first.
    let _ = if json {
        builder
            .json()
            .with_current_span(true)
            .without_time()
            .try_init()
    } else {
        // Lambda adds its own timestamps to plain lines too, but locally we
        // want them.
        builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .try_init()
    };
}
