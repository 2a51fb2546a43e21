use imagegram_tests::spawn_app;

#[tokio::test]
async fn health_needs_no_token_and_reports_ok() {
    let app = spawn_app().await;
    let r = app.call("GET", "/health", None, None).await;
    assert_eq!(
        (r.status, r.body.clone()),
        (200, serde_json::json!({ "status": "ok" }))
    );
}

// Every other route refusing missing, bad and expired tokens: routes.rs,
// over the whole route table.

#[tokio::test]
async fn identity_comes_from_the_token_never_from_the_request() {
    let app = spawn_app().await;
    let post = app
        .insert_post("bob", imagegram::domain::PostStatus::Published, 0)
        .await;
    // A body and headers claiming another author change nothing.
    let resp = app
        .http
        .post(format!("{}/posts/{post}/comments", app.base))
        .bearer_auth(imagegram_tests::token("mallory"))
        .header("x-user-id", "alice")
        .body(r#"{"content":"hello","author":"alice"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let c: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(c["author"], "mallory");
}

#[tokio::test]
async fn unknown_routes_are_404_with_an_error_body() {
    let app = spawn_app().await;
    for (m, p) in [
        ("GET", "/nope"),
        ("PUT", "/posts"),
        ("GET", "/posts/x/y/z/w"),
    ] {
        let r = app.call(m, p, Some("alice"), None).await;
        assert_eq!(r.status, 404, "{m} {p}");
        assert_eq!(r.error_code(), "not_found");
    }
}
