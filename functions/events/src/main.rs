//! The notifications WebSocket API's Lambda: `$connect` (ticket checked,
//! connection recorded), `$disconnect`, `$default` (ping). Wiring only; the
//! logic is `imagegram::events`.

// The runtime future over the WebSocket event type nests deeper than the
// default limit allows the compiler to lay out.
#![recursion_limit = "256"]

use std::sync::Arc;

use aws_lambda_events::apigw::{ApiGatewayProxyResponse, ApiGatewayWebsocketProxyRequest};
use imagegram::config::{Env, EventsConfig};
use imagegram::events::Events;
use lambda_runtime::{Error, LambdaEvent, service_fn};
use tokio::sync::OnceCell;

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let metrics = imagegram::metrics::init("imagegram-events");
    let env = Env::from_process();
    let sdk = imagegram::config::aws_sdk().await;
    let secrets = aws_sdk_secretsmanager::Client::new(&sdk);
    // Loaded on the first event (the credentials and the ticket key are in
    // Secrets Manager); while that fails, connections are refused with a
    // 503 and the next event tries again.
    let events = Arc::new(OnceCell::new());
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<ApiGatewayWebsocketProxyRequest>| {
            let (events, env, secrets) = (Arc::clone(&events), env.clone(), secrets.clone());
            async move {
                let loaded = events
                    .get_or_try_init(|| async move {
                        let cfg = EventsConfig::load(&env, &secrets).await?;
                        Ok::<_, imagegram::Error>(Events::from_config(&cfg))
                    })
                    .await;
                let response = match loaded {
                    Ok(e) => e.handle(event.payload).await,
                    Err(e) => {
                        tracing::error!(error = %e, cause = ?std::error::Error::source(&e), "configuration not loaded");
                        imagegram::events::unavailable()
                    }
                };
                imagegram::metrics::flush(metrics);
                Ok::<ApiGatewayProxyResponse, Error>(response)
            }
        },
    ))
    .await
}
