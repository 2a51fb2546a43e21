//! The conversion pipeline.
//!
//! ```text
//! S3 ObjectCreated (originals/) -> conversion queue -> converter
//!     -> converted/<id>.jpg in S3, and a ConversionResult -> results queue
//!     -> finalizer -> MySQL (published | failed)
//! conversion queue --(5 receives)--> dead-letter queue -> finalizer (failed)
//! ```
//!
//! The converter hands its result to the finalizer through a queue of its
//! own rather than writing MySQL itself: the converter then needs no database
//! (no VPC, no connection per conversion, nothing to hold while decoding
//! 100 MiB), results survive a database outage as queued messages, and a
//! permanent failure carries its reason, which an S3 event on the converted
//! prefix could not.

/// The conversion itself: the `imagegram-pixels` crate.
#[cfg(feature = "converter")]
pub use imagegram_pixels as convert;
#[cfg(feature = "converter")]
pub mod converter;
#[cfg(feature = "finalizer")]
pub mod finalizer;
pub mod messages;
pub mod ports;
#[cfg(feature = "sweeper")]
pub mod sweeper;

#[cfg(feature = "converter")]
pub use converter::Converter;
#[cfg(feature = "finalizer")]
pub use finalizer::Finalizer;
#[cfg(feature = "sweeper")]
pub use sweeper::Sweeper;

#[cfg(any(feature = "converter", feature = "finalizer"))]
use aws_lambda_events::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};

/// What a pipeline function does with one message body. Err only for
/// transient trouble: the message is then retried. (The SQS consumers'
/// only: the sweeper runs on a schedule.)
#[cfg(any(feature = "converter", feature = "finalizer"))]
pub(crate) trait Process: Sync {
    fn process(
        &self,
        body: &str,
    ) -> impl std::future::Future<Output = Result<(), crate::Error>> + Send;
}

/// Runs `process` on each message's body. Messages whose processing failed
/// (transiently: permanent failures are recorded, not returned) go back in
/// the partial batch response, for SQS to redeliver; the rest are done.
#[cfg(any(feature = "converter", feature = "finalizer"))]
pub(crate) async fn each_message<P: Process>(processor: &P, event: SqsEvent) -> SqsBatchResponse {
    let mut response = SqsBatchResponse::default();
    for message in event.records {
        let id = message.message_id.unwrap_or_default();
        if let Some(sent) = message
            .attributes
            .get("SentTimestamp")
            .and_then(|t| t.parse::<u64>().ok())
        {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default();
            crate::metrics::queue_age(now.saturating_sub(std::time::Duration::from_millis(sent)));
        }
        // Every line of this message's work carries its id, and the post's
        // once the processor knows it.
        let span = tracing::info_span!(
            "message",
            message_id = id.as_str(),
            post_id = tracing::field::Empty
        );
        let result = tracing::Instrument::instrument(
            processor.process(message.body.as_deref().unwrap_or("")),
            span,
        )
        .await;
        if let Err(e) = result {
            tracing::warn!(message_id = id.as_str(), error = %e, "will be retried");
            let mut failure = BatchItemFailure::default();
            failure.item_identifier = id;
            response.batch_item_failures.push(failure);
        }
    }
    response
}
