//! The conversion pipeline, locally: the same converter and finalizer the
//! Lambdas run, each behind a poller of the queue its event source mapping
//! reads in AWS.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use imagegram::notify::Notify;
use imagegram::objects::S3Objects;
use imagegram::pipeline::{Converter, Finalizer};
use imagegram::queue::SqsQueue;
use imagegram::store::Outcomes;

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
    ("ResultsDeadLetterQueue", Function::Finalizer),
];

/// The pollers that play the template's event source mappings: one per
/// entry of [`EVENT_SOURCES`]. A function's pollers can be stopped (killed
/// mid-work, as a Lambda that times out or crashes) and started again.
pub struct Pipeline<S, N = imagegram::notify::Deployed> {
    sqs: aws_sdk_sqs::Client,
    region: String,
    queues: Queues,
    converter: Arc<Converter<S3Objects, SqsQueue>>,
    finalizer: Arc<Finalizer<S, N>>,
    wait: Duration,
    running: Mutex<Vec<(Function, tokio::task::JoinHandle<()>)>>,
}

impl<S: Outcomes, N: Notify> Pipeline<S, N> {
    pub fn new(
        sqs: aws_sdk_sqs::Client,
        region: String,
        queues: &Queues,
        converter: Converter<S3Objects, SqsQueue>,
        finalizer: Finalizer<S, N>,
        wait: Duration,
    ) -> Self {
        Pipeline {
            sqs,
            region,
            queues: queues.clone(),
            converter: Arc::new(converter),
            finalizer: Arc::new(finalizer),
            wait,
            running: Mutex::default(),
        }
    }

    /// Starts `function`'s pollers.
    pub fn start(&self, function: Function) {
        for (queue, f) in EVENT_SOURCES.iter().filter(|(_, f)| *f == function) {
            let queue = self
                .queues
                .by_logical_id(queue)
                .expect("EVENT_SOURCES names known queues")
                .clone();
            let (sqs, region, wait) = (self.sqs.clone(), self.region.clone(), self.wait);
            let handle = match f {
                Function::Converter => {
                    let c = Arc::clone(&self.converter);
                    tokio::spawn(poller::run(sqs, queue, region, wait, move |ev| {
                        let c = Arc::clone(&c);
                        async move { c.handle(ev).await }
                    }))
                }
                Function::Finalizer => {
                    let fin = Arc::clone(&self.finalizer);
                    tokio::spawn(poller::run(sqs, queue, region, wait, move |ev| {
                        let fin = Arc::clone(&fin);
                        async move { fin.handle(ev).await }
                    }))
                }
            };
            self.running
                .lock()
                .expect("pollers lock")
                .push((*f, handle));
        }
    }

    /// Stops `function`'s pollers where they are: a batch in hand is
    /// neither answered nor deleted, so its messages come back after their
    /// visibility timeout.
    pub fn stop(&self, function: Function) {
        self.running.lock().expect("pollers lock").retain(|(f, h)| {
            if *f == function {
                h.abort();
            }
            *f != function
        });
    }
}
