//! Every `events/api-*.json` fed through the API handler, as Lambda would.

use std::time::Duration;

use imagegram::api::{self, App};
use imagegram::cursor::CursorCodec;
use imagegram::domain::{CommentId, PostId, sql_datetime};
use imagegram::objects::S3Objects;
use imagegram_tests::{fresh_bucket, fresh_database, sdk_config};
use mysql_async::prelude::*;

const POST: &str = "0194f7a0c1d27b3e8a5b6c7d8e9f0a1b";
const COMMENT: &str = "0194f7a1000070008000000000000c01";

fn event(name: &str) -> lambda_http::Request {
    let path = format!("{}/../events/{name}", env!("CARGO_MANIFEST_DIR"));
    let json = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    lambda_http::request::from_str(&json)
        .unwrap_or_else(|e| panic!("{name} is not an HTTP API event: {e}"))
}

#[tokio::test]
async fn every_api_event_file_runs_through_the_handler() {
    let (_url, store) = fresh_database().await;
    let sdk = sdk_config().await;
    let s3 = aws_sdk_s3::Client::new(&sdk);
    let bucket = fresh_bucket(&s3).await;
    // The post and comment the event files name, the comment by their caller.
    let post = PostId::parse(POST).unwrap();
    let comment = CommentId::parse(COMMENT).unwrap();
    let mut conn = store.pool().get_conn().await.unwrap();
    conn.exec_drop(
        "INSERT INTO posts (id, author, caption, status, content_type, size_bytes, part_size, image_key, \
         comment_count, created_at, updated_at) VALUES (?, 'someone', 'sunset', 'published', 'image/jpeg', 1, \
         5242880, ?, 1, ?, NOW(3))",
        (post.as_bytes(), format!("converted/{POST}.jpg"), sql_datetime(post.created_at())),
    )
    .await
    .unwrap();
    conn.exec_drop(
        "INSERT INTO comments (post_id, id, author, content, created_at) VALUES (?, ?, 'user-123', 'wow', NOW(3))",
        (post.as_bytes(), comment.as_bytes()),
    )
    .await
    .unwrap();
    let app = App {
        store,
        objects: S3Objects::new(s3, bucket, None, Duration::from_secs(60)),
        cursors: CursorCodec::new(b"k"),
    };

    let names: Vec<String> = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../events"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with("api-"))
        .collect();
    let expected = [
        ("api-health.json", 200),
        ("api-list-posts.json", 200),
        ("api-get-post.json", 200),
        ("api-list-comments.json", 200),
        ("api-create-comment.json", 201),
        ("api-delete-comment.json", 204),
    ];
    assert_eq!(
        names.len(),
        expected.len(),
        "a new api event file needs an expectation here: {names:?}"
    );
    for (name, status) in expected {
        let resp = api::handle(&app, event(name)).await;
        let body = String::from_utf8_lossy(resp.body().as_ref()).into_owned();
        assert_eq!(resp.status().as_u16(), status, "{name}: {body}");
        if status != 204 {
            assert_eq!(resp.headers()["content-type"], "application/json", "{name}");
            serde_json::from_str::<serde_json::Value>(&body)
                .unwrap_or_else(|_| panic!("{name}: {body}"));
        }
    }
}
