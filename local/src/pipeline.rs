//! The conversion pipeline, locally: the same converter and finalizer the
//! Lambdas run, each behind a poller of the queue its event source mapping
//! reads in AWS.

use std::sync::Arc;
use std::time::Duration;

use imagegram::objects::S3Objects;
use imagegram::pipeline::{Converter, Finalizer};
use imagegram::queue::SqsResults;
use imagegram::store::Store;

use crate::bootstrap::Queues;
use crate::poller;

/// The pipeline's function.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Function {
    Converter,
    Finalizer,
}

/// Which queue feeds which function, by their logical ids in `template.yaml`
/// (a test checks the template's SQS events against this table).
pub const EVENT_SOURCES: &[(&str, Function)] = &[
    ("ConversionQueue", Function::Converter),
    ("ResultsQueue", Function::Finalizer),
    ("ConversionDeadLetterQueue", Function::Finalizer),
];

/// Starts one poller per entry of [`EVENT_SOURCES`]. They run until the
/// runtime stops.
pub fn spawn<S: Store>(
    sqs: aws_sdk_sqs::Client,
    region: String,
    queues: &Queues,
    converter: Converter<S3Objects, SqsResults>,
    finalizer: Finalizer<S>,
    wait: Duration,
) {
    let converter = Arc::new(converter);
    let finalizer = Arc::new(finalizer);
    for (queue, function) in EVENT_SOURCES {
        let queue = queues
            .by_logical_id(queue)
            .expect("EVENT_SOURCES names known queues")
            .clone();
        let (sqs, region) = (sqs.clone(), region.clone());
        match function {
            Function::Converter => {
                let c = Arc::clone(&converter);
                tokio::spawn(poller::run(sqs, queue, region, wait, move |ev| {
                    let c = Arc::clone(&c);
                    async move { c.handle(ev).await }
                }));
            }
            Function::Finalizer => {
                let f = Arc::clone(&finalizer);
                tokio::spawn(poller::run(sqs, queue, region, wait, move |ev| {
                    let f = Arc::clone(&f);
                    async move { f.handle(ev).await }
                }));
            }
        }
    }
}
