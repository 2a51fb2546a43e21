//! The sweeper settles every post the event-driven path left behind, in
//! each state docs/OPERATIONS.md's table names.

use imagegram::domain::{PostId, PostStatus};
use imagegram::pipeline::sweeper::{NEVER_CONVERTED, ORIGINAL_MISSING};
use imagegram_tests::images::{bands, encode_rgb};
use imagegram_tests::{TestApp, spawn_app_spec};
use mysql_async::prelude::*;
use serde_json::Value;

/// A stack whose sweeper looks at posts processing for over a second.
async fn app() -> TestApp {
    spawn_app_spec(|s| {
        s.env
            .push(("SWEEP_PROCESSING_AFTER_SECS".into(), "1".into()));
        s.env.push(("SWEEP_MAX_ATTEMPTS".into(), "2".into()));
    })
    .await
}

fn png() -> Vec<u8> {
    encode_rgb(&bands(64, 64, &[[9, 9, 200]]), image::ImageFormat::Png)
}

async fn exec(app: &TestApp, sql: &str, post: &str) {
    let id = PostId::parse(post).unwrap();
    let mut conn = app.direct_db.get_conn().await.unwrap();
    conn.exec_drop(sql, (id.as_bytes(),)).await.unwrap();
}

/// Makes the post look untouched for a minute.
async fn age(app: &TestApp, post: &str) {
    exec(
        app,
        "UPDATE posts SET updated_at = NOW(3) - INTERVAL 1 MINUTE WHERE id = ?",
        post,
    )
    .await;
}

async fn status(app: &TestApp, post: &str) -> Value {
    app.get(&format!("/posts/{post}"), "alice").await.body
}

#[tokio::test]
async fn an_expired_upload_is_removed_with_its_multipart_upload() {
    let app = app().await;
    let created = app.create_post("alice", "image/png", 1000).await;
    let id = created["post"]["id"].as_str().unwrap();
    app.expire_upload(id).await;
    assert_eq!(app.open_uploads().await, 1);
    let swept = app.sweeper.run().await.unwrap();
    assert_eq!(swept.uploads_removed, 1, "{swept:?}");
    assert_eq!(app.get(&format!("/posts/{id}"), "alice").await.status, 404);
    assert_eq!(
        app.open_uploads().await,
        0,
        "the multipart upload is aborted"
    );
}

#[tokio::test]
async fn an_expired_upload_that_s3_completed_goes_on_to_be_published() {
    let app = app().await;
    let bytes = png();
    let created = app.create_post("alice", "image/png", bytes.len()).await;
    let id = created["post"]["id"].as_str().unwrap().to_owned();
    app.upload_all(&created, &bytes).await;
    // S3 completed it (a complete whose answer was lost and rolled back),
    // and the finalizer is not running.
    app.pipeline
        .stop(imagegram_local::pipeline::Function::Finalizer);
    let parts = app.s3_parts(&id).await;
    app.complete_in_s3(&id, &created, parts).await;
    app.expire_upload(&id).await;
    let swept = app.sweeper.run().await.unwrap();
    assert_eq!(swept.uploads_completed, 1, "{swept:?}");
    assert_eq!(status(&app, &id).await["status"], "processing");
    assert!(
        app.object_exists(&format!("originals/{id}")).await,
        "never deleted"
    );
    app.pipeline
        .start(imagegram_local::pipeline::Function::Finalizer);
    let post = app.wait_until_final(&id, "alice").await;
    assert_eq!(post["status"], "published");
}

#[tokio::test]
async fn a_processing_post_whose_image_exists_is_published() {
    let app = app().await;
    // The finalizer down: the result waits in its queue.
    app.pipeline
        .stop(imagegram_local::pipeline::Function::Finalizer);
    let id = app.post_image("alice", "image/png", &png()).await;
    let key = format!("converted/{id}.jpg");
    imagegram_tests::eventually("the conversion", async || app.object_exists(&key).await).await;
    age(&app, &id).await;
    let swept = app.sweeper.run().await.unwrap();
    assert_eq!(swept.published, 1, "{swept:?}");
    let post = status(&app, &id).await;
    assert_eq!(post["status"], "published");
    app.fetch_image(&post).await;
}

#[tokio::test]
async fn a_processing_post_is_converted_again_then_failed_after_its_attempts() {
    let app = app().await;
    // The converter down: nothing converts it.
    app.pipeline
        .stop(imagegram_local::pipeline::Function::Converter);
    let id = app.post_image("alice", "image/png", &png()).await;
    for attempt in 1..=2 {
        age(&app, &id).await;
        let swept = app.sweeper.run().await.unwrap();
        assert_eq!(swept.reconverting, 1, "attempt {attempt}: {swept:?}");
        assert_eq!(status(&app, &id).await["status"], "processing");
    }
    // Two requests on the conversion queue, for the converter when it
    // returns: the S3 event and the sweeper's two, all for one post.
    age(&app, &id).await;
    let swept = app.sweeper.run().await.unwrap();
    assert_eq!(swept.failed, 1, "{swept:?}");
    let post = status(&app, &id).await;
    assert_eq!(post["status"], "failed");
    assert_eq!(post["failure_reason"], NEVER_CONVERTED);
    // A late conversion does not flip it.
    app.pipeline
        .start(imagegram_local::pipeline::Function::Converter);
    imagegram_tests::eventually("the queue to drain", async || {
        app.queue_depth(&app.queues.conversion.url).await == 0
    })
    .await;
    assert_eq!(status(&app, &id).await["status"], "failed");
}

#[tokio::test]
async fn a_reconversion_requested_by_the_sweeper_publishes() {
    let app = app().await;
    app.pipeline
        .stop(imagegram_local::pipeline::Function::Converter);
    let id = app.post_image("alice", "image/png", &png()).await;
    // The S3 event is lost (purged); only the sweeper's request remains.
    app.sqs
        .purge_queue()
        .queue_url(&app.queues.conversion.url)
        .send()
        .await
        .unwrap();
    age(&app, &id).await;
    assert_eq!(app.sweeper.run().await.unwrap().reconverting, 1);
    app.pipeline
        .start(imagegram_local::pipeline::Function::Converter);
    let post = app.wait_until_final(&id, "alice").await;
    assert_eq!(post["status"], "published");
}

#[tokio::test]
async fn a_processing_post_without_an_original_reopens_or_fails() {
    let app = app().await;
    // Moved to processing, but S3 never completed it: the upload is open.
    let created = app.create_post("alice", "image/png", 1000).await;
    let id = created["post"]["id"].as_str().unwrap().to_owned();
    exec(
        &app,
        "UPDATE posts SET status = 'processing' WHERE id = ?",
        &id,
    )
    .await;
    age(&app, &id).await;
    assert_eq!(app.sweeper.run().await.unwrap().reopened, 1);
    assert_eq!(status(&app, &id).await["status"], "awaiting_upload");
    // Its upload gone too: nothing to wait for.
    let r = app
        .call(
            "DELETE",
            &format!("/posts/{id}/upload"),
            Some("alice"),
            None,
        )
        .await;
    assert_eq!(r.status, 204);
    let other = app
        .insert_post("alice", PostStatus::Processing, 0)
        .await
        .to_string();
    age(&app, &other).await;
    assert_eq!(app.sweeper.run().await.unwrap().failed, 1);
    let post = status(&app, &other).await;
    assert_eq!(post["status"], "failed");
    assert_eq!(post["failure_reason"], ORIGINAL_MISSING);
}

#[tokio::test]
async fn idempotency_keys_past_24_hours_are_removed() {
    let app = app().await;
    let mut conn = app.direct_db.get_conn().await.unwrap();
    conn.query_drop(
        "INSERT INTO idempotency_keys (caller, idem_key, request_hash, status, response, created_at) VALUES \
         ('a', 'old', REPEAT('x', 32), 201, '{}', NOW(3) - INTERVAL 25 HOUR), \
         ('a', 'new', REPEAT('x', 32), 201, '{}', NOW(3) - INTERVAL 23 HOUR)",
    )
    .await
    .unwrap();
    assert_eq!(app.sweeper.run().await.unwrap().keys_removed, 1);
    let left: Vec<String> = conn
        .query("SELECT idem_key FROM idempotency_keys")
        .await
        .unwrap();
    assert_eq!(left, ["new"]);
}
