//! The API Lambda: every HTTP API route. Wiring only; the logic is
//! `imagegram::api`.

use std::convert::Infallible;
use std::sync::Arc;

use imagegram::api::{self, App};
use imagegram::config::{ApiConfig, Env};
use lambda_http::{Error, Request, service_fn};
use tokio::sync::OnceCell;

#[tokio::main]
async fn main() -> Result<(), Error> {
    // The runtime's own setup: it honours the function's LoggingConfig
    // (AWS_LAMBDA_LOG_FORMAT, AWS_LAMBDA_LOG_LEVEL).
    lambda_http::tracing::init_default_subscriber();
    let metrics = imagegram::metrics::init("imagegram-api");
    let env = Env::from_process();
    // Built once per container and lent to every invocation.
    let sdk = imagegram::config::aws_sdk().await;
    let secrets = aws_sdk_secretsmanager::Client::new(&sdk);
    let s3 = aws_sdk_s3::Client::new(&sdk);
    let credentials = sdk.credentials_provider();
    // The configuration needs Secrets Manager. Read on the first request and
    // kept: were it read before the runtime starts, an unreachable Secrets
    // Manager would fail the init, and API Gateway would answer its own 500;
    // here that request gets the contract's 503 and the next one tries again.
    let app = Arc::new(OnceCell::new());
    lambda_http::run(service_fn(move |req: Request| {
        let (app, env, secrets, s3) = (Arc::clone(&app), env.clone(), secrets.clone(), s3.clone());
        let credentials = credentials.clone();
        async move {
            let loaded = app
                .get_or_try_init(|| async move {
                    let cfg = ApiConfig::load(&env, &secrets).await?;
                    Ok::<_, imagegram::Error>(App::from_config(&cfg, s3, credentials))
                })
                .await;
            let resp = match loaded {
                Ok(app) => api::handle(app, req).await,
                Err(e) => {
                    tracing::error!(error = %e, cause = ?std::error::Error::source(&e), "configuration not loaded");
                    api::error_response(&e)
                }
            };
            imagegram::metrics::flush(metrics);
            Ok::<_, Infallible>(resp)
        }
    }))
    .await
}
