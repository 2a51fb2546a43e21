//! The converter Lambda: SQS (S3 notifications of originals) -> 600x600
//! JPEG -> results queue. Wiring only; the logic is
//! `imagegram::pipeline::converter`.

// The converter's future nests deeply (SDK calls inside spawn_blocking inside
// the runtime's service); the default limit is one short.
#![recursion_limit = "256"]

use std::sync::Arc;

use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};
use imagegram::config::{ConverterConfig, Env};
use imagegram::pipeline::Converter;
use lambda_runtime::{Error, LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let metrics = imagegram::metrics::init("imagegram-converter");
    let cfg = ConverterConfig::load(&Env::from_process())?;
    let sdk = imagegram::config::aws_sdk().await;
    let converter = Arc::new(Converter::from_config(
        &cfg,
        aws_sdk_s3::Client::new(&sdk),
        aws_sdk_sqs::Client::new(&sdk),
    ));
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| {
        let converter = Arc::clone(&converter);
        async move {
            let response = converter.handle(event.payload).await;
            imagegram::metrics::flush(metrics);
            Ok::<SqsBatchResponse, Error>(response)
        }
    }))
    .await
}
