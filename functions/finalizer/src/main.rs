//! The finalizer Lambda: SQS (conversion results, and the conversion
//! queue's dead letters) -> post records in MySQL. Wiring only; the logic is
//! `imagegram::pipeline::finalizer`.

use std::sync::Arc;

use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};
use imagegram::config::FinalizerConfig;
use imagegram::pipeline::Finalizer;
use imagegram::store::MySqlStore;
use lambda_runtime::{Error, LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    imagegram::telemetry::init();
    let cfg = FinalizerConfig::from_env()?;
    let finalizer = Arc::new(Finalizer {
        store: MySqlStore::connect(cfg.database_url.expose(), cfg.db_pool_max)?,
    });
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| {
        let finalizer = Arc::clone(&finalizer);
        async move { Ok::<SqsBatchResponse, Error>(finalizer.handle(event.payload).await) }
    }))
    .await
}
