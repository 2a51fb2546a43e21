//! Configuration as the functions read it in AWS: credentials and the
//! cursor key from Secrets Manager (moto's, locally), connection options
//! built from fields.

use imagegram::domain::PostStatus;
use imagegram_tests::spawn_app_spec;

/// scripts/lib.sh creates this MariaDB user; its password holds every
/// character that breaks a `mysql://user:password@host/db` URL.
const ODD_USER: &str = "imagegram_odd";
const ODD_PASSWORD: &str = "p#?/@%:x y";

#[tokio::test]
async fn a_password_with_url_characters_logs_in_from_the_secret() {
    let app = spawn_app_spec(|s| {
        s.database.user = ODD_USER.into();
        s.database.password = ODD_PASSWORD.into();
    })
    .await;
    // The functions read user and password from the secret JSON and log in
    // with them: a comment is a write through the API's pool, the
    // finalizer's store is built the same way.
    let post = app.insert_post("alice", PostStatus::Published, 0).await;
    let r = app.comment(&post.to_string(), "bob", "hello").await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let calls = app.recorder.calls();
    assert!(
        calls
            .iter()
            .any(|c| c.function == "ApiFunction" && c.action == "secretsmanager:GetSecretValue"),
        "the API read its credentials from Secrets Manager"
    );
}

#[tokio::test]
async fn the_cursor_key_comes_from_its_secret() {
    let app = spawn_app_spec(|_| {}).await;
    for _ in 0..3 {
        app.insert_post("alice", PostStatus::Published, 0).await;
    }
    let page = app.get("/posts?limit=2", "bob").await;
    let cursor = page.body["next_cursor"].as_str().unwrap().to_owned();
    // Cursors signed with another key (another stack's secret) are refused.
    let other = spawn_app_spec(|_| {}).await;
    let r = other
        .get(&format!("/posts?limit=2&cursor={cursor}"), "bob")
        .await;
    assert_eq!((r.status, r.error_code()), (400, "invalid_request"));
    let r = app
        .get(&format!("/posts?limit=2&cursor={cursor}"), "bob")
        .await;
    assert_eq!(r.status, 200);
}
