//! The API Lambda: every HTTP API route. Wiring only; the logic is
//! `imagegram::api`.

use std::convert::Infallible;
use std::sync::Arc;

use imagegram::api::{self, App};
use imagegram::config::ApiConfig;
use lambda_http::{Error, Request, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    imagegram::telemetry::init();
    let cfg = ApiConfig::from_env()?;
    // Built once per container and lent to every invocation.
    let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let app = Arc::new(App::from_config(&cfg, &sdk)?);
    lambda_http::run(service_fn(move |req: Request| {
        let app = Arc::clone(&app);
        async move { Ok::<_, Infallible>(api::handle(&app, req).await) }
    }))
    .await
}
