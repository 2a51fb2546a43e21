//! The pipeline's queue capabilities on SQS: results for the finalizer (the
//! converter's), conversion requests (the sweeper's).

use crate::Error;
use crate::pipeline::messages::ConversionResult;
use crate::pipeline::ports::{Conversions, Results};

/// One SQS queue, by URL.
pub struct SqsQueue {
    pub client: aws_sdk_sqs::Client,
    pub queue_url: String,
    /// For the error a client sees: "results queue", "conversion queue".
    pub what: &'static str,
}

impl SqsQueue {
    async fn send(&self, body: String) -> Result<(), Error> {
        self.client
            .send_message()
            .queue_url(&self.queue_url)
            .message_body(body)
            .send()
            .await
            .map_err(|e| Error::unavailable(self.what, e))?;
        Ok(())
    }
}

impl Results for SqsQueue {
    async fn send(&self, result: &ConversionResult) -> Result<(), Error> {
        SqsQueue::send(
            self,
            serde_json::to_string(result).map_err(Error::internal)?,
        )
        .await
    }
}

impl Conversions for SqsQueue {
    /// The message S3 sends for a new original, so the converter needs no
    /// second way in.
    async fn request(&self, bucket: &str, key: &str) -> Result<(), Error> {
        let body = serde_json::json!({ "Records": [{
            "eventSource": "imagegram:sweeper",
            "eventName": "ObjectCreated:Sweeper",
            "s3": { "bucket": { "name": bucket }, "object": { "key": key } },
        }] });
        SqsQueue::send(self, body.to_string()).await
    }
}
