//! The object-store capability and its S3 adapter.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_s3::Client;
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};

use crate::Error;

pub trait ObjectStore: Send + Sync + 'static {
    /// Whether the bucket answers, for `/health`.
    fn ping(&self) -> impl Future<Output = Result<(), Error>> + Send;

    /// An absolute URL that serves the converted JPEG at `key`.
    fn image_url(&self, key: &str) -> impl Future<Output = Result<String, Error>> + Send;

    /// Opens a multipart upload of an original of `declared_size` bytes
    /// (kept as the object's metadata, which the converter checks); returns
    /// its id.
    fn create_upload(
        &self,
        key: &str,
        content_type: &str,
        declared_size: u64,
    ) -> impl Future<Output = Result<String, Error>> + Send;

    /// A presigned URL for one S3 request of a multipart upload, which the
    /// client sends itself, valid for `expires_in`; with the headers the
    /// signature covers that the client must send (never `Content-Length`,
    /// which a browser sets itself: an upload part's is signed all the same,
    /// so S3 refuses a PUT of any other size). No checksum headers are
    /// signed, so any HTTP client can use it.
    fn presign(
        &self,
        key: &str,
        request: &UploadRequest<'_>,
        expires_in: Duration,
    ) -> impl Future<Output = Result<Presigned, Error>> + Send;

    /// The parts S3 holds, all pages. `Ok(None)` when the upload is gone.
    fn list_parts(
        &self,
        key: &str,
        upload_id: &str,
    ) -> impl Future<Output = Result<Option<Vec<UploadedPart>>, Error>> + Send;

    /// Completes the upload with these `(part_number, etag)`s.
    fn complete_upload(
        &self,
        key: &str,
        upload_id: &str,
        parts: &[(u32, String)],
    ) -> impl Future<Output = Result<(), Error>> + Send;

    /// Whether S3 holds the original at `key`: the upload of a post was
    /// completed, whatever its record says.
    fn original_exists(&self, key: &str) -> impl Future<Output = Result<bool, Error>> + Send;

    /// Aborts the upload; an upload already gone is no error.
    fn abort_upload(
        &self,
        key: &str,
        upload_id: &str,
    ) -> impl Future<Output = Result<(), Error>> + Send;

    /// How long presigned URLs live.
    fn presign_ttl(&self) -> Duration;
}

/// An S3 request of a multipart upload that a client sends itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UploadRequest<'a> {
    /// CreateMultipartUpload, with the type and the declared size the
    /// server's own create sets.
    Create {
        content_type: &'a str,
        declared_size: u64,
    },
    /// UploadPart of exactly `size` bytes.
    Part {
        upload_id: &'a str,
        part_number: u32,
        size: u64,
    },
    ListParts {
        upload_id: &'a str,
    },
    Complete {
        upload_id: &'a str,
    },
    Abort {
        upload_id: &'a str,
    },
}

/// A presigned request: the URL and the headers it was signed with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Presigned {
    pub url: String,
    pub headers: Vec<(String, String)>,
}

/// The object metadata (`x-amz-meta-declared-size`) that carries the size a
/// post declared, set when its upload is created: the converter refuses an
/// original of any other size, however its upload was completed.
pub const DECLARED_SIZE: &str = "declared-size";

/// A part S3 holds.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct UploadedPart {
    pub part_number: u32,
    pub etag: String,
    pub size: u64,
}

#[derive(Clone)]
pub struct S3Objects {
    client: Client,
    bucket: String,
    /// Serve through this base URL (a CDN in front of the bucket) instead of
    /// presigned GETs.
    public_base_url: Option<String>,
    presign_ttl: Duration,
    /// Image URLs presigned in the current window (see `presigning`): the
    /// same for every request in it, and signing one costs ~120 us, which a
    /// feed page of 20 posts paid 20 times before this cache.
    image_urls: Arc<Mutex<UrlCache>>,
    /// The credentials the client signs with, for the window signer (an S3
    /// client does not lend its provider back).
    credentials: Option<aws_sdk_s3::config::SharedCredentialsProvider>,
}

#[derive(Default)]
struct UrlCache {
    window_start: u64,
    urls: HashMap<String, String>,
    /// The window's own signer, once learned from a URL the SDK signed
    /// (`crate::presign`); tried once a window.
    signer: Option<crate::presign::WindowSigner>,
    signer_tried: bool,
}

/// Bound on cached URLs (~1 KB each: key, URL and map overhead); the cache
/// starts afresh past it. A feed's hot pages are a few hundred images; the
/// 1M-post walk in docs/PERFORMANCE.md measured what an unbounded window
/// costs.
const URL_CACHE_MAX: usize = 10_000;

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
            image_urls: Arc::default(),
            credentials: None,
        }
    }

    /// Image URLs signed with these credentials (the ones the client was
    /// built with) take the fast path of `crate::presign`; without them
    /// the SDK signs every URL.
    pub fn signing_with(
        mut self,
        credentials: Option<aws_sdk_s3::config::SharedCredentialsProvider>,
    ) -> Self {
        self.credentials = credentials;
        self
    }

    async fn head_object(&self, key: &str) -> Result<Head, Error> {
        match self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(h) => Ok(Head::Found(Box::new(h))),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_not_found()) => Ok(Head::Missing),
            Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 403) => {
                Ok(Head::Refused)
            }
            Err(e) => Err(s3_error(e)),
        }
    }

    /// Presigning starts at the top of the current window (one TTL long) and
    /// lasts two windows: the same image gets the same URL for a while, so
    /// browsers can cache it, and a URL handed out is valid for at least one
    /// full TTL.
    fn window_start(&self) -> u64 {
        let ttl = self.presign_ttl.as_secs().max(60);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        now - now % ttl
    }

    fn presigning(&self, window_start: u64) -> Result<PresigningConfig, Error> {
        let ttl = self.presign_ttl.as_secs().max(60);
        PresigningConfig::builder()
            .start_time(UNIX_EPOCH + Duration::from_secs(window_start))
            .expires_in(Duration::from_secs(2 * ttl))
            .build()
            .map_err(Error::internal)
    }
}

/// The pipeline's view of the bucket: originals to read, converted images
/// to write (the converter) or look for (the sweeper).
#[cfg(feature = "pipeline")]
mod pipeline_adapter {
    use std::io::Read;

    use aws_sdk_s3::primitives::ByteStream;
    use tokio_util::io::SyncIoBridge;

    use super::{DECLARED_SIZE, Head, S3Objects, SOURCE_ETAG, THUMBHASH, s3_error};
    use crate::Error;
    use crate::pipeline::ports::{ConvertedImages, ObjectHead, Originals, Provenance};

    impl Originals for S3Objects {
        async fn head(&self, key: &str) -> Result<Option<ObjectHead>, Error> {
            match self.head_object(key).await? {
                Head::Found(h) => Ok(Some(ObjectHead {
                    size: h.content_length().unwrap_or(0).max(0) as u64,
                    etag: h.e_tag().unwrap_or_default().to_owned(),
                    declared_size: h
                        .metadata()
                        .and_then(|m| m.get(DECLARED_SIZE))
                        .and_then(|v| v.parse().ok()),
                })),
                Head::Missing => Ok(None),
                // The role may not read it, or (without s3:ListBucket) it is
                // missing: S3 will not say which. Retried, then dead-lettered.
                Head::Refused => Err(Error::internal(format!("S3 refused HEAD {key} (403)"))),
            }
        }

        /// The body as it downloads, so a 100 MiB original is never held
        /// whole. `etag` pins the version that was checked: if the object
        /// was replaced since, S3 answers 412 and the message is retried.
        async fn open(&self, key: &str, etag: &str) -> Result<Box<dyn Read + Send>, Error> {
            let out = self
                .client
                .get_object()
                .bucket(&self.bucket)
                .key(key)
                .if_match(etag)
                .send()
                .await
                .map_err(s3_error)?;
            // Read on a blocking thread, each read waiting on the download.
            Ok(Box::new(SyncIoBridge::new(out.body.into_async_read())))
        }
    }

    impl ConvertedImages for S3Objects {
        /// Only an optimisation (a repeated event skips its work), so when
        /// S3 will not say (403: a role without `s3:ListBucket` gets 403,
        /// not 404, for a missing key) the answer is "not converted yet",
        /// and the conversion runs: its PutObject overwrites, which is
        /// harmless.
        async fn source_of(&self, key: &str) -> Result<Option<Provenance>, Error> {
            Ok(match self.head_object(key).await? {
                Head::Found(h) => h.metadata().and_then(|m| {
                    Some(Provenance {
                        source_etag: m.get(SOURCE_ETAG)?.clone(),
                        thumbhash: m.get(THUMBHASH).cloned(),
                    })
                }),
                Head::Missing => None,
                Head::Refused => {
                    tracing::warn!(
                        key,
                        "HEAD answered 403 (without s3:ListBucket a missing key looks \
                         forbidden); converting"
                    );
                    None
                }
            })
        }

        async fn store(&self, key: &str, jpeg: Vec<u8>, made: &Provenance) -> Result<(), Error> {
            let mut put = self
                .client
                .put_object()
                .bucket(&self.bucket)
                .key(key)
                .content_type("image/jpeg")
                .cache_control("public, max-age=31536000, immutable")
                .metadata(SOURCE_ETAG, &made.source_etag);
            if let Some(t) = &made.thumbhash {
                put = put.metadata(THUMBHASH, t);
            }
            put.body(ByteStream::from(jpeg))
                .send()
                .await
                .map_err(s3_error)?;
            Ok(())
        }
    }
}

/// What a HEAD found (its output is read by the pipeline's adapters; the
/// API only asks whether the object is there).
enum Head {
    Found(
        #[cfg_attr(not(feature = "pipeline"), allow(dead_code))]
        Box<aws_sdk_s3::operation::head_object::HeadObjectOutput>,
    ),
    Missing,
    /// 403: not allowed to read it, or missing and not allowed to list.
    Refused,
}

/// Metadata on a converted image: the ETag of its original.
#[cfg(feature = "pipeline")]
const SOURCE_ETAG: &str = "source-etag";
/// Metadata on a converted image: its ThumbHash (base64).
#[cfg(feature = "pipeline")]
const THUMBHASH: &str = "thumbhash";

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
        let window = self.window_start();
        {
            let mut cache = self.image_urls.lock().expect("URL cache lock");
            if cache.window_start != window {
                *cache = UrlCache {
                    window_start: window,
                    ..UrlCache::default()
                };
            }
            if cache.urls.len() >= URL_CACHE_MAX {
                cache.urls.clear();
            }
            if let Some(url) = cache.urls.get(key) {
                return Ok(url.clone());
            }
            if let Some(url) = cache.signer.as_ref().and_then(|s| s.sign(key)) {
                cache.urls.insert(key.to_owned(), url.clone());
                return Ok(url);
            }
        }
        let learn = {
            let mut cache = self.image_urls.lock().expect("URL cache lock");
            !std::mem::replace(&mut cache.signer_tried, true)
        };
        // The credentials the SDK signs with (its provider caches them).
        let identity = match (learn, &self.credentials) {
            (true, Some(provider)) => {
                use aws_sdk_s3::config::ProvideCredentials;
                provider.provide_credentials().await.ok().map(Into::into)
            }
            _ => None,
        };
        // Local computation: signing makes no request (credentials are cached
        // after the first call).
        let req = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .response_content_type("image/jpeg")
            .presigned(self.presigning(window)?)
            .await
            .map_err(Error::internal)?;
        let url = req.uri().to_owned();
        let signer = match (identity, self.client.config().region()) {
            (Some(identity), Some(region)) => crate::presign::WindowSigner::learn(
                &url,
                key,
                identity,
                region.to_string(),
                UNIX_EPOCH + Duration::from_secs(window),
                self.presigning(window)?.expires(),
            ),
            _ => None,
        };
        let mut cache = self.image_urls.lock().expect("URL cache lock");
        if cache.window_start == window {
            cache.urls.insert(key.to_owned(), url.clone());
            if signer.is_some() {
                cache.signer = signer;
            }
        }
        Ok(url)
    }

    async fn create_upload(
        &self,
        key: &str,
        content_type: &str,
        declared_size: u64,
    ) -> Result<String, Error> {
        let out = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .content_type(content_type)
            .metadata(DECLARED_SIZE, declared_size.to_string())
            .send()
            .await
            .map_err(s3_error)?;
        out.upload_id()
            .map(str::to_owned)
            .ok_or_else(|| Error::internal("S3 returned no upload id"))
    }

    async fn presign(
        &self,
        key: &str,
        request: &UploadRequest<'_>,
        expires_in: Duration,
    ) -> Result<Presigned, Error> {
        let cfg = PresigningConfig::expires_in(expires_in).map_err(Error::internal)?;
        let (bucket, c) = (&self.bucket, &self.client);
        // The SDK presigns only some operations (not CreateMultipartUpload,
        // ListParts, CompleteMultipartUpload, AbortMultipartUpload). A
        // presigned URL is just a method, a path, a query and the headers
        // signed with them, so those are the presignable operation with the
        // same method and key, turned into the request S3 will be sent
        // before it is signed: the signature covers the method and query.
        let turned = |method: &'static str, query: String| {
            move |r: &mut aws_smithy_runtime_api::client::orchestrator::HttpRequest| {
                let uri = r.uri().to_owned();
                let path = uri.split_once('?').map_or(uri.as_str(), |(p, _)| p);
                r.set_uri(format!("{path}?{query}"))
                    .expect("the SDK's own URI with an escaped query");
                r.set_method(method).expect("a valid method");
            }
        };
        // RFC 3986's unreserved characters as they are, the rest escaped.
        const UNRESERVED: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
            .remove(b'-')
            .remove(b'.')
            .remove(b'_')
            .remove(b'~');
        let id = |u: &str| percent_encoding::utf8_percent_encode(u, UNRESERVED).to_string();
        let signed = match *request {
            UploadRequest::Create {
                content_type,
                declared_size,
            } => c
                .put_object()
                .bucket(bucket)
                .key(key)
                .content_type(content_type)
                .metadata(DECLARED_SIZE, declared_size.to_string())
                .customize()
                .mutate_request(turned("POST", "uploads&x-id=CreateMultipartUpload".into()))
                .presigned(cfg)
                .await
                .map_err(Error::internal),
            UploadRequest::Part {
                upload_id,
                part_number,
                size,
            } => c
                .upload_part()
                .bucket(bucket)
                .key(key)
                .upload_id(upload_id)
                .part_number(part_number as i32)
                .content_length(size as i64)
                .presigned(cfg)
                .await
                .map_err(Error::internal),
            UploadRequest::ListParts { upload_id } => c
                .get_object()
                .bucket(bucket)
                .key(key)
                .customize()
                .mutate_request(turned(
                    "GET",
                    format!("uploadId={}&x-id=ListParts", id(upload_id)),
                ))
                .presigned(cfg)
                .await
                .map_err(Error::internal),
            UploadRequest::Complete { upload_id } => c
                .put_object()
                .bucket(bucket)
                .key(key)
                .customize()
                .mutate_request(turned(
                    "POST",
                    format!("uploadId={}&x-id=CompleteMultipartUpload", id(upload_id)),
                ))
                .presigned(cfg)
                .await
                .map_err(Error::internal),
            UploadRequest::Abort { upload_id } => c
                .delete_object()
                .bucket(bucket)
                .key(key)
                .customize()
                .mutate_request(turned(
                    "DELETE",
                    format!("uploadId={}&x-id=AbortMultipartUpload", id(upload_id)),
                ))
                .presigned(cfg)
                .await
                .map_err(Error::internal),
        }?;
        Ok(Presigned {
            url: signed.uri().to_owned(),
            headers: signed
                .headers()
                .filter(|(name, _)| !name.eq_ignore_ascii_case("content-length"))
                .map(|(name, value)| (name.to_owned(), value.to_owned()))
                .collect(),
        })
    }

    async fn list_parts(
        &self,
        key: &str,
        upload_id: &str,
    ) -> Result<Option<Vec<UploadedPart>>, Error> {
        let mut parts = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            let out = self
                .client
                .list_parts()
                .bucket(&self.bucket)
                .key(key)
                .upload_id(upload_id)
                .set_part_number_marker(marker.take())
                .send()
                .await;
            let out = match out {
                Ok(o) => o,
                Err(e) if is_no_such_upload(&e) => return Ok(None),
                Err(e) => return Err(s3_error(e)),
            };
            for p in out.parts() {
                parts.push(UploadedPart {
                    part_number: p.part_number().unwrap_or(0).max(0) as u32,
                    etag: p.e_tag().unwrap_or_default().to_owned(),
                    size: p.size().unwrap_or(0).max(0) as u64,
                });
            }
            match (out.is_truncated(), out.next_part_number_marker()) {
                (Some(true), Some(next)) if !next.is_empty() => marker = Some(next.to_owned()),
                _ => break,
            }
        }
        parts.sort_by_key(|p| p.part_number);
        Ok(Some(parts))
    }

    async fn complete_upload(
        &self,
        key: &str,
        upload_id: &str,
        parts: &[(u32, String)],
    ) -> Result<(), Error> {
        let completed = CompletedMultipartUpload::builder()
            .set_parts(Some(
                parts
                    .iter()
                    .map(|(n, etag)| {
                        CompletedPart::builder()
                            .part_number(*n as i32)
                            .e_tag(etag)
                            .build()
                    })
                    .collect(),
            ))
            .build();
        let res = self
            .client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .multipart_upload(completed)
            .send()
            .await;
        match res {
            Ok(_) => Ok(()),
            Err(e) => {
                // S3 refuses parts that are missing, mismatched or too small:
                // the client's list is wrong, not the service.
                let code = e
                    .as_service_error()
                    .and_then(|s| aws_sdk_s3::error::ProvideErrorMetadata::code(s));
                match code {
                    Some(
                        "InvalidPart" | "InvalidPartOrder" | "EntityTooSmall" | "MalformedXML",
                    ) => Err(Error::InvalidRequest(format!(
                        "S3 refused the parts list ({}): every part but the last must be full, \
                             and each etag must match the part",
                        code.unwrap_or_default()
                    ))),
                    Some("NoSuchUpload") => {
                        Err(Error::Conflict("the upload no longer exists".into()))
                    }
                    _ => Err(s3_error(e)),
                }
            }
        }
    }

    async fn abort_upload(&self, key: &str, upload_id: &str) -> Result<(), Error> {
        match self
            .client
            .abort_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if is_no_such_upload(&e) => Ok(()),
            Err(e) => Err(s3_error(e)),
        }
    }

    fn presign_ttl(&self) -> Duration {
        self.presign_ttl
    }

    async fn original_exists(&self, key: &str) -> Result<bool, Error> {
        match self.head_object(key).await? {
            Head::Found(_) => Ok(true),
            Head::Missing => Ok(false),
            Head::Refused => Err(Error::internal(format!("S3 refused HEAD {key} (403)"))),
        }
    }
}

fn is_no_such_upload<E: aws_sdk_s3::error::ProvideErrorMetadata>(
    e: &aws_sdk_s3::error::SdkError<E>,
) -> bool {
    e.as_service_error().and_then(|s| s.code()) == Some("NoSuchUpload")
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region, retry::RetryConfig};
    use aws_smithy_runtime_api::client::http::{
        HttpConnector, HttpConnectorFuture, SharedHttpConnector, http_client_fn,
    };
    use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, HttpResponse};
    use aws_smithy_types::body::SdkBody;

    /// An S3 that answers every request with one status and no body, as S3
    /// answers a HEAD it refuses.
    #[derive(Debug)]
    struct Answer(u16);

    impl HttpConnector for Answer {
        fn call(&self, _: HttpRequest) -> HttpConnectorFuture {
            HttpConnectorFuture::ready(Ok(HttpResponse::new(
                self.0.try_into().unwrap(),
                SdkBody::empty(),
            )))
        }
    }

    fn s3_answering(status: u16) -> S3Objects {
        let http = http_client_fn(move |_, _| SharedHttpConnector::new(Answer(status)));
        let conf = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new("a", "b", None, None, "test"))
            .retry_config(RetryConfig::disabled())
            .http_client(http)
            .build();
        S3Objects::new(
            Client::from_conf(conf),
            "b".into(),
            None,
            Duration::from_secs(60),
        )
    }

    #[tokio::test]
    async fn a_403_from_the_already_converted_probe_means_convert_not_fail() {
        use crate::pipeline::ports::{ConvertedImages, Originals};
        // What S3 answers a role without s3:ListBucket for a missing key.
        let s3 = s3_answering(403);
        assert_eq!(s3.source_of("converted/x.jpg").await.unwrap(), None);
        // The original itself refused is not "missing" (which would fail
        // the post at once): an error, so the message is retried.
        assert!(matches!(
            s3.head("originals/x").await,
            Err(Error::Internal(_))
        ));

        let s3 = s3_answering(404);
        assert_eq!(s3.source_of("converted/x.jpg").await.unwrap(), None);
        assert!(s3.head("originals/x").await.unwrap().is_none());

        let s3 = s3_answering(503);
        assert!(matches!(
            s3.source_of("converted/x.jpg").await,
            Err(Error::Unavailable { .. })
        ));
    }

    #[tokio::test]
    async fn part_urls_sign_their_content_length() {
        let s3 = s3_answering(200);
        let part = UploadRequest::Part {
            upload_id: "u",
            part_number: 3,
            size: 1234,
        };
        let signed = s3
            .presign("originals/x", &part, Duration::from_secs(60))
            .await
            .unwrap();
        let url = &signed.url;
        assert_eq!(signed_headers(url), "content-length%3Bhost", "{url}");
        // No checksum parameters: a plain PUT from any client works; and
        // no Content-Length to send, which a browser may not set.
        assert!(!url.to_ascii_lowercase().contains("checksum"), "{url}");
        assert_eq!(signed.headers, []);
    }

    fn signed_headers(url: &str) -> &str {
        url.split(['?', '&'])
            .find_map(|kv| kv.strip_prefix("X-Amz-SignedHeaders="))
            .expect("a SigV4 query-string signature")
    }

    #[tokio::test]
    async fn a_signed_create_carries_the_type_and_declared_size_it_signed() {
        let s3 = s3_answering(200);
        let create = UploadRequest::Create {
            content_type: "image/png",
            declared_size: 31_457_280,
        };
        let signed = s3
            .presign("originals/x", &create, Duration::from_secs(60))
            .await
            .unwrap();
        let mut headers = signed.headers.clone();
        headers.sort();
        assert_eq!(
            headers,
            [
                ("content-type".to_owned(), "image/png".to_owned()),
                ("x-amz-meta-declared-size".to_owned(), "31457280".to_owned()),
            ]
        );
        assert_eq!(
            signed_headers(&signed.url),
            "content-type%3Bhost%3Bx-amz-meta-declared-size",
            "{}",
            signed.url
        );
        assert!(signed.url.contains("uploads"), "{}", signed.url);
        for (request, method_hint) in [
            (UploadRequest::ListParts { upload_id: "u" }, "ListParts"),
            (
                UploadRequest::Complete { upload_id: "u" },
                "CompleteMultipartUpload",
            ),
            (
                UploadRequest::Abort { upload_id: "u" },
                "AbortMultipartUpload",
            ),
        ] {
            let signed = s3
                .presign("originals/x", &request, Duration::from_secs(60))
                .await
                .unwrap();
            assert!(signed.url.contains("uploadId=u"), "{}", signed.url);
            assert!(signed.url.contains(method_hint), "{}", signed.url);
            assert_eq!(signed_headers(&signed.url), "host");
        }
        // Upload ids are escaped into the query (S3's hold `+`, `/`, `=`).
        let signed = s3
            .presign(
                "originals/x",
                &UploadRequest::Abort {
                    upload_id: "a+b/c=",
                },
                Duration::from_secs(60),
            )
            .await
            .unwrap();
        assert!(
            signed.url.contains("uploadId=a%2Bb%2Fc%3D&"),
            "{}",
            signed.url
        );
    }

    /// S3Objects over a config that never sends anything (presigning is
    /// local), with these credentials and this endpoint.
    fn presigner(session_token: Option<&str>, endpoint: Option<&str>) -> S3Objects {
        // One credentials value: the client signs with it, and so does the
        // window signer.
        let credentials = Credentials::new(
            "AKIDEXAMPLE",
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            session_token.map(str::to_owned),
            None,
            "test",
        );
        let mut conf = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("eu-west-3"))
            .credentials_provider(credentials.clone());
        if let Some(e) = endpoint {
            conf = conf.endpoint_url(e);
        }
        S3Objects::new(
            Client::from_conf(conf.build()),
            "imagegram-images-123456789012-eu-west-3".into(),
            None,
            Duration::from_secs(3600),
        )
        .signing_with(Some(aws_sdk_s3::config::SharedCredentialsProvider::new(
            credentials,
        )))
    }

    /// The SDK's own presigned GET of `key` for `s3`'s current window.
    async fn sdk_url(s3: &S3Objects, key: &str) -> String {
        s3.client
            .get_object()
            .bucket(&s3.bucket)
            .key(key)
            .response_content_type("image/jpeg")
            .presigned(s3.presigning(s3.window_start()).unwrap())
            .await
            .unwrap()
            .uri()
            .to_owned()
    }

    #[tokio::test]
    async fn image_urls_signed_here_are_the_sdks_to_the_byte() {
        let keys = [
            "converted/0194f7a0c1d27b3e8a5b6c7d8e9f0a1b.jpg",
            "converted/01a0f617d19c7fe2aceb16eaaf59ec87.jpg",
            "converted/01a217b2fab9704a9dca431d920fe49a.jpg",
        ];
        for (token, endpoint) in [
            (None, None),
            (Some("IQoJb3JpZ2luX2VjEXAMPLE/+token="), None),
            (None, Some("http://127.0.0.1:4566")),
            (Some("session"), Some("http://localhost:4566")),
        ] {
            let s3 = presigner(token, endpoint);
            for key in keys {
                assert_eq!(s3.image_url(key).await.unwrap(), sdk_url(&s3, key).await);
            }
            // The first URL taught the window's signer, which signed the rest.
            let cache = s3.image_urls.lock().unwrap();
            assert!(cache.signer.is_some(), "{token:?} {endpoint:?}");
        }
    }

    #[tokio::test]
    async fn keys_the_signer_does_not_take_go_to_the_sdk() {
        let s3 = presigner(None, None);
        s3.image_url("converted/a.jpg").await.unwrap();
        let odd = "converted/a b+c.jpg";
        assert_eq!(s3.image_url(odd).await.unwrap(), sdk_url(&s3, odd).await);
    }

    #[tokio::test]
    async fn a_signer_that_does_not_reproduce_the_sdk_is_not_kept() {
        // Credentials other than the client's: the learned signer's URL
        // differs from the SDK's, so the SDK keeps signing every URL.
        let conf = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("eu-west-3"))
            .credentials_provider(Credentials::new("AKID", "secret", None, None, "test"))
            .build();
        let other = aws_sdk_s3::config::SharedCredentialsProvider::new(Credentials::new(
            "AKID",
            "another secret",
            None,
            None,
            "test",
        ));
        let s3 = S3Objects::new(
            Client::from_conf(conf),
            "b".into(),
            None,
            Duration::from_secs(3600),
        )
        .signing_with(Some(other));
        for key in ["converted/a.jpg", "converted/b.jpg"] {
            assert_eq!(s3.image_url(key).await.unwrap(), sdk_url(&s3, key).await);
        }
        assert!(s3.image_urls.lock().unwrap().signer.is_none());
    }
}
