//! What the functions measure, as CloudWatch Embedded Metric Format lines
//! (namespace `Imagegram`, dimension `Service`): the `metrics` facade
//! records, `metrics_cloudwatch_embedded` writes one JSON document per flush
//! to standard output, where Lambda's log stream hands it to CloudWatch
//! Metrics. Each function flushes after every invocation; the local stack
//! after every request and batch, into its log.

use std::time::Duration;

pub use metrics_cloudwatch_embedded::Collector;

pub const NAMESPACE: &str = "Imagegram";

/// Installs the process's recorder, once; `service` names the function
/// (`imagegram-api`, ...) in every metric's dimensions.
pub fn init(service: &'static str) -> &'static Collector {
    static COLLECTOR: std::sync::OnceLock<&'static Collector> = std::sync::OnceLock::new();
    COLLECTOR.get_or_init(|| {
        metrics_cloudwatch_embedded::Builder::new()
            .cloudwatch_namespace(NAMESPACE)
            .with_dimension("Service", service)
            .init()
            .expect("one metrics recorder per process")
    })
}

/// Writes what was recorded since the last flush, as EMF lines, to stdout.
pub fn flush(collector: &Collector) {
    if let Err(e) = collector.flush(std::io::stdout()) {
        tracing::warn!(error = %e, "metrics not written");
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// One API request: latency and count by route and status class (`2xx`...).
pub fn api_request(route: &str, status: u16, elapsed: Duration) {
    let labels = [
        ("Route", route.to_owned()),
        ("StatusClass", format!("{}xx", status / 100)),
    ];
    metrics::histogram!("ApiLatency", &labels).record(ms(elapsed));
    metrics::counter!("ApiRequests", &labels).increment(1);
}

/// One conversion: how long it took, how big the original was (bytes and
/// pixels, when it was decoded), by format and outcome.
pub fn conversion(
    format: &str,
    outcome: &str,
    elapsed: Duration,
    input_bytes: u64,
    pixels: Option<u64>,
) {
    let labels = [
        ("Format", format.to_owned()),
        ("Outcome", outcome.to_owned()),
    ];
    metrics::histogram!("ConversionDuration", &labels).record(ms(elapsed));
    metrics::histogram!("ConversionInputBytes", &labels).record(input_bytes as f64);
    if let Some(p) = pixels {
        metrics::histogram!("ConversionPixels", &labels).record(p as f64);
    }
    metrics::counter!("Conversions", &labels).increment(1);
}

/// How long a message waited in its queue before this receipt.
pub fn queue_age(age: Duration) {
    metrics::histogram!("QueueAge").record(ms(age));
}

/// From the original's upload (its S3 event time) to its post's
/// publication: the pipeline's latency as a user feels it.
pub fn upload_to_published(d: Duration) {
    metrics::histogram!("UploadToPublished").record(ms(d));
}

/// A conversion that kept failing, received from its dead-letter queue.
pub fn dead_letter() {
    metrics::counter!("DeadLetters").increment(1);
}

/// Notices delivered to open connections for one change of a post.
pub fn notices(delivered: usize) {
    metrics::counter!("NoticesDelivered").increment(delivered as u64);
}

/// A notification that failed or ran out of time (the post stands).
pub fn notice_failed() {
    metrics::counter!("NoticeFailures").increment(1);
}
