//! The deploy's database step, run by CloudFormation as a custom resource
//! (`DatabaseSchema` in template.yaml) before the functions that use the
//! database are updated: it creates the database if missing, applies the
//! pending migrations, and creates or updates the application user with
//! only the privileges the functions need (rows, never schema). It logs in
//! as the master user; the functions log in as the application user and
//! never see the master's secret.
//!
//! Safe to run again: every step is "if missing" or sets what is already
//! set. A stack delete removes nothing (the data outlives the stack).

use mysql_async::prelude::*;

use crate::Error;
use crate::config::{DbConfig, Env};
use crate::secrets::SecretReader;

/// The privileges of the functions' user: rows of the application's
/// tables, nothing else (no DDL, no other database, no GRANT).
pub const APP_PRIVILEGES: &str = "SELECT, INSERT, UPDATE, DELETE";

/// What the step needs: the master's login, and the application user's
/// name and password.
#[derive(Debug)]
pub struct SchemaConfig {
    /// The master user (`MASTER_SECRET_ARN`), at `DATABASE_HOST` etc. as the
    /// functions' configuration reads them.
    pub master: DbConfig,
    pub app_user: String,
    pub app_password: crate::config::Secret,
}

impl SchemaConfig {
    /// `MASTER_SECRET_ARN` (the database's master secret, as RDS manages
    /// it) and `DATABASE_SECRET_ARN` (the application user's: `username`
    /// and `password`), read now: a custom resource runs once a deploy.
    pub async fn load(env: &Env, secrets: &impl SecretReader) -> Result<Self, Error> {
        let master = secrets.read(&env.required("MASTER_SECRET_ARN")?).await?;
        let app = secrets.read(&env.required("DATABASE_SECRET_ARN")?).await?;
        #[derive(serde::Deserialize)]
        struct Login {
            username: String,
            password: String,
        }
        let app: Login = serde_json::from_str(&app).map_err(|_| {
            Error::internal(
                "the secret named by DATABASE_SECRET_ARN is not JSON with string fields \
                 \"username\" and \"password\"",
            )
        })?;
        Ok(SchemaConfig {
            master: DbConfig::from_secret(env, &master)?,
            app_user: app.username,
            app_password: crate::config::Secret::new(app.password),
        })
    }
}

/// A MySQL identifier we write into DDL (database and user names cannot be
/// bound as parameters): letters, digits and `_` only, so quoting is exact.
fn identifier(what: &str, name: &str) -> Result<(), Error> {
    if !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
    {
        Ok(())
    } else {
        Err(Error::internal(format!(
            "{what} {name:?} must be 1 to 64 letters, digits or underscores"
        )))
    }
}

/// Database, migrations, application user. Returns the schema's version
/// (the last migration applied).
pub async fn apply(cfg: &SchemaConfig) -> Result<i64, Error> {
    let db = &cfg.master.database;
    identifier("DATABASE_NAME", db)?;
    identifier("the application user's name", &cfg.app_user)?;
    let server = {
        // The server without a database: it may not exist yet.
        let mut no_db = cfg.master.clone();
        no_db.database = String::new();
        crate::store::MySqlStore::connect(&no_db, 1).pool()
    };
    let mut conn = server.get_conn().await?;
    conn.query_drop(format!(
        "CREATE DATABASE IF NOT EXISTS `{db}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"
    ))
    .await?;
    let store = crate::store::MySqlStore::connect(&cfg.master, 1);
    crate::store::migrate(&store.pool()).await?;
    // The password as a quoted literal (DDL takes no parameters); '%': the
    // functions connect from the VPC's addresses.
    let password = mysql_async::Value::from(cfg.app_password.expose()).as_sql(false);
    let user = format!("'{}'@'%'", cfg.app_user);
    conn.query_drop(format!(
        "CREATE USER IF NOT EXISTS {user} IDENTIFIED BY {password}"
    ))
    .await?;
    // Again for an existing user: the secret may have a new password.
    conn.query_drop(format!("ALTER USER {user} IDENTIFIED BY {password}"))
        .await?;
    conn.query_drop(format!("GRANT {APP_PRIVILEGES} ON `{db}`.* TO {user}"))
        .await?;
    let version: Option<i64> = conn
        .query_first(format!(
            "SELECT MAX(version) FROM `{db}`.refinery_schema_history"
        ))
        .await?;
    drop(conn);
    server.disconnect().await.ok();
    store.pool().disconnect().await.ok();
    Ok(version.unwrap_or(0))
}

/// What CloudFormation sends a custom resource (the fields this step
/// reads; aws_lambda_events' types are non-exhaustive, so matching them
/// would need a wildcard arm).
#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Request {
    pub request_type: RequestType,
    #[serde(rename = "ResponseURL")]
    pub response_url: String,
    pub stack_id: String,
    pub request_id: String,
    pub logical_resource_id: String,
    /// On Update and Delete: what the Create answered.
    pub physical_resource_id: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
pub enum RequestType {
    Create,
    Update,
    Delete,
}

/// The answer, PUT to the request's ResponseURL.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Response {
    pub status: Status,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub physical_resource_id: String,
    pub stack_id: String,
    pub request_id: String,
    pub logical_resource_id: String,
    pub data: std::collections::BTreeMap<String, String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Status {
    Success,
    Failed,
}

/// The answer CloudFormation waits for: SUCCESS with the schema's version
/// (`Data.SchemaVersion`), or FAILED with a reason that names no secret.
/// Delete succeeds without touching anything.
pub async fn handle(
    request: &Request,
    cfg: impl AsyncFnOnce() -> Result<SchemaConfig, Error>,
) -> Response {
    let outcome = match request.request_type {
        RequestType::Delete => Ok(None),
        RequestType::Create | RequestType::Update => match cfg().await {
            Ok(cfg) => apply(&cfg).await.map(|v| Some((cfg.master.database, v))),
            Err(e) => Err(e),
        },
    };
    let mut response = Response {
        status: Status::Success,
        reason: None,
        // The same id across updates: a new one would make CloudFormation
        // delete the "old" resource.
        physical_resource_id: request
            .physical_resource_id
            .clone()
            .unwrap_or_else(|| format!("{}-schema", request.logical_resource_id)),
        stack_id: request.stack_id.clone(),
        request_id: request.request_id.clone(),
        logical_resource_id: request.logical_resource_id.clone(),
        data: Default::default(),
    };
    match outcome {
        Ok(Some((db, version))) => {
            tracing::info!(database = %db, version, "schema applied");
            response
                .data
                .insert("SchemaVersion".into(), version.to_string());
        }
        Ok(None) => tracing::info!("delete: the database and its data are kept"),
        Err(e) => {
            tracing::error!(error = %e, cause = ?std::error::Error::source(&e), "schema step failed");
            response.status = Status::Failed;
            response.reason = Some(format!("database schema step failed: {e}"));
        }
    }
    response
}

/// PUTs `response` to the request's ResponseURL (a presigned S3 URL), as
/// CloudFormation waits for. An answer that cannot be delivered is an
/// error: the invocation fails and Lambda retries it, where CloudFormation
/// would otherwise wait an hour.
pub async fn deliver(
    http: &reqwest::Client,
    request: &Request,
    response: &Response,
) -> Result<(), Error> {
    let body = serde_json::to_vec(response).map_err(Error::internal)?;
    http.put(&request.response_url)
        // The presigned URL signs no content type: send none.
        .header("content-type", "")
        .body(body)
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .map_err(|e| Error::unavailable("cloudformation response", e))?;
    Ok(())
}
