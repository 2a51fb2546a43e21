//! The deploy's schema step (CloudFormation's custom resource
//! `DatabaseSchema`): migrations, the application user, the answer PUT to
//! the request's presigned URL; and migrations on a database that applied
//! V4's old text.

use imagegram::schema::{self, Request, SchemaConfig, Status};
use imagegram::store::migrate;
use imagegram_tests::{TestApp, fresh_database, spawn_app, spawn_app_spec};
use mysql_async::prelude::*;
use serde_json::Value;

/// events/cfn-schema-create.json, as `kind`, answering to a presigned PUT
/// into the test's bucket (`key`).
async fn request(app: &TestApp, kind: &str, key: &str) -> Request {
    let mut event: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../events/cfn-schema-create.json"
        ))
        .unwrap(),
    )
    .unwrap();
    let url = app
        .s3
        .put_object()
        .bucket(&app.bucket)
        .key(key)
        .presigned(
            aws_sdk_s3::presigning::PresigningConfig::expires_in(std::time::Duration::from_secs(
                3600,
            ))
            .unwrap(),
        )
        .await
        .unwrap();
    event["ResponseURL"] = url.uri().into();
    event["RequestType"] = kind.into();
    if kind != "Create" {
        event["PhysicalResourceId"] = "DatabaseSchema-schema".into();
    }
    serde_json::from_value(event).unwrap()
}

/// Runs the step as the function does and reads back what CloudFormation
/// would have received.
async fn run(app: &TestApp, kind: &str) -> Value {
    let key = format!("cloudformation/{kind}-{}", uuid::Uuid::now_v7());
    let req = request(app, kind, &key).await;
    let (env, secrets) = (&app.schema_env, &app.schema_secrets);
    let answer = schema::handle(&req, async || SchemaConfig::load(env, secrets).await).await;
    schema::deliver(&reqwest::Client::new(), &req, &answer)
        .await
        .expect("the answer reaches the response URL");
    let got = app
        .s3
        .get_object()
        .bucket(&app.bucket)
        .key(&key)
        .send()
        .await
        .expect("CloudFormation's answer object");
    let body = got.body.collect().await.unwrap().into_bytes();
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["RequestId"], "2d5cbd6c-4a4a-4cd3-9b0c-7f1b2c3d4e5f");
    assert_eq!(v["LogicalResourceId"], "DatabaseSchema");
    assert_eq!(v["PhysicalResourceId"], "DatabaseSchema-schema");
    v
}

fn latest_version() -> String {
    std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/migrations"))
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().into_string().unwrap();
            name.strip_prefix('V')?
                .split("__")
                .next()?
                .parse::<u32>()
                .ok()
        })
        .max()
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn the_schema_step_answers_create_update_and_delete_and_can_run_again() {
    let app = spawn_app().await;
    for kind in ["Create", "Update", "Update"] {
        let v = run(&app, kind).await;
        assert_eq!(v["Status"], "SUCCESS", "{kind}: {v}");
        assert_eq!(v["Data"]["SchemaVersion"], latest_version().as_str(), "{v}");
    }
    // A stack delete keeps the data.
    let post = app
        .insert_post("alice", imagegram::domain::PostStatus::Published, 0)
        .await;
    let v = run(&app, "Delete").await;
    assert_eq!(v["Status"], "SUCCESS", "{v}");
    let r = app.get(&format!("/posts/{post}"), "bob").await;
    assert_eq!(r.status, 200);
    // Its reads were the schema function's own grants.
    let calls = app.recorder.calls();
    assert!(
        calls
            .iter()
            .filter(
                |c| c.function == "SchemaFunction" && c.action == "secretsmanager:GetSecretValue"
            )
            .count()
            >= 2,
        "the step read the master's and the application user's secrets"
    );
}

#[tokio::test]
async fn a_failed_step_answers_failed_with_a_reason_that_names_no_secret() {
    let app = spawn_app().await;
    // The master's secret, as the step reads it, now with a wrong password.
    let env = app.schema_env.clone();
    let secrets = app.schema_secrets.clone();
    let key = format!("cloudformation/failed-{}", uuid::Uuid::now_v7());
    let req = request(&app, "Update", &key).await;
    let answer = schema::handle(&req, async || {
        let mut cfg = SchemaConfig::load(&env, &secrets).await?;
        cfg.master.password = imagegram::config::Secret::new("not-the-Passw0rd");
        Ok(cfg)
    })
    .await;
    assert_eq!(answer.status, Status::Failed);
    let reason = answer.reason.clone().unwrap();
    assert!(reason.contains("schema step failed"), "{reason}");
    assert!(!reason.contains("not-the-Passw0rd"), "{reason}");
    assert!(!reason.contains("imagegram-master"), "{reason}");
    schema::deliver(&reqwest::Client::new(), &req, &answer)
        .await
        .unwrap();
}

#[tokio::test]
async fn the_functions_user_gets_rows_and_nothing_else() {
    // A user no server knows yet: the stack's schema step creates it (as
    // the deploy does), and every function logs in as it.
    let user = format!("app_{}", &uuid::Uuid::now_v7().simple().to_string()[20..]);
    let app = spawn_app_spec(|s| {
        s.database.user = user.clone();
        s.database.password = "rows-only-Passw0rd".into();
    })
    .await;
    let post = app
        .insert_post("alice", imagegram::domain::PostStatus::Published, 0)
        .await
        .to_string();
    let c = app.comment(&post, "bob", "hello").await;
    assert_eq!(c.status, 201, "{}", c.body);
    let id = c.body["id"].as_str().unwrap();
    let d = app
        .call(
            "DELETE",
            &format!("/posts/{post}/comments/{id}"),
            Some("bob"),
            None,
        )
        .await;
    assert_eq!(d.status, 204);
    let mut conn = app.db.get_conn().await.unwrap();
    let user_now: String = conn
        .query_first("SELECT CURRENT_USER()")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(user_now, format!("{user}@%"));
    for ddl in [
        "CREATE TABLE t (x INT)",
        "ALTER TABLE posts ADD COLUMN x INT",
        "DROP TABLE comments",
    ] {
        let err = conn.query_drop(ddl).await.expect_err(ddl);
        // 1142: command denied to user.
        assert!(
            matches!(&err, mysql_async::Error::Server(s) if s.code == 1142),
            "{ddl}: {err:?}"
        );
    }
    imagegram_tests::master_pool()
        .await
        .get_conn()
        .await
        .unwrap()
        .query_drop(format!("DROP USER '{user}'@'%'"))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_database_that_applied_v4s_old_text_migrates_again() {
    let (_db, store) = fresh_database().await;
    let pool = store.pool();
    // What a database migrated before V4 was made portable holds.
    pool.get_conn()
        .await
        .unwrap()
        .exec_drop(
            "UPDATE refinery_schema_history SET checksum = ? WHERE version = 4",
            ("13969321240071380226",),
        )
        .await
        .unwrap();
    migrate(&pool)
        .await
        .expect("the old V4 is accepted as the new one");
    let checksum: String = pool
        .get_conn()
        .await
        .unwrap()
        .query_first("SELECT checksum FROM refinery_schema_history WHERE version = 4")
        .await
        .unwrap()
        .unwrap();
    assert_ne!(checksum, "13969321240071380226");
    // Any other divergence is still refused.
    pool.get_conn()
        .await
        .unwrap()
        .query_drop("UPDATE refinery_schema_history SET checksum = '1' WHERE version = 3")
        .await
        .unwrap();
    assert!(
        migrate(&pool).await.is_err(),
        "an edited V3 must be refused"
    );
}
