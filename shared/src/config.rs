//! Configuration, read once at cold start into typed structs. A missing or
//! malformed variable is an error that names it. Secrets (the database's
//! credentials, the cursor key) are never in the environment: it holds the
//! ARNs of Secrets Manager secrets, read here through [`crate::secrets`].

use std::collections::HashMap;
use std::fmt;
use std::ops::RangeInclusive;
use std::str::FromStr;

use crate::Error;
use crate::secrets::SecretReader;

/// A value that must not reach the logs.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// The variables configuration is read from: the process environment, or,
/// for the local stack and tests that run several functions in one process,
/// a map of their own.
#[derive(Clone, Debug, Default)]
pub struct Env {
    vars: HashMap<String, String>,
}

impl Env {
    pub fn from_process() -> Self {
        Env {
            vars: std::env::vars().collect(),
        }
    }

    /// This environment with `name` set (or replaced).
    pub fn with(mut self, name: &str, value: impl Into<String>) -> Self {
        self.vars.insert(name.to_owned(), value.into());
        self
    }

    /// Every variable, sorted by name.
    pub fn vars(&self) -> std::collections::BTreeMap<&str, &str> {
        self.vars
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect()
    }

    /// The value, if set and not blank: an empty value means "unset", as
    /// SAM passes declared-but-empty variables.
    pub fn optional(&self, name: &str) -> Option<String> {
        self.vars
            .get(name)
            .filter(|v| !v.trim().is_empty())
            .cloned()
    }

    pub fn required(&self, name: &str) -> Result<String, Error> {
        self.optional(name)
            .ok_or_else(|| Error::internal(format!("environment variable {name} is required")))
    }

    /// A number within `range`, `default` when unset.
    pub fn number<T>(&self, name: &str, default: T, range: RangeInclusive<T>) -> Result<T, Error>
    where
        T: FromStr + PartialOrd + fmt::Display + Copy,
    {
        let Some(v) = self.optional(name) else {
            return Ok(default);
        };
        match v.trim().parse::<T>() {
            Ok(n) if range.contains(&n) => Ok(n),
            _ => Err(Error::internal(format!(
                "environment variable {name} must be a whole number from {} to {}, not {v:?}",
                range.start(),
                range.end()
            ))),
        }
    }

    pub fn flag(&self, name: &str, default: bool) -> Result<bool, Error> {
        match self.optional(name).as_deref().map(str::trim) {
            None => Ok(default),
            Some("true" | "1") => Ok(true),
            Some("false" | "0") => Ok(false),
            Some(v) => Err(Error::internal(format!(
                "environment variable {name} must be true or false, not {v:?}"
            ))),
        }
    }
}

/// The AWS SDK's configuration from the environment (region, credentials,
/// `AWS_ENDPOINT_URL`), with the project's timeouts: an S3, SQS or Secrets
/// Manager endpoint that stops answering costs at most `OPERATION` (then a
/// 503 or a retried message), never the whole Lambda timeout. Two attempts:
/// the client's own retry covers a dropped connection, and a client of the
/// API retries after `Retry-After`.
///
/// `LOCAL_ENDPOINT_URL`, when set and not blank, sends every call to that
/// endpoint (the local stack's moto under `sam local`). The template
/// declares it empty, as SAM passes a function only the variables its
/// template declares; empty means AWS's own endpoints. (An empty
/// `AWS_ENDPOINT_URL` would mean the same to the SDK, but it logs a warning
/// about an invalid URL at every cold start.) `AWS_ENDPOINT_URL` itself
/// works as the SDK documents.
pub async fn aws_sdk() -> aws_config::SdkConfig {
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
    if let Some(url) = endpoint_override(&Env::from_process()) {
        loader = loader.endpoint_url(url);
    }
    aws_sdk_from(loader).await
}

/// `LOCAL_ENDPOINT_URL`, unless unset or blank.
pub fn endpoint_override(env: &Env) -> Option<String> {
    env.optional("LOCAL_ENDPOINT_URL")
}

/// [`aws_sdk`]'s timeouts and retries on a loader given other settings
/// (the tests' defaults).
pub async fn aws_sdk_from(loader: aws_config::ConfigLoader) -> aws_config::SdkConfig {
    use aws_config::retry::RetryConfig;
    use aws_config::timeout::TimeoutConfig;
    use std::time::Duration;
    loader
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(1))
                // Between bytes of an answer, a streamed original included.
                .read_timeout(Duration::from_secs(5))
                // CompleteMultipartUpload of 100 MiB takes S3 a few seconds.
                .operation_attempt_timeout(Duration::from_secs(4))
                .operation_timeout(Duration::from_secs(8))
                .build(),
        )
        .retry_config(RetryConfig::standard().with_max_attempts(2))
        .load()
        .await
}

/// The API's own budget for one S3 call, retries included: a hung object
/// store is a 503 (with `Retry-After`) within 3 s, as a hung database is
/// within its 2 s (`DB_TIMEOUT_MS`). In AWS each such request holds a
/// function for that long, so this bounds the concurrency an outage takes
/// (docs/DEPLOYING.md, "Throttles and concurrency"). The pipeline keeps
/// [`aws_sdk_from`]'s longer ones: it streams originals and has no client
/// waiting.
pub fn api_s3_timeouts() -> aws_config::timeout::TimeoutConfig {
    use std::time::Duration;
    aws_config::timeout::TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(1))
        .read_timeout(Duration::from_millis(1400))
        // Two attempts (the standard retry) of at most 1.4 s each.
        .operation_attempt_timeout(Duration::from_millis(1400))
        .operation_timeout(Duration::from_millis(2800))
        .build()
}

/// Where the database is and how to log in: built from fields, so a password
/// with `#?/@%` in it is just a password.
#[derive(Clone, Debug)]
pub struct DbConfig {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: Secret,
    pub database: String,
    /// TLS (rustls, webpki roots) to the server: always in AWS.
    pub tls: bool,
    /// Longest a database operation may take (pool wait included) before
    /// it is a 503 (`DB_TIMEOUT_MS`, default 2000).
    pub timeout: std::time::Duration,
    /// Reads this configuration again from its secret: the store calls it
    /// when the server refuses the password (error 1045, the secret was
    /// rotated) and reconnects once with what it gets. None where the
    /// credentials come from nowhere else (tests, tools).
    pub reload: Option<Reload>,
}

type Loading = std::pin::Pin<Box<dyn std::future::Future<Output = Result<DbConfig, Error>> + Send>>;

/// [`DbConfig::reload`]: the secret read again, on demand.
#[derive(Clone)]
pub struct Reload(std::sync::Arc<dyn Fn() -> Loading + Send + Sync>);

impl Reload {
    pub fn new<F, Fut>(f: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = Result<DbConfig, Error>> + Send + 'static,
    {
        Reload(std::sync::Arc::new(move || Box::pin(f())))
    }

    pub async fn load(&self) -> Result<DbConfig, Error> {
        (self.0)().await
    }
}

impl fmt::Debug for Reload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Reload")
    }
}

impl DbConfig {
    /// `DATABASE_SECRET_ARN` names a Secrets Manager secret holding JSON
    /// with `username` and `password` (and, as RDS writes them, `host`,
    /// `port`, `dbname`); `DATABASE_HOST`, `DATABASE_PORT` and
    /// `DATABASE_NAME` override those (the template sets the host and the
    /// name). `DATABASE_TLS` defaults to true.
    pub async fn load<R>(env: &Env, secrets: &R) -> Result<Self, Error>
    where
        R: SecretReader + Clone + Send + 'static,
    {
        let arn = env.required("DATABASE_SECRET_ARN")?;
        let raw = secrets.read(&arn).await?;
        let mut cfg = Self::from_secret(env, &raw)?;
        let (env, secrets) = (env.clone(), secrets.clone());
        cfg.reload = Some(Reload::new(move || {
            let (env, secrets, arn) = (env.clone(), secrets.clone(), arn.clone());
            async move { Self::from_secret(&env, &secrets.read(&arn).await?) }
        }));
        Ok(cfg)
    }

    pub fn from_secret(env: &Env, raw: &str) -> Result<Self, Error> {
        #[derive(serde::Deserialize)]
        struct Fields {
            username: String,
            password: String,
            host: Option<String>,
            port: Option<serde_json::Value>,
            dbname: Option<String>,
        }
        let f: Fields = serde_json::from_str(raw).map_err(|_| {
            // Never the serde message: it may quote the secret.
            Error::internal(
                "the secret named by DATABASE_SECRET_ARN is not JSON with string fields \
                 \"username\" and \"password\"",
            )
        })?;
        let secret_port = match f.port {
            None => None,
            Some(serde_json::Value::Number(n)) => n.as_u64().and_then(|n| u16::try_from(n).ok()),
            Some(serde_json::Value::String(s)) => s.parse().ok(),
            Some(_) => None,
        };
        let host = env
            .optional("DATABASE_HOST")
            .or(f.host)
            .ok_or_else(|| Error::internal("DATABASE_HOST is required (the secret has no host)"))?;
        let database = env.optional("DATABASE_NAME").or(f.dbname).ok_or_else(|| {
            Error::internal("DATABASE_NAME is required (the secret has no dbname)")
        })?;
        Ok(DbConfig {
            host,
            port: env.number("DATABASE_PORT", secret_port.unwrap_or(3306), 1..=65535)?,
            user: f.username,
            password: Secret::new(f.password),
            database,
            tls: env.flag("DATABASE_TLS", true)?,
            timeout: std::time::Duration::from_millis(env.number(
                "DB_TIMEOUT_MS",
                2000,
                50..=60_000,
            )?),
            reload: None,
        })
    }
}

/// What the API function needs.
#[derive(Clone, Debug)]
pub struct ApiConfig {
    pub db: DbConfig,
    /// Most connections one container opens: Lambda serves one request per
    /// container at a time, the local gateway many.
    pub db_pool_max: usize,
    /// Bucket holding originals and converted images.
    pub bucket: String,
    /// Key for signing pagination cursors (Secrets Manager, `CURSOR_SECRET_ARN`).
    pub cursor_secret: Secret,
    /// Serve images from this base (the CloudFront distribution) instead of
    /// presigned S3 GETs.
    pub image_base_url: Option<String>,
    /// Lifetime of presigned URLs (upload parts and image GETs).
    pub presign_ttl_secs: u64,
    /// How long an upload may stay open: after it, the post and its upload
    /// are removed. Part URLs never outlive it.
    pub upload_ttl_secs: u64,
    /// Most uploads one user may have open (posts awaiting their upload).
    pub max_open_uploads: u32,
    /// The notifications' WebSocket URL (`EVENTS_URL`), which tickets are
    /// for.
    pub events_url: String,
}

/// SigV4 presigned URLs live at most 7 days.
const MAX_PRESIGN_SECS: u64 = 7 * 24 * 3600;
/// The bucket aborts multipart uploads a day after they start; an upload's
/// deadline stays well before that.
const MAX_UPLOAD_TTL_SECS: u64 = 20 * 3600;

impl ApiConfig {
    pub async fn load(
        env: &Env,
        secrets: &(impl SecretReader + Clone + Send + 'static),
    ) -> Result<Self, Error> {
        let cursor_arn = env.required("CURSOR_SECRET_ARN")?;
        let (db, cursor) = tokio::join!(DbConfig::load(env, secrets), secrets.read(&cursor_arn));
        let presign_ttl_secs = env.number("PRESIGN_TTL_SECS", 3600, 60..=MAX_PRESIGN_SECS)?;
        let upload_ttl_secs = env.number("UPLOAD_TTL_SECS", 6 * 3600, 60..=MAX_UPLOAD_TTL_SECS)?;
        if presign_ttl_secs > upload_ttl_secs {
            return Err(Error::internal(format!(
                "PRESIGN_TTL_SECS ({presign_ttl_secs}) must not exceed UPLOAD_TTL_SECS \
                 ({upload_ttl_secs})"
            )));
        }
        let cursor = cursor?;
        if cursor.len() < 32 {
            return Err(Error::internal(
                "the cursor key (CURSOR_SECRET_ARN) must be at least 32 characters",
            ));
        }
        Ok(ApiConfig {
            db: db?,
            db_pool_max: env.number("DB_POOL_MAX", 2, 1..=1000)?,
            bucket: env.required("BUCKET")?,
            cursor_secret: Secret::new(cursor),
            image_base_url: env
                .optional("IMAGE_BASE_URL")
                .map(|u| u.trim_end_matches('/').to_owned()),
            presign_ttl_secs,
            upload_ttl_secs,
            max_open_uploads: env.number("MAX_OPEN_UPLOADS", 10, 1..=10_000)?,
            events_url: env.required("EVENTS_URL")?,
        })
    }
}

/// What the converter function needs.
#[derive(Clone, Debug)]
pub struct ConverterConfig {
    /// Bucket of originals and converted images; events of others are ignored.
    pub bucket: String,
    /// The finalizer's queue.
    pub results_queue_url: String,
}

impl ConverterConfig {
    pub fn load(env: &Env) -> Result<Self, Error> {
        Ok(ConverterConfig {
            bucket: env.required("BUCKET")?,
            results_queue_url: env.required("RESULTS_QUEUE_URL")?,
        })
    }
}

/// What the finalizer function needs.
#[derive(Clone, Debug)]
pub struct FinalizerConfig {
    pub db: DbConfig,
    pub db_pool_max: usize,
    pub notify: NotifyConfig,
}

/// What telling authors needs (the finalizer's and the sweeper's).
#[derive(Clone, Debug)]
pub struct NotifyConfig {
    /// The WebSocket API stage's management endpoint (`EVENTS_ENDPOINT`:
    /// `https://{api}.execute-api.{region}.amazonaws.com/{stage}`).
    pub endpoint: String,
    /// Where published images are, to sign their URLs as the API does.
    pub bucket: String,
    pub image_base_url: Option<String>,
    pub presign_ttl_secs: u64,
}

impl NotifyConfig {
    pub fn load(env: &Env) -> Result<Self, Error> {
        Ok(NotifyConfig {
            endpoint: env.required("EVENTS_ENDPOINT")?,
            bucket: env.required("BUCKET")?,
            image_base_url: env
                .optional("IMAGE_BASE_URL")
                .map(|u| u.trim_end_matches('/').to_owned()),
            presign_ttl_secs: env.number("PRESIGN_TTL_SECS", 3600, 60..=MAX_PRESIGN_SECS)?,
        })
    }
}

/// What the WebSocket API's function needs: the database (connections)
/// and the key tickets are signed with.
#[derive(Clone, Debug)]
pub struct EventsConfig {
    pub db: DbConfig,
    pub db_pool_max: usize,
    pub cursor_secret: Secret,
}

impl EventsConfig {
    pub async fn load(
        env: &Env,
        secrets: &(impl SecretReader + Clone + Send + 'static),
    ) -> Result<Self, Error> {
        let cursor_arn = env.required("CURSOR_SECRET_ARN")?;
        let (db, cursor) = tokio::join!(DbConfig::load(env, secrets), secrets.read(&cursor_arn));
        Ok(EventsConfig {
            db: db?,
            db_pool_max: env.number("DB_POOL_MAX", 1, 1..=1000)?,
            cursor_secret: Secret::new(cursor?),
        })
    }
}

impl FinalizerConfig {
    pub async fn load(
        env: &Env,
        secrets: &(impl SecretReader + Clone + Send + 'static),
    ) -> Result<Self, Error> {
        Ok(FinalizerConfig {
            db: DbConfig::load(env, secrets).await?,
            db_pool_max: env.number("DB_POOL_MAX", 1, 1..=1000)?,
            notify: NotifyConfig::load(env)?,
        })
    }
}

/// What the sweeper function needs.
#[derive(Clone, Debug)]
pub struct SweeperConfig {
    pub db: DbConfig,
    pub bucket: String,
    /// Where conversions are requested again.
    pub conversion_queue_url: String,
    pub limits: SweepLimits,
    pub notify: NotifyConfig,
}

/// The sweeper's deadlines and bounds.
#[derive(Clone, Debug)]
pub struct SweepLimits {
    /// A post processing for longer is looked at (`SWEEP_PROCESSING_AFTER_SECS`,
    /// default 45 minutes: past the conversion queue's own retries, 5 x 6
    /// minutes).
    pub processing_after_secs: u64,
    /// Conversions requested again before the post fails
    /// (`SWEEP_MAX_ATTEMPTS`, default 3).
    pub max_attempts: u32,
    /// Posts handled per kind and run (`SWEEP_BATCH`, default 500).
    pub batch: u32,
}

impl SweeperConfig {
    pub async fn load(
        env: &Env,
        secrets: &(impl SecretReader + Clone + Send + 'static),
    ) -> Result<Self, Error> {
        Ok(SweeperConfig {
            db: DbConfig::load(env, secrets).await?,
            bucket: env.required("BUCKET")?,
            conversion_queue_url: env.required("CONVERSION_QUEUE_URL")?,
            limits: SweepLimits {
                processing_after_secs: env.number(
                    "SWEEP_PROCESSING_AFTER_SECS",
                    45 * 60,
                    1..=7 * 24 * 3600,
                )?,
                max_attempts: env.number("SWEEP_MAX_ATTEMPTS", 3, 0..=100)?,
                batch: env.number("SWEEP_BATCH", 500, 1..=10_000)?,
            },
            notify: NotifyConfig::load(env)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cause(e: &Error) -> String {
        std::error::Error::source(e)
            .map(|s| s.to_string())
            .unwrap_or_default()
    }

    #[test]
    fn an_empty_endpoint_override_means_aws() {
        let env = Env::default();
        assert_eq!(endpoint_override(&env), None);
        assert_eq!(
            endpoint_override(&env.clone().with("LOCAL_ENDPOINT_URL", "")),
            None
        );
        assert_eq!(
            endpoint_override(&env.clone().with("LOCAL_ENDPOINT_URL", "  ")),
            None
        );
        assert_eq!(
            endpoint_override(&env.with("LOCAL_ENDPOINT_URL", "http://127.0.0.1:4566")).as_deref(),
            Some("http://127.0.0.1:4566")
        );
    }

    #[test]
    fn numbers_outside_their_range_name_the_variable() {
        let env = Env::default().with("PRESIGN_TTL_SECS", "10");
        let e = env
            .number("PRESIGN_TTL_SECS", 3600u64, 60..=600)
            .unwrap_err();
        assert!(cause(&e).contains("PRESIGN_TTL_SECS"), "{e:?}");
        let env = Env::default().with("PRESIGN_TTL_SECS", "1h");
        assert!(env.number("PRESIGN_TTL_SECS", 3600u64, 60..=600).is_err());
        let env = Env::default().with("PRESIGN_TTL_SECS", " ");
        assert_eq!(
            env.number("PRESIGN_TTL_SECS", 300u64, 60..=600).unwrap(),
            300
        );
    }

    #[test]
    fn database_fields_come_from_the_secret_and_may_hold_any_character() {
        let secret =
            r#"{"username":"app","password":"p#?/@%:x","host":"h","port":3307,"dbname":"d"}"#;
        let c = DbConfig::from_secret(&Env::default(), secret).unwrap();
        assert_eq!(
            (
                c.host.as_str(),
                c.port,
                c.user.as_str(),
                c.database.as_str(),
                c.tls
            ),
            ("h", 3307, "app", "d", true)
        );
        assert_eq!(c.password.expose(), "p#?/@%:x");
        assert_eq!(
            format!("{c:?}").matches("p#?").count(),
            0,
            "password in Debug"
        );
        let env = Env::default()
            .with("DATABASE_HOST", "proxy")
            .with("DATABASE_NAME", "imagegram")
            .with("DATABASE_TLS", "false");
        let c = DbConfig::from_secret(&env, r#"{"username":"a","password":"b","port":"3306"}"#)
            .unwrap();
        assert_eq!(
            (c.host.as_str(), c.database.as_str(), c.tls),
            ("proxy", "imagegram", false)
        );
    }

    #[test]
    fn a_malformed_secret_is_not_quoted_in_the_error() {
        let e = DbConfig::from_secret(&Env::default(), "hunter2").unwrap_err();
        assert!(!cause(&e).contains("hunter2"));
    }
}
