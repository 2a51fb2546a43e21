//! The converter's results capability, on SQS: each result is one message
//! on the finalizer's queue.

use crate::Error;
use crate::pipeline::converter::Results;
use crate::pipeline::messages::ConversionResult;

pub struct SqsResults {
    pub client: aws_sdk_sqs::Client,
    pub queue_url: String,
}

impl Results for SqsResults {
    async fn send(&self, result: &ConversionResult) -> Result<(), Error> {
        let body = serde_json::to_string(result).map_err(Error::internal)?;
        self.client
            .send_message()
            .queue_url(&self.queue_url)
            .message_body(body)
            .send()
            .await
            .map_err(|e| Error::unavailable("results queue", e))?;
        Ok(())
    }
}
