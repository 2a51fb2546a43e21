//! Configuration, read once at cold start into typed structs. A missing or
//! malformed variable is an error that names it.

use std::fmt;

use crate::Error;

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

pub fn required(name: &str) -> Result<String, Error> {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => Ok(v),
        _ => Err(Error::internal(format!(
            "environment variable {name} is required"
        ))),
    }
}

pub fn optional(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

pub fn parsed<T: std::str::FromStr>(name: &str, default: T) -> Result<T, Error> {
    match optional(name) {
        None => Ok(default),
        Some(v) => v.parse().map_err(|_| {
            Error::internal(format!("environment variable {name} is malformed: {v:?}"))
        }),
    }
}

/// What the API function needs.
#[derive(Clone, Debug)]
pub struct ApiConfig {
    /// `mysql://user:password@host:port/db`; in AWS the RDS Proxy endpoint.
    pub database_url: Secret,
    /// Most connections one container opens: Lambda serves one request per
    /// container at a time, the local gateway many.
    pub db_pool_max: usize,
    /// Bucket holding originals and converted images.
    pub bucket: String,
    /// Key for signing pagination cursors.
    pub cursor_secret: Secret,
    /// Serve images from this base (a CDN) instead of presigned S3 GETs.
    pub image_base_url: Option<String>,
    /// Lifetime of presigned URLs (upload parts and image GETs).
    pub presign_ttl_secs: u64,
}

impl ApiConfig {
    pub fn from_env() -> Result<Self, Error> {
        Ok(ApiConfig {
            database_url: Secret::new(required("DATABASE_URL")?),
            db_pool_max: parsed("DB_POOL_MAX", 4)?,
            bucket: required("BUCKET")?,
            cursor_secret: Secret::new(required("CURSOR_SECRET")?),
            image_base_url: optional("IMAGE_BASE_URL").map(|u| u.trim_end_matches('/').to_owned()),
            presign_ttl_secs: parsed("PRESIGN_TTL_SECS", 3600)?,
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
    pub fn from_env() -> Result<Self, Error> {
        Ok(ConverterConfig {
            bucket: required("BUCKET")?,
            results_queue_url: required("RESULTS_QUEUE_URL")?,
        })
    }
}

/// What the finalizer function needs.
#[derive(Clone, Debug)]
pub struct FinalizerConfig {
    pub database_url: Secret,
    pub db_pool_max: usize,
}

impl FinalizerConfig {
    pub fn from_env() -> Result<Self, Error> {
        Ok(FinalizerConfig {
            database_url: Secret::new(required("DATABASE_URL")?),
            db_pool_max: parsed("DB_POOL_MAX", 2)?,
        })
    }
}
