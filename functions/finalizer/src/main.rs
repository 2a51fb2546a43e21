//! The finalizer Lambda: SQS (conversion results, and the conversion
//! queue's dead letters) -> post records in MySQL, then the author told
//! over the notifications WebSocket API. Wiring only; the logic is
//! `imagegram::pipeline::finalizer`.

use std::sync::Arc;

use aws_lambda_events::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use imagegram::config::{Env, FinalizerConfig};
use imagegram::notify::{Connections, Notifier};
use imagegram::pipeline::Finalizer;
use imagegram::store::MySqlStore;
use lambda_runtime::{Error, LambdaEvent, service_fn};
use tokio::sync::OnceCell;

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let metrics = imagegram::metrics::init("imagegram-finalizer");
    let env = Env::from_process();
    let sdk = imagegram::config::aws_sdk().await;
    let secrets = aws_sdk_secretsmanager::Client::new(&sdk);
    let s3 = aws_sdk_s3::Client::new(&sdk);
    // Loaded on the first batch (the credentials are in Secrets Manager);
    // while that fails, every message goes back to the queue for a retry.
    let finalizer = Arc::new(OnceCell::new());
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| {
        let (finalizer, env, secrets) = (Arc::clone(&finalizer), env.clone(), secrets.clone());
        let (sdk, s3) = (sdk.clone(), s3.clone());
        async move {
            let loaded = finalizer
                .get_or_try_init(|| async move {
                    let cfg = FinalizerConfig::load(&env, &secrets).await?;
                    let store = MySqlStore::connect(&cfg.db, cfg.db_pool_max);
                    Ok::<_, imagegram::Error>(Finalizer {
                        notify: Notifier::from_config(
                            &cfg.notify,
                            store.clone(),
                            s3,
                            sdk.credentials_provider(),
                            Connections::new(&sdk, &cfg.notify.endpoint),
                        ),
                        store,
                    })
                })
                .await;
            let response = match loaded {
                Ok(f) => f.handle(event.payload).await,
                Err(e) => {
                    tracing::error!(error = %e, cause = ?std::error::Error::source(&e), "configuration not loaded");
                    let mut retry_all = SqsBatchResponse::default();
                    for m in event.payload.records {
                        let mut f = BatchItemFailure::default();
                        f.item_identifier = m.message_id.unwrap_or_default();
                        retry_all.batch_item_failures.push(f);
                    }
                    retry_all
                }
            };
            imagegram::metrics::flush(metrics);
            Ok::<SqsBatchResponse, Error>(response)
        }
    }))
    .await
}
