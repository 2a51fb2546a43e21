use imagegram::domain::PostStatus;
use imagegram_tests::spawn_app;

#[tokio::test]
async fn a_published_post_is_visible_to_everyone_with_its_image_url() {
    let app = spawn_app().await;
    let id = app.insert_post("alice", PostStatus::Published, 0).await;
    let r = app.get(&format!("/posts/{id}"), "bob").await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let p = &r.body;
    assert_eq!(p["id"], id.to_string());
    assert_eq!(p["author"], "alice");
    assert_eq!(p["status"], "published");
    assert_eq!(p["comment_count"], 0);
    assert_eq!(p["last_comments"], serde_json::json!([]));
    assert!(p.get("failure_reason").is_none());
    let url = p["image_url"]
        .as_str()
        .expect("published posts have an image URL");
    assert!(url.starts_with("http"), "{url}");
    assert!(url.contains(&format!("converted/{id}.jpg")), "{url}");
    // Within a signing window the URL is stable: browsers and CDNs cache it.
    let again = app.get(&format!("/posts/{id}"), "carol").await;
    assert_eq!(again.body["image_url"], p["image_url"]);
    let created = p["created_at"].as_str().unwrap();
    assert!(created.ends_with('Z') && created.len() == 24, "{created}");
}

#[tokio::test]
async fn unpublished_posts_are_visible_only_to_their_author() {
    let app = spawn_app().await;
    for status in [
        PostStatus::AwaitingUpload,
        PostStatus::Processing,
        PostStatus::Failed,
    ] {
        let id = app.insert_post("alice", status, 0).await;
        let mine = app.get(&format!("/posts/{id}"), "alice").await;
        assert_eq!(mine.status, 200);
        assert_eq!(mine.body["status"], status.as_str());
        assert!(mine.body["image_url"].is_null());
        if status == PostStatus::Failed {
            assert_eq!(
                mine.body["failure_reason"],
                imagegram_local::fixtures::FAILURE_REASON
            );
        } else {
            assert!(mine.body.get("failure_reason").is_none());
        }
        let theirs = app.get(&format!("/posts/{id}"), "bob").await;
        assert_eq!(theirs.status, 404);
        assert_eq!(theirs.error_code(), "not_found");
        // Not in the feed either.
        let feed = app.get("/posts", "alice").await;
        assert_eq!(feed.body["posts"], serde_json::json!([]));
    }
}

#[tokio::test]
async fn malformed_and_unknown_post_ids_are_404() {
    let app = spawn_app().await;
    for id in [
        "nope",
        "0194f7a0c1d27b3e8a5b6c7d8e9f0a1b",
        "%27%20OR%201%3D1%20--",
        "..%2F..%2Fetc%2Fpasswd",
        &"a".repeat(5000),
    ] {
        let r = app.get(&format!("/posts/{id}"), "alice").await;
        assert_eq!(r.status, 404, "{id}");
        assert_eq!(r.error_code(), "not_found");
    }
}
