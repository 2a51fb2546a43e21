//! The local SQS event source mapping: long-polls a queue, builds the SQS
//! event exactly as Lambda does, calls the same handler, and deletes only the
//! messages not listed in `batchItemFailures`. The rest come back after the
//! visibility timeout and, after `maxReceiveCount` receives, move to the
//! dead-letter queue, as in AWS.

use std::collections::HashSet;
use std::future::Future;
use std::time::Duration;

use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};
use aws_sdk_sqs::types::{DeleteMessageBatchRequestEntry, MessageSystemAttributeName};
use serde_json::json;

/// A queue and what Lambda would know of it.
#[derive(Clone, Debug)]
pub struct QueueRef {
    pub url: String,
    pub arn: String,
}

/// Polls `queue` until the task is dropped.
pub async fn run<F, Fut>(
    sqs: aws_sdk_sqs::Client,
    queue: QueueRef,
    region: String,
    wait: Duration,
    handler: F,
) where
    F: Fn(SqsEvent) -> Fut,
    Fut: Future<Output = SqsBatchResponse>,
{
    loop {
        let received = sqs
            .receive_message()
            .queue_url(&queue.url)
            .max_number_of_messages(10)
            .wait_time_seconds(wait.as_secs() as i32)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .message_attribute_names("All")
            .send()
            .await;
        let messages = match received {
            Ok(out) => out.messages.unwrap_or_default(),
            Err(e) => {
                tracing::warn!(queue = queue.url, error = ?e, "receive failed; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        if messages.is_empty() {
            continue;
        }
        let records: Vec<serde_json::Value> = messages
            .iter()
            .map(|m| {
                let attributes: serde_json::Map<String, serde_json::Value> = m
                    .attributes()
                    .into_iter()
                    .flatten()
                    .map(|(k, v)| (k.as_str().to_owned(), json!(v)))
                    .collect();
                json!({
                    "messageId": m.message_id(),
                    "receiptHandle": m.receipt_handle(),
                    "body": m.body(),
                    "attributes": attributes,
                    "messageAttributes": {},
                    "md5OfBody": m.md5_of_body(),
                    "eventSource": "aws:sqs",
                    "eventSourceARN": queue.arn,
                    "awsRegion": region,
                })
            })
            .collect();
        let event: SqsEvent = match serde_json::from_value(json!({ "Records": records })) {
            Ok(e) => e,
            Err(e) => {
                tracing::error!(error = %e, "could not build an SQS event");
                continue;
            }
        };
        let response = handler(event).await;
        let failed: HashSet<&str> = response
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.as_str())
            .collect();
        let entries: Vec<DeleteMessageBatchRequestEntry> = messages
            .iter()
            .enumerate()
            .filter(|(_, m)| !failed.contains(m.message_id().unwrap_or_default()))
            .filter_map(|(i, m)| {
                DeleteMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(m.receipt_handle().unwrap_or_default())
                    .build()
                    .ok()
            })
            .collect();
        if !entries.is_empty()
            && let Err(e) = sqs
                .delete_message_batch()
                .queue_url(&queue.url)
                .set_entries(Some(entries))
                .send()
                .await
        {
            tracing::warn!(queue = queue.url, error = %e, "delete failed; the messages will come back");
        }
    }
}
