//! Faults against the real services, through the tests' TCP fault proxy:
//! a database that hangs, an object store that refuses or loses answers, a
//! converter killed mid-conversion, a finalizer down past its queue's
//! redrive. The oracle, as Jepsen's set checker: every request acknowledged
//! with a 2xx is there afterwards; a request that was refused or timed out
//! is there at most once; nothing unrequested appears.

use std::time::{Duration, Instant};

use imagegram::domain::{PostId, PostStatus};
use imagegram_local::pipeline::Function;
use imagegram_tests::faults::{Fault, FaultProxy, comment_load};
use imagegram_tests::images::{bands, encode_rgb, noise_png};
use imagegram_tests::{TestApp, eventually, sdk_config_for, spawn_app_spec, spawn_app_with};
use mysql_async::prelude::*;

fn db_target() -> std::net::SocketAddr {
    let url = imagegram_tests::base_database_url();
    let hostport = url.rsplit_once('@').unwrap().1.split('/').next().unwrap();
    hostport.parse().unwrap()
}

/// A stack whose functions reach MariaDB through `proxy`.
async fn behind_db_proxy(proxy: &FaultProxy, timeout_ms: u32) -> TestApp {
    let (host, port) = proxy.host_port();
    spawn_app_spec(|s| {
        s.database.host = host;
        s.database.port = port;
        s.env.push(("DB_TIMEOUT_MS".into(), timeout_ms.to_string()));
    })
    .await
}

/// A stack whose functions reach S3 and SQS (moto) through `proxy`.
async fn behind_s3_proxy(proxy: &FaultProxy) -> TestApp {
    spawn_app_with(
        |_| {},
        sdk_config_for(&format!("http://{}", proxy.addr)).await,
    )
    .await
}

#[tokio::test]
async fn a_hung_database_answers_503_in_time_and_loses_no_acknowledged_comment() {
    let proxy = FaultProxy::start(db_target()).await;
    let app = std::sync::Arc::new(behind_db_proxy(&proxy, 1000).await);
    // Made before the fault, through the proxy that still passes all.
    let post = app
        .insert_post("alice", PostStatus::Published, 0)
        .await
        .to_string();
    // 20 comments a second for 8 s; the database stops answering from 2 s
    // to 6 s (bytes held, then delivered: a hung server that resumes).
    let report = comment_load(&app, &app.direct_db, &post, 20, 8, |t| {
        proxy.set(if (2..6).contains(&t.as_secs()) {
            Fault::Blackhole
        } else {
            Fault::Pass
        })
    })
    .await;
    println!("hung database (4 s, behind the proxy): {report}");
    // Each answer within the timeout (1 s) and the pool's wait: never a hang
    // into the Lambda's 10 s.
    report.check(Duration::from_secs(4));
}

#[tokio::test]
async fn an_unreachable_object_store_is_503_and_conversions_recover() {
    let proxy = FaultProxy::start(imagegram_tests::moto_addr()).await;
    let app = behind_s3_proxy(&proxy).await;
    let bytes = encode_rgb(&bands(64, 64, &[[200, 1, 1]]), image::ImageFormat::Png);
    let created = app.create_post("alice", "image/png", bytes.len()).await;
    let id = created["post"]["id"].as_str().unwrap().to_owned();
    app.upload_all(&created, &bytes).await;

    proxy.set(Fault::Refuse);
    let body = serde_json::json!({ "caption": "", "content_type": "image/png", "size_bytes": 10 });
    let r = app
        .call("POST", "/posts", Some("alice"), Some(&body.to_string()))
        .await;
    assert_eq!((r.status, r.error_code()), (503, "unavailable"));
    assert!(r.headers.contains_key("retry-after"));
    let complete = format!("/posts/{id}/upload/complete");
    let r = app.call("POST", &complete, Some("alice"), None).await;
    assert_eq!(
        (r.status, r.error_code()),
        (503, "unavailable"),
        "{:?}",
        r.body
    );
    assert_eq!(
        app.get(&format!("/posts/{id}"), "alice").await.body["status"],
        "awaiting_upload",
        "nothing half done"
    );

    // Recovered: the retried complete works; then S3 goes away while the
    // converter works, and comes back.
    proxy.set(Fault::Pass);
    let r = app.call("POST", &complete, Some("alice"), None).await;
    assert_eq!(r.status, 202, "{:?}", r.body);
    proxy.set(Fault::Refuse);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let down_at = Instant::now();
    proxy.set(Fault::Pass);
    let post = app.wait_until_final(&id, "alice").await;
    println!(
        "object store down 3 s during conversion: published {:?} after it came back",
        down_at.elapsed()
    );
    assert_eq!(post["status"], "published");
    app.fetch_image(&post).await;
}

#[tokio::test]
async fn a_hung_object_store_answers_503_with_retry_after_within_3_s() {
    let proxy = FaultProxy::start(imagegram_tests::moto_addr()).await;
    let app = behind_s3_proxy(&proxy).await;
    // Connections accepted, bytes never answered: S3 hung, not down.
    proxy.set(Fault::Blackhole);
    let body = serde_json::json!({ "caption": "", "content_type": "image/png", "size_bytes": 10 });
    let mut slowest = Duration::ZERO;
    for i in 0..3 {
        let started = Instant::now();
        let r = app
            .call(
                "POST",
                "/posts",
                Some(&format!("user{i}")),
                Some(&body.to_string()),
            )
            .await;
        let took = started.elapsed();
        slowest = slowest.max(took);
        assert_eq!(
            (r.status, r.error_code()),
            (503, "unavailable"),
            "{}",
            r.body
        );
        assert!(r.headers.contains_key("retry-after"));
        let deps = app.get("/health/dependencies", "alice").await;
        assert_eq!(deps.status, 503);
    }
    println!("hung object store: POST /posts answered 503 in at most {slowest:?}");
    // The SDK's operation timeout (2.8 s) ends each; the rest is the
    // gateway and the database, with room for a loaded machine.
    assert!(
        slowest < Duration::from_secs(3) + Duration::from_millis(1500),
        "{slowest:?}"
    );
    // Nothing was created: no post row without its upload.
    proxy.set(Fault::Pass);
    let rows: Option<u64> = app
        .direct_db
        .get_conn()
        .await
        .unwrap()
        .query_first("SELECT COUNT(*) FROM posts")
        .await
        .unwrap();
    assert_eq!(rows, Some(0));
}

#[tokio::test]
async fn a_complete_whose_answer_is_lost_finds_the_upload_done() {
    let proxy = FaultProxy::start(imagegram_tests::moto_addr()).await;
    let app = behind_s3_proxy(&proxy).await;
    let bytes = encode_rgb(&bands(64, 64, &[[1, 200, 1]]), image::ImageFormat::Png);
    let created = app.create_post("alice", "image/png", bytes.len()).await;
    let id = created["post"]["id"].as_str().unwrap().to_owned();
    app.upload_all(&created, &bytes).await;
    // CompleteMultipartUpload (a POST) reaches S3 and commits; its answer is
    // lost, every attempt. The API asks S3 whether the original exists: it
    // does, so the post goes on.
    proxy.set(Fault::LoseAnswersTo("POST "));
    let complete = format!("/posts/{id}/upload/complete");
    let r = app.call("POST", &complete, Some("alice"), None).await;
    proxy.set(Fault::Pass);
    assert_eq!(
        (r.status, r.body["status"].as_str()),
        (202, Some("processing")),
        "{:?}",
        r.body
    );
    let post = app.wait_until_final(&id, "alice").await;
    assert_eq!(post["status"], "published");
    // And a retry of it answers the post as it stands.
    let r = app.call("POST", &complete, Some("alice"), None).await;
    assert_eq!(
        (r.status, r.body["status"].as_str()),
        (202, Some("published"))
    );
}

#[tokio::test]
async fn a_complete_that_cannot_tell_rolls_back_and_its_retry_goes_on() {
    let proxy = FaultProxy::start(imagegram_tests::moto_addr()).await;
    let app = behind_s3_proxy(&proxy).await;
    let bytes = encode_rgb(&bands(64, 64, &[[1, 1, 200]]), image::ImageFormat::Png);
    let created = app.create_post("alice", "image/png", bytes.len()).await;
    let id = created["post"]["id"].as_str().unwrap().to_owned();
    app.upload_all(&created, &bytes).await;
    // The commit reaches S3, its answer is lost, and S3 is unreachable from
    // then on: the API cannot tell, rolls the post back and answers 503.
    proxy.set(Fault::GoneAfter("POST "));
    let complete = format!("/posts/{id}/upload/complete");
    let r = app.call("POST", &complete, Some("alice"), None).await;
    proxy.set(Fault::Pass);
    println!("complete that cannot tell: {} {}", r.status, r.body);
    assert_eq!((r.status, r.error_code()), (503, "unavailable"));
    assert!(r.headers.contains_key("retry-after"));
    // The retry finds the upload gone and the original there: on it goes.
    let r = app.call("POST", &complete, Some("alice"), None).await;
    assert_eq!(r.status, 202, "{:?}", r.body);
    let post = app.wait_until_final(&id, "alice").await;
    assert_eq!(post["status"], "published");
}

#[tokio::test]
async fn a_converter_killed_mid_conversion_publishes_exactly_once() {
    let proxy = FaultProxy::start(imagegram_tests::moto_addr()).await;
    let app = behind_s3_proxy(&proxy).await;
    let bytes = noise_png(1600, 1200);
    let created = app.create_post("alice", "image/png", bytes.len()).await;
    let id = created["post"]["id"].as_str().unwrap().to_owned();
    app.upload_all(&created, &bytes).await;
    // A slow object store, so the conversion is caught downloading.
    proxy.set(Fault::Latency(Duration::from_millis(100)));
    let r = app
        .call(
            "POST",
            &format!("/posts/{id}/upload/complete"),
            Some("alice"),
            None,
        )
        .await;
    assert_eq!(r.status, 202);
    let original = format!("/originals/{id}");
    eventually("the converter to start downloading", async || {
        app.recorder
            .calls()
            .iter()
            .any(|c| c.operation == "GetObject" && c.resource.ends_with(&original))
    })
    .await;
    app.pipeline.stop(Function::Converter);
    proxy.set(Fault::Pass);
    let killed_at = Instant::now();
    app.pipeline.start(Function::Converter);
    let post = app.wait_until_final(&id, "alice").await;
    println!(
        "converter killed mid-download: published {:?} after the restart",
        killed_at.elapsed()
    );
    assert_eq!(post["status"], "published");
    let converted = format!("/converted/{id}.jpg");
    let puts = app
        .recorder
        .calls()
        .iter()
        .filter(|c| c.operation == "PutObject" && c.resource.ends_with(&converted))
        .count();
    assert_eq!(puts, 1, "converted once");
}

#[tokio::test]
async fn a_finalizer_down_past_the_redrive_still_settles_every_post() {
    let app = spawn_app_spec(|s| {
        s.env
            .push(("SWEEP_PROCESSING_AFTER_SECS".into(), "600".into()));
    })
    .await;
    app.pipeline.stop(Function::Finalizer);
    let png = encode_rgb(&bands(64, 64, &[[5, 5, 5]]), image::ImageFormat::Png);
    let ids = [
        app.post_image("alice", "image/png", &png).await,
        app.post_image("alice", "image/png", &png).await,
    ];
    // The results are received and never answered (a finalizer failing)
    // until SQS dead-letters them: five receives.
    eventually("the results to dead-letter", async || {
        let _ = app
            .sqs
            .receive_message()
            .queue_url(&app.queues.results.url)
            .max_number_of_messages(10)
            .visibility_timeout(0)
            .send()
            .await;
        app.queue_depth(&app.queues.results_dlq.url).await >= 2
    })
    .await;
    // The sweeper settles one (its image exists); the finalizer, back,
    // reads the dead letters and settles the rest.
    let first = PostId::parse(&ids[0]).unwrap();
    let mut conn = app.direct_db.get_conn().await.unwrap();
    conn.exec_drop(
        "UPDATE posts SET updated_at = NOW(3) - INTERVAL 1 HOUR WHERE id = ?",
        (first.as_bytes(),),
    )
    .await
    .unwrap();
    let swept = app.sweeper.run().await.unwrap();
    assert_eq!(swept.published, 1, "{swept:?}");
    app.pipeline.start(Function::Finalizer);
    for id in &ids {
        let post = app.wait_until_final(id, "alice").await;
        assert_eq!(post["status"], "published");
    }
    eventually("the dead letters to be consumed", async || {
        app.queue_depth(&app.queues.results_dlq.url).await == 0
    })
    .await;
}
