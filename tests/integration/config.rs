//! Configuration as the functions read it in AWS: credentials and the
//! cursor key from Secrets Manager (moto's, locally), connection options
//! built from fields.

use imagegram::domain::PostStatus;
use imagegram_tests::{master_pool, sdk_config, spawn_app_spec};
use mysql_async::prelude::*;

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

#[tokio::test]
async fn a_rotated_password_is_read_again_from_the_secret_and_no_request_fails_twice() {
    // A user of this test's own, as the secret names it.
    let master = master_pool().await;
    let mut root = master.get_conn().await.expect("the master user logs in");
    let user = format!("rot_{}", &uuid::Uuid::now_v7().simple().to_string()[20..]);
    let quoted = |p: &str| mysql_async::Value::from(p).as_sql(false);
    root.query_drop(format!(
        "CREATE USER '{user}'@'127.0.0.1' IDENTIFIED BY {}",
        quoted("before-rotation")
    ))
    .await
    .unwrap();
    root.query_drop(format!(
        "GRANT ALL ON `imagegram%`.* TO '{user}'@'127.0.0.1'"
    ))
    .await
    .unwrap();
    let mut stack_name = String::new();
    let app = spawn_app_spec(|s| {
        s.database.user = user.clone();
        s.database.password = "before-rotation".into();
        stack_name = s.name.clone();
    })
    .await;
    let post = app
        .insert_post("alice", PostStatus::Published, 0)
        .await
        .to_string();
    let r = app.comment(&post, "bob", "before").await;
    assert_eq!(r.status, 201, "{}", r.body);

    // The rotation: the password changes in the database and in the secret
    // (as Secrets Manager's rotation does), and the connections the
    // functions hold are gone (a restart, a failover), so every new one
    // logs in afresh.
    root.query_drop(format!(
        "ALTER USER '{user}'@'127.0.0.1' IDENTIFIED BY {}",
        quoted("after-rotation")
    ))
    .await
    .unwrap();
    let sm = aws_sdk_secretsmanager::Client::new(&sdk_config().await);
    let d = &app.database;
    let value = serde_json::json!({
        "username": user, "password": "after-rotation",
        "host": d.host, "port": d.port, "dbname": d.name,
    })
    .to_string();
    imagegram_local::bootstrap::secret(&sm, &format!("{stack_name}/database"), &value, false)
        .await
        .unwrap();
    // The user's connections, as the server lists them: SHOW PROCESSLIST,
    // not information_schema.processlist, which MySQL builds whole and
    // refuses (3854, "Cannot convert string") when another session's query
    // text holds bytes that are not UTF-8, as a concurrent test's binary
    // literal does.
    let sessions = async |root: &mut mysql_async::Conn| -> Vec<u64> {
        let rows: Vec<mysql_async::Row> = root.query("SHOW PROCESSLIST").await.unwrap();
        rows.iter()
            .filter(|r| r.get::<Option<String>, _>(1).flatten().as_deref() == Some(user.as_str()))
            .filter_map(|r| r.get::<u64, _>(0))
            .collect()
    };
    for id in sessions(&mut root).await {
        root.query_drop(format!("KILL {id}")).await.ok();
    }

    // Every request succeeds, or its one retry does: a connection killed
    // under a pooled handle may cost one 503, a refused password none.
    let mut first_answers = Vec::new();
    for i in 0..20 {
        let mut r = app.comment(&post, "bob", &format!("after {i}")).await;
        first_answers.push(r.status);
        if r.status == 503 {
            r = app
                .comment(&post, "bob", &format!("after {i}, again"))
                .await;
        }
        assert_eq!(r.status, 201, "request {i} failed twice: {}", r.body);
    }
    assert!(
        first_answers.iter().filter(|s| **s == 503).count() <= 1,
        "more than one request met the rotation: {first_answers:?}"
    );
    // The functions log in with the new password: the old one is refused.
    let old = mysql_async::Pool::new(
        mysql_async::OptsBuilder::default()
            .ip_or_hostname(d.host.clone())
            .tcp_port(d.port)
            .user(Some(user.clone()))
            .pass(Some("before-rotation"))
            .prefer_socket(false),
    );
    assert!(
        old.get_conn().await.is_err(),
        "the old password still works"
    );
    assert!(
        !sessions(&mut root).await.is_empty(),
        "the stack holds connections with the new password"
    );
    root.query_drop(format!("DROP USER '{user}'@'127.0.0.1'"))
        .await
        .ok();
}

#[tokio::test]
async fn tls_to_the_database_verifies_the_servers_certificate() {
    // The functions' TLS settings (DATABASE_TLS=true, as in AWS) against the
    // local server: MySQL offers TLS with a self-signed certificate, which
    // neither the public roots nor the RDS authorities vouch for; MariaDB
    // here offers no TLS. Either way no connection is made in the clear or
    // with an unverified peer.
    let d = imagegram_tests::create_database().await;
    let mut cfg = imagegram_tests::db_config(&d);
    cfg.tls = true;
    let store = imagegram::store::MySqlStore::connect(&cfg, 1);
    let err = store
        .pool()
        .get_conn()
        .await
        .expect_err("a connection to an unverified server");
    let text = format!("{err:?}");
    let probe = imagegram::store::MySqlStore::connect(&imagegram_tests::db_config(&d), 1);
    let offers_tls: Option<(String, String)> = probe
        .pool()
        .get_conn()
        .await
        .unwrap()
        .query_first("SHOW STATUS LIKE 'Ssl_server_not_after'")
        .await
        .unwrap();
    if offers_tls.is_some_and(|(_, v)| !v.is_empty()) {
        assert!(
            text.contains("UnknownIssuer") || text.contains("certificate"),
            "refused for another reason: {text}"
        );
    } else {
        assert!(text.contains("NoClientSslFlagFromServer"), "{text}");
    }
}
