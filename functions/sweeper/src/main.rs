//! The sweeper Lambda: on EventBridge Scheduler's schedule, settles posts
//! stuck in `processing` or past their upload deadline. Wiring only; the
//! logic is `imagegram::pipeline::sweeper`.

use std::sync::Arc;

use imagegram::config::{Env, SweeperConfig};
use imagegram::notify::Connections;
use imagegram::pipeline::Sweeper;
use imagegram::pipeline::sweeper::Swept;
use lambda_runtime::{Error, LambdaEvent, service_fn};
use tokio::sync::OnceCell;

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let metrics = imagegram::metrics::init("imagegram-sweeper");
    let env = Env::from_process();
    let sdk = imagegram::config::aws_sdk().await;
    let (s3, sqs) = (
        aws_sdk_s3::Client::new(&sdk),
        aws_sdk_sqs::Client::new(&sdk),
    );
    let secrets = aws_sdk_secretsmanager::Client::new(&sdk);
    let credentials = sdk.credentials_provider();
    // Loaded on the first run (the credentials are in Secrets Manager); a
    // run that cannot load them fails, and the next one tries again.
    let sweeper = Arc::new(OnceCell::new());
    lambda_runtime::run(service_fn(move |_: LambdaEvent<serde_json::Value>| {
        let (sweeper, env, secrets) = (Arc::clone(&sweeper), env.clone(), secrets.clone());
        let (s3, sqs, sdk, credentials) =
            (s3.clone(), sqs.clone(), sdk.clone(), credentials.clone());
        async move {
            let sweeper = sweeper
                .get_or_try_init(|| async move {
                    let cfg = SweeperConfig::load(&env, &secrets).await?;
                    let connections = Connections::new(&sdk, &cfg.notify.endpoint);
                    Ok::<_, imagegram::Error>(Sweeper::from_config(
                        &cfg,
                        s3,
                        sqs,
                        credentials,
                        connections,
                    ))
                })
                .await?;
            let swept: Result<Swept, imagegram::Error> = sweeper.run().await;
            imagegram::metrics::flush(metrics);
            Ok::<Swept, Error>(swept?)
        }
    }))
    .await
}
