//! What operators see besides logs: the functions' metrics, as CloudWatch
//! Embedded Metric Format lines.

use imagegram_tests::images::{bands, encode_rgb};
use imagegram_tests::spawn_app;
use serde_json::Value;

#[tokio::test]
async fn a_conversion_emits_its_metrics_as_emf_lines() {
    // The same recorder the functions install (once per process).
    let collector = imagegram::metrics::init("imagegram-tests");
    let app = spawn_app().await;
    let png = encode_rgb(&bands(64, 48, &[[1, 2, 3]]), image::ImageFormat::Png);
    let id = app.post_image("alice", "image/png", &png).await;
    let post = app.wait_until_final(&id, "alice").await;
    assert_eq!(post["status"], "published");

    // The finalizer records UploadToPublished just after the post turns
    // published, which the test may see first: collect what is flushed for
    // a little while, until it is there.
    let mut docs: Vec<Value> = Vec::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let mut out = Vec::new();
        collector.flush(&mut out).unwrap();
        docs.extend(
            String::from_utf8(out).unwrap().lines().map(|l| {
                serde_json::from_str::<Value>(l).expect("every line is one JSON document")
            }),
        );
        let seen = docs.iter().any(|d| !d["UploadToPublished"].is_null());
        if seen || std::time::Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    // Each document declares its namespace, dimensions and metric names.
    let declares = |doc: &Value, name: &str| {
        doc["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "Imagegram"
            && doc["_aws"]["CloudWatchMetrics"][0]["Metrics"]
                .as_array()
                .is_some_and(|ms| ms.iter().any(|m| m["Name"] == name))
            && doc["Service"] == "imagegram-tests"
    };
    let find = |name: &str, pred: &dyn Fn(&Value) -> bool| {
        docs.iter()
            .find(|d| declares(d, name) && pred(d))
            .unwrap_or_else(|| panic!("no {name} metric in {docs:#?}"))
            .clone()
    };
    let png_published = |d: &Value| d["Format"] == "PNG" && d["Outcome"] == "published";
    find("ConversionDuration", &png_published);
    let bytes = find("ConversionInputBytes", &png_published);
    let sizes: Vec<f64> = values(&bytes["ConversionInputBytes"]);
    assert!(sizes.contains(&(png.len() as f64)), "{sizes:?}");
    let pixels = find("ConversionPixels", &png_published);
    assert!(values(&pixels["ConversionPixels"]).contains(&(64.0 * 48.0)));
    find("Conversions", &png_published);
    find("QueueAge", &|_| true);
    find("UploadToPublished", &|_| true);
    let api = find("ApiLatency", &|d| {
        d["Route"] == "POST /posts/{id}/upload/complete" && d["StatusClass"] == "2xx"
    });
    assert!(!values(&api["ApiLatency"]).is_empty());
}

/// A metric's recorded values: one number or a list of them.
fn values(v: &Value) -> Vec<f64> {
    match v {
        Value::Array(a) => a.iter().filter_map(Value::as_f64).collect(),
        other => other.as_f64().into_iter().collect(),
    }
}
