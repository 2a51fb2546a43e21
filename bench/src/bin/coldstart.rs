//! Cold start of the API function binary, measured locally: from process
//! start to its first response, against a stand-in for the Lambda Runtime
//! API that serves one `GET /posts` event (the function's first database
//! connection and S3 client set-up included).
//!
//! ```text
//! imagegram-coldstart [--binary target/release/imagegram-api] [--runs 10]
//! ```

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use imagegram_bench::arg;
use tokio::sync::mpsc;

#[tokio::main]
async fn main() {
    let binary: String = arg("--binary", "target/release/imagegram-api".to_owned());
    let runs: usize = arg("--runs", 10);
    let event_file: String = arg("--event", "events/api-list-posts.json".to_owned());
    let event: &'static str = std::fs::read_to_string(&event_file)
        .unwrap_or_else(|e| panic!("{event_file}: {e}"))
        .leak();
    let mut times = Vec::new();
    let mut peak_kib = 0;
    for _ in 0..runs {
        let (t, kib) = once(&binary, event).await;
        times.push(t);
        peak_kib = peak_kib.max(kib);
    }
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "cold start of {binary} (process start to first response), {runs} runs: \
         median {:.1} ms, min {:.1} ms, max {:.1} ms; peak RSS {:.1} MiB ({event_file})",
        ms(times[runs / 2]),
        ms(times[0]),
        ms(times[runs - 1]),
        peak_kib as f64 / 1024.0
    );
}

/// Time to the first response, and the process's peak RSS (KiB) by then.
async fn once(binary: &str, event: &'static str) -> (Duration, u64) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<(Instant, String)>();
    let served = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let server = tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let (done_tx, served) = (done_tx.clone(), served.clone());
            tokio::spawn(async move {
                let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let (done_tx, served) = (done_tx.clone(), served.clone());
                    async move {
                        let path = req.uri().path().to_owned();
                        if path.ends_with("/invocation/next") {
                            if served.swap(true, std::sync::atomic::Ordering::SeqCst) {
                                // One invocation only: the next one never comes.
                                std::future::pending::<()>().await;
                            }
                            let deadline = std::time::SystemTime::now()
                                .duration_since(std::time::UNIX_EPOCH)
                                .unwrap()
                                .as_millis()
                                + 30_000;
                            return Ok::<_, Infallible>(
                                hyper::Response::builder()
                                    .header("Lambda-Runtime-Aws-Request-Id", "cold-start-1")
                                    .header("Lambda-Runtime-Deadline-Ms", deadline.to_string())
                                    .header(
                                        "Lambda-Runtime-Invoked-Function-Arn",
                                        "arn:aws:lambda:us-east-1:123456789012:function:imagegram-api",
                                    )
                                    .header("Lambda-Runtime-Trace-Id", "Root=1-00000000-000000000000000000000000")
                                    .body(Full::new(Bytes::from_static(event.as_bytes())))
                                    .unwrap(),
                            );
                        }
                        let body = http_body_util::BodyExt::collect(req.into_body())
                            .await
                            .unwrap()
                            .to_bytes();
                        let _ = done_tx.send((
                            Instant::now(),
                            format!("{path} {}", String::from_utf8_lossy(&body)),
                        ));
                        Ok(hyper::Response::builder()
                            .status(202)
                            .body(Full::new(Bytes::new()))
                            .unwrap())
                    }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    let started = Instant::now();
    let mut child = tokio::process::Command::new(binary)
        .env("AWS_LAMBDA_RUNTIME_API", addr.to_string())
        .env("AWS_LAMBDA_FUNCTION_NAME", "imagegram-api")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_LAMBDA_LOG_STREAM_NAME", "local")
        .env("AWS_LAMBDA_LOG_GROUP_NAME", "local")
        .env("RUST_LOG", "warn")
        // Its log and EMF lines are not this tool's output.
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("{binary}: {e}"));
    let (at, what) = tokio::time::timeout(Duration::from_secs(30), done_rx.recv())
        .await
        .expect("the function answered within 30 s")
        .unwrap();
    // An API event must answer 200; an SQS event, an empty batch response.
    assert!(
        what.contains("/response")
            && (what.contains("statusCode\":200") || what.contains("\"batchItemFailures\":[]")),
        "first answer: {what}"
    );
    // VmHWM: the most the process has held in memory so far.
    let status = std::fs::read_to_string(format!("/proc/{}/status", child.id().unwrap_or(0)))
        .unwrap_or_default();
    let peak_kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0);
    child.kill().await.ok();
    server.abort();
    (at - started, peak_kib)
}
