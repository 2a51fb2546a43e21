//! Every `events/api-*.json` fed through the API handler, as Lambda would.

use std::time::Duration;

use imagegram::api::{self, App};
use imagegram::cursor::CursorCodec;
use imagegram::domain::PostId;
use imagegram::objects::S3Objects;
use imagegram_tests::{build_stack, fresh_database, sdk_config};
use mysql_async::prelude::*;

use imagegram_local::fixtures::{EVENTS_POST as POST, PostFixture};

/// `events/expected.json`: what each sample event gives, in order. The
/// same oracle judges `sam local invoke` of each file (scripts/sam-local),
/// so the two agree.
fn manifest() -> Vec<serde_json::Value> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../events/expected.json");
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    v["events"].as_array().unwrap().clone()
}

/// The top-level keys of a JSON object, sorted.
fn keys(v: &serde_json::Value) -> Vec<String> {
    let mut k: Vec<String> = v
        .as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default();
    k.sort();
    k
}

/// The keys a manifest entry expects, sorted.
fn expected_keys(expected: &serde_json::Value) -> Vec<String> {
    let mut k: Vec<String> = expected["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k.as_str().unwrap().to_owned())
        .collect();
    k.sort();
    k
}

fn event(name: &str) -> lambda_http::Request {
    let path = format!("{}/../events/{name}", env!("CARGO_MANIFEST_DIR"));
    let json = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    lambda_http::request::from_str(&json)
        .unwrap_or_else(|e| panic!("{name} is not an HTTP API event: {e}"))
}

#[tokio::test]
async fn every_api_event_file_runs_through_the_handler() {
    // The API function as the local stack builds it: its template
    // configuration and policy.
    let (parts, _) = build_stack(|_| {}).await;
    let app = parts.running.app;
    let store = app.store.clone();
    // The post and comment the event files name, the comment by their
    // caller: the fixture scripts/sam-local makes too.
    imagegram_local::fixtures::events(&store).await.unwrap();

    for expected in manifest().iter().filter(|e| e["function"] == "ApiFunction") {
        let name = expected["file"].as_str().unwrap();
        let status = expected["status"].as_u64().unwrap() as u16;
        let resp = api::handle(&app, event(name)).await;
        let body = String::from_utf8_lossy(resp.body().as_ref()).into_owned();
        assert_eq!(resp.status().as_u16(), status, "{name}: {body}");
        let want = expected_keys(expected);
        if status == 204 {
            assert!(body.is_empty(), "{name}");
            continue;
        }
        assert_eq!(resp.headers()["content-type"], "application/json", "{name}");
        let v: serde_json::Value =
            serde_json::from_str(&body).unwrap_or_else(|_| panic!("{name}: {body}"));
        assert_eq!(keys(&v), want, "{name}: {body}");
    }
}

#[tokio::test]
async fn every_websocket_event_file_runs_through_the_events_handler() {
    // The EventsFunction as the local stack builds it.
    let (parts, _) = build_stack(|_| {}).await;
    let events = parts.running.events;
    for expected in manifest()
        .iter()
        .filter(|e| e["function"] == "EventsFunction")
    {
        let name = expected["file"].as_str().unwrap();
        let path = format!("{}/../events/{name}", env!("CARGO_MANIFEST_DIR"));
        let event: aws_lambda_events::apigw::ApiGatewayWebsocketProxyRequest =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap())
                .unwrap_or_else(|e| panic!("{name} is not a WebSocket event: {e}"));
        let resp = events.handle(event).await;
        assert_eq!(
            resp.status_code,
            expected["status"].as_i64().unwrap(),
            "{name}: {resp:?}"
        );
        let body = match resp.body {
            Some(aws_lambda_events::encodings::Body::Text(t)) => t,
            None => String::new(),
            other => panic!("{name}: {other:?}"),
        };
        let got = if body.is_empty() {
            Vec::new()
        } else {
            keys(&serde_json::from_str(&body).unwrap())
        };
        assert_eq!(got, expected_keys(expected), "{name}: {body}");
    }
}

#[tokio::test]
async fn the_sweeper_event_runs_the_sweeper() {
    let app = imagegram_tests::spawn_app().await;
    let expected = manifest()
        .into_iter()
        .find(|e| e["function"] == "SweeperFunction")
        .unwrap();
    let swept = serde_json::to_value(app.sweeper.run().await.unwrap()).unwrap();
    assert_eq!(keys(&swept), expected_keys(&expected));
    // The file is what EventBridge Scheduler sends the template's schedule
    // (no Input): the handler takes any JSON.
    let file = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../events/schedule-sweeper.json"
    ))
    .unwrap();
    serde_json::from_str::<serde_json::Value>(&file).unwrap();
}

/// An `events/sqs-*.json` file, with the sample bucket name swapped for the
/// test's own.
fn sqs_event(name: &str, bucket: &str) -> aws_lambda_events::sqs::SqsEvent {
    let path = format!("{}/../events/{name}", env!("CARGO_MANIFEST_DIR"));
    let json = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&json.replace("imagegram-images-123456789012-us-east-1", bucket))
        .unwrap_or_else(|e| panic!("{name} is not an SQS event: {e}"))
}

#[tokio::test]
async fn every_converter_event_file_runs_through_the_converter() {
    // The converter as the local stack builds it (its pollers not started).
    let (parts, spec) = build_stack(|s| s.visibility_secs = 30).await;
    let (converter, queues, bucket) = (parts.converter, parts.running.queues, spec.bucket);
    let sdk = sdk_config().await;
    let s3 = aws_sdk_s3::Client::new(&sdk);
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    // The original the multipart event names.
    let png = imagegram_tests::images::encode_rgb(
        &imagegram_tests::images::bands(640, 480, &[[200, 10, 10]]),
        image::ImageFormat::Png,
    );
    s3.put_object()
        .bucket(&bucket)
        .key(format!("originals/{POST}"))
        .body(png.into())
        .send()
        .await
        .unwrap();
    let files: Vec<String> = manifest()
        .iter()
        .filter(|e| e["function"] == "ConverterFunction")
        .map(|e| e["file"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(files.len(), 4);
    for name in &files {
        let response = converter.handle(sqs_event(name, &bucket)).await;
        assert!(
            response.batch_item_failures.is_empty(),
            "{name}: nothing to retry"
        );
    }
    // Exactly one result: the multipart event's; the others were acknowledged.
    let received = sqs
        .receive_message()
        .queue_url(&queues.results.url)
        .max_number_of_messages(10)
        .wait_time_seconds(1)
        .send()
        .await
        .unwrap();
    let mut bodies: Vec<serde_json::Value> = received
        .messages()
        .iter()
        .map(|m| serde_json::from_str(m.body().unwrap()).unwrap())
        .collect();
    // The placeholder of the (solid red) image it made.
    let hash = bodies
        .first_mut()
        .and_then(|b| b.as_object_mut()?.remove("thumbhash"))
        .expect("the result carries the thumbhash");
    imagegram_tests::images::assert_thumbhash_of(
        hash.as_str().unwrap(),
        &imagegram_tests::images::bands(600, 600, &[[200, 10, 10]]),
    );
    assert_eq!(
        bodies,
        [serde_json::json!({ "post_id": POST, "outcome": "published",
            "image_key": format!("converted/{POST}.jpg"), "uploaded_at": "2026-11-25T10:00:00.000Z" })]
    );
    assert!(
        s3.head_object()
            .bucket(&bucket)
            .key(format!("converted/{POST}.jpg"))
            .send()
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn every_finalizer_event_file_runs_through_the_finalizer() {
    use imagegram::domain::PostStatus;
    use imagegram::pipeline::Finalizer;
    use imagegram::pipeline::finalizer::GAVE_UP;
    use imagegram::store::Posts;
    let (_url, store) = fresh_database().await;
    let post = PostId::parse(POST).unwrap();
    let fixture = PostFixture {
        id: post,
        ..PostFixture::new("a", PostStatus::Processing)
    };
    imagegram_local::fixtures::post(&store, &fixture)
        .await
        .unwrap();
    let finalizer = Finalizer {
        store: store.clone(),
        notify: imagegram::notify::Silent,
    };
    let run = async |name: &str| {
        let response = finalizer.handle(sqs_event(name, "unused")).await;
        assert!(response.batch_item_failures.is_empty(), "{name}");
        store.post(post).await.unwrap().unwrap()
    };
    let p = run("sqs-finalizer-published.json").await;
    assert_eq!(p.status, PostStatus::Published);
    assert_eq!(
        p.image_key.as_deref(),
        Some(format!("converted/{POST}.jpg").as_str())
    );
    // A late failure or dead letter never flips a published post.
    assert_eq!(
        run("sqs-finalizer-failed.json").await.status,
        PostStatus::Published
    );
    assert_eq!(
        run("sqs-finalizer-dead-letter.json").await.status,
        PostStatus::Published
    );
    // On a post still processing, each ends it failed with its reason.
    let mut conn = store.pool().get_conn().await.unwrap();
    for (name, reason) in [
        (
            "sqs-finalizer-failed.json",
            "the upload is not a PNG, JPEG or BMP image",
        ),
        ("sqs-finalizer-dead-letter.json", GAVE_UP),
    ] {
        conn.exec_drop(
            "UPDATE posts SET status = 'processing', failure_reason = NULL",
            (),
        )
        .await
        .unwrap();
        let p = run(name).await;
        assert_eq!(
            (p.status, p.failure_reason.as_deref()),
            (PostStatus::Failed, Some(reason)),
            "{name}"
        );
    }
}

#[test]
fn every_event_file_has_an_expectation() {
    let mut listed: Vec<String> = manifest()
        .iter()
        .map(|e| e["file"].as_str().unwrap().to_owned())
        .collect();
    let mut names: Vec<String> =
        std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../events"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n != "expected.json")
            .collect();
    names.sort();
    listed.sort();
    assert_eq!(names, listed);
    // The SQS files the tests above run are exactly the manifest's, each
    // expected to leave nothing to retry.
    for e in manifest() {
        match e["function"].as_str().unwrap() {
            "ConverterFunction" | "FinalizerFunction" => {
                assert_eq!(e["batch_item_failures"], 0, "{e}")
            }
            // The schema step's answer: tests/integration/schema.rs runs the
            // file.
            "ApiFunction" | "SweeperFunction" | "SchemaFunction" | "EventsFunction" => {}
            other => panic!("unknown function {other}"),
        }
    }
}

#[tokio::test]
async fn a_dependency_that_is_down_is_a_503_that_names_no_internals() {
    // Nothing listens on port 9 of this machine.
    let store = imagegram::store::MySqlStore::connect(
        &imagegram::config::DbConfig {
            host: "127.0.0.1".into(),
            port: 9,
            user: "u".into(),
            password: imagegram::config::Secret::new("secret"),
            database: "db".into(),
            tls: false,
            timeout: Duration::from_secs(2),
            reload: None,
        },
        1,
    );
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::Config::builder()
            .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
            .endpoint_url("http://127.0.0.1:9")
            .region(aws_sdk_s3::config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_s3::config::Credentials::new(
                "a", "b", None, None, "test",
            ))
            .retry_config(aws_sdk_s3::config::retry::RetryConfig::disabled())
            .build(),
    );
    let app = App {
        store,
        objects: S3Objects::new(s3, "bucket".into(), None, Duration::from_secs(60)),
        cursors: CursorCodec::new(b"k"),
        limits: Default::default(),
        events: imagegram::api::Events {
            url: "ws://127.0.0.1:9/events".into(),
            tickets: imagegram::ticket::Tickets::from_cursor_secret(b"k"),
        },
    };
    // Liveness needs nothing behind the function.
    let resp = api::handle(&app, event("api-health.json")).await;
    assert_eq!(resp.status().as_u16(), 200);
    for name in [
        "api-health-dependencies.json",
        "api-list-posts.json",
        "api-get-post.json",
        "api-create-comment.json",
    ] {
        let resp = api::handle(&app, event(name)).await;
        let body = String::from_utf8_lossy(resp.body().as_ref()).into_owned();
        assert_eq!(resp.status().as_u16(), 503, "{name}: {body}");
        assert_eq!(resp.headers()["retry-after"], "1", "{name}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["error"]["code"], "unavailable");
        for secret in ["127.0.0.1", "secret", "mysql", "9", "Io", "refused"] {
            assert!(!body.contains(secret), "{name} leaks {secret:?}: {body}");
        }
    }
}
