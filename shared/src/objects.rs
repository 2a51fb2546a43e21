//! The object-store capability and its S3 adapter.

use std::future::Future;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_s3::Client;
use aws_sdk_s3::presigning::PresigningConfig;

use crate::Error;

pub trait ObjectStore: Send + Sync + 'static {
    /// Whether the bucket answers, for `/health`.
    fn ping(&self) -> impl Future<Output = Result<(), Error>> + Send;

    /// An absolute URL that serves the converted JPEG at `key`.
    fn image_url(&self, key: &str) -> impl Future<Output = Result<String, Error>> + Send;
}

#[derive(Clone)]
pub struct S3Objects {
    client: Client,
    bucket: String,
    /// Serve through this base URL (a CDN in front of the bucket) instead of
    /// presigned GETs.
    public_base_url: Option<String>,
    presign_ttl: Duration,
}

impl S3Objects {
    pub fn new(
        client: Client,
        bucket: String,
        public_base_url: Option<String>,
        presign_ttl: Duration,
    ) -> Self {
        S3Objects {
            client,
            bucket,
            public_base_url,
            presign_ttl,
        }
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// Presigning starts at the top of the current window (one TTL long) and
    /// lasts two windows: the same image gets the same URL for a while, so
    /// browsers and CDNs can cache it, and a URL handed out is valid for at
    /// least one full TTL.
    fn presigning(&self) -> Result<PresigningConfig, Error> {
        let ttl = self.presign_ttl.as_secs().max(60);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let start = UNIX_EPOCH + Duration::from_secs(now - now % ttl);
        PresigningConfig::builder()
            .start_time(start)
            .expires_in(Duration::from_secs(2 * ttl))
            .build()
            .map_err(Error::internal)
    }
}

/// S3 errors that mean "try again later" rather than "this is wrong".
pub(crate) fn s3_error<E>(e: aws_sdk_s3::error::SdkError<E>) -> Error
where
    E: std::error::Error + Send + Sync + 'static,
{
    use aws_sdk_s3::error::SdkError;
    match e {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            Error::unavailable("object store", e)
        }
        SdkError::ServiceError(ref s) if s.raw().status().is_server_error() => {
            Error::unavailable("object store", e)
        }
        _ => Error::internal(e),
    }
}

impl ObjectStore for S3Objects {
    async fn ping(&self) -> Result<(), Error> {
        self.client
            .head_bucket()
            .bucket(&self.bucket)
            .send()
            .await
            .map_err(s3_error)?;
        Ok(())
    }

    async fn image_url(&self, key: &str) -> Result<String, Error> {
        if let Some(base) = &self.public_base_url {
            return Ok(format!("{base}/{key}"));
        }
        // Local computation: signing makes no request (credentials are cached
        // after the first call).
        let req = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .response_content_type("image/jpeg")
            .presigned(self.presigning()?)
            .await
            .map_err(Error::internal)?;
        Ok(req.uri().to_owned())
    }
}
