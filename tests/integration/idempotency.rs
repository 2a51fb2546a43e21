//! `Idempotency-Key` on the two creates: a retry never creates twice.

use imagegram::domain::PostStatus;
use imagegram_tests::{TestApp, spawn_app, token};
use serde_json::json;

async fn post_with_key(
    app: &TestApp,
    path: &str,
    user: &str,
    key: &str,
    body: &serde_json::Value,
) -> (u16, serde_json::Value, Option<String>) {
    let resp = app
        .http
        .post(format!("{}{path}", app.base))
        .bearer_auth(token(user))
        .header("idempotency-key", key)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let replayed = resp
        .headers()
        .get("idempotent-replayed")
        .map(|v| v.to_str().unwrap().to_owned());
    let body: serde_json::Value = resp.json().await.unwrap();
    imagegram_tests::check_against_spec("POST", path, status, &body);
    (status, body, replayed)
}

async fn comment_count(app: &TestApp, post: &str) -> usize {
    let page = app
        .get(&format!("/posts/{post}/comments?limit=100"), "bob")
        .await;
    page.body["comments"].as_array().unwrap().len()
}

#[tokio::test]
async fn a_repeated_comment_returns_the_first_answer_and_creates_nothing() {
    let app = spawn_app().await;
    let post = app
        .insert_post("alice", PostStatus::Published, 0)
        .await
        .to_string();
    let path = format!("/posts/{post}/comments");
    let body = json!({ "content": "only once" });
    let (s1, first, r1) = post_with_key(&app, &path, "bob", "k-1", &body).await;
    let (s2, again, r2) = post_with_key(&app, &path, "bob", "k-1", &body).await;
    assert_eq!((s1, s2), (201, 201));
    assert_eq!(first, again, "the same comment, id and all");
    assert_eq!((r1, r2.as_deref()), (None, Some("true")));
    assert_eq!(comment_count(&app, &post).await, 1);
    assert_eq!(
        app.get(&format!("/posts/{post}"), "bob").await.body["comment_count"],
        1
    );
    // The same key with another body is refused; another user's key space
    // is their own; no key creates every time.
    let (s, body3, _) =
        post_with_key(&app, &path, "bob", "k-1", &json!({ "content": "other" })).await;
    assert_eq!(s, 422);
    assert_eq!(body3["error"]["code"], "idempotency_key_reused");
    let (s, _, _) = post_with_key(&app, &path, "carol", "k-1", &body).await;
    assert_eq!(s, 201);
    app.comment(&post, "bob", "no key").await;
    app.comment(&post, "bob", "no key").await;
    assert_eq!(comment_count(&app, &post).await, 4);
}

#[tokio::test]
async fn sixteen_identical_requests_at_once_create_one_comment() {
    let app = spawn_app().await;
    let post = app
        .insert_post("alice", PostStatus::Published, 0)
        .await
        .to_string();
    let path = format!("/posts/{post}/comments");
    let body = json!({ "content": "sent sixteen times" });
    let answers = futures::future::join_all(
        (0..16).map(|_| post_with_key(&app, &path, "bob", "burst", &body)),
    )
    .await;
    let created: Vec<_> = answers.iter().filter(|a| a.0 == 201).collect();
    // Each answer is the comment (first or replayed) or a 409 while the
    // first was still running; never a second comment.
    for (status, body, _) in &answers {
        assert!(
            *status == 201
                || (*status == 409
                    && body["error"]["code"] == "conflict"
                    && body["error"]["reason"] == "in_progress"),
            "{status} {body}"
        );
    }
    assert!(!created.is_empty());
    assert!(
        created.iter().all(|a| a.1 == created[0].1),
        "every 201 is the same comment"
    );
    assert_eq!(comment_count(&app, &post).await, 1);
    assert_eq!(
        app.get(&format!("/posts/{post}"), "bob").await.body["comment_count"],
        1
    );
}

#[tokio::test]
async fn a_repeated_create_post_returns_the_same_post_and_upload() {
    let app = spawn_app().await;
    let body = json!({ "caption": "once", "content_type": "image/png", "size_bytes": 1000 });
    let (s1, first, _) = post_with_key(&app, "/posts", "alice", "create-1", &body).await;
    let (s2, again, replayed) = post_with_key(&app, "/posts", "alice", "create-1", &body).await;
    assert_eq!((s1, s2), (201, 201));
    assert_eq!(first, again);
    assert_eq!(replayed.as_deref(), Some("true"));
    assert_eq!(app.open_uploads().await, 1, "one multipart upload");
    let (s, _, _) = post_with_key(
        &app,
        "/posts",
        "alice",
        "create-1",
        &json!({ "caption": "twice", "content_type": "image/png", "size_bytes": 1000 }),
    )
    .await;
    assert_eq!(s, 422);
}

#[tokio::test]
async fn a_failed_create_gives_its_key_back() {
    let app = spawn_app().await;
    // A comment on a post that does not exist yet: 404, not recorded.
    let missing = imagegram::domain::PostId::generate().to_string();
    let body = json!({ "content": "hello" });
    let (s, _, _) = post_with_key(
        &app,
        &format!("/posts/{missing}/comments"),
        "bob",
        "k",
        &body,
    )
    .await;
    assert_eq!(s, 404);
    let (s, _, _) = post_with_key(
        &app,
        &format!("/posts/{missing}/comments"),
        "bob",
        "k",
        &body,
    )
    .await;
    assert_eq!(s, 404, "run again, not a 409 for a key in progress");
}

#[tokio::test]
async fn malformed_keys_are_400() {
    let app = spawn_app().await;
    let post = app
        .insert_post("alice", PostStatus::Published, 0)
        .await
        .to_string();
    for key in ["", &"k".repeat(256), "tab\tkey"] {
        let resp = app
            .http
            .post(format!("{}/posts/{post}/comments", app.base))
            .bearer_auth(token("bob"))
            .header("idempotency-key", key)
            .body(r#"{"content":"x"}"#)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 400, "{key:?}");
    }
    assert_eq!(comment_count(&app, &post).await, 0);
}
