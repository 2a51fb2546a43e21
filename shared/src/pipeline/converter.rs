//! The converter Lambda's logic: SQS batch of S3 notifications in, converted
//! images and results out. Permanent failures (not an image, corrupt, too
//! big) become a `failed` result at once; transient ones (S3 or SQS
//! unreachable) put the message back for a retry through the batch response.

use std::io::Read;
use std::sync::{Arc, Mutex};

use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};
use tokio_util::io::SyncIoBridge;

use super::convert::{self, Limits};
use super::messages::{self, Body, ConversionResult};
use crate::Error;
use crate::domain::{MAX_IMAGE_BYTES, PostId};
use crate::objects::S3Objects;
use crate::store::Outcome;

pub struct Converter {
    pub objects: S3Objects,
    pub sqs: aws_sdk_sqs::Client,
    /// Where results go: the finalizer's queue.
    pub results_queue_url: String,
    pub limits: Limits,
}

impl Converter {
    /// The deployed wiring: configuration, and the clients the caller built
    /// once per process.
    pub fn from_config(
        cfg: &crate::config::ConverterConfig,
        s3: aws_sdk_s3::Client,
        sqs: aws_sdk_sqs::Client,
    ) -> Self {
        Converter {
            objects: S3Objects::new(
                s3,
                cfg.bucket.clone(),
                None,
                std::time::Duration::from_secs(3600),
            ),
            sqs,
            results_queue_url: cfg.results_queue_url.clone(),
            limits: Limits::default(),
        }
    }

    pub async fn handle(&self, event: SqsEvent) -> SqsBatchResponse {
        super::each_message(self, event).await
    }
}

impl super::Process for Converter {
    async fn process(&self, body: &str) -> Result<(), Error> {
        let notification = match messages::parse(body) {
            Body::S3(n) => n,
            Body::TestEvent => {
                tracing::info!("s3:TestEvent acknowledged");
                return Ok(());
            }
            Body::Result(_) | Body::Malformed(_) => {
                tracing::warn!(body = %body.chars().take(200).collect::<String>(), "not an S3 notification; dropped");
                return Ok(());
            }
        };
        for record in notification
            .records
            .iter()
            .filter(|r| r.is_object_created())
        {
            let key = record.key();
            if record.s3.bucket.name != self.objects.bucket() {
                tracing::warn!(
                    bucket = record.s3.bucket.name,
                    "event of another bucket; ignored"
                );
                continue;
            }
            let Some(post) = PostId::from_original_key(&key) else {
                tracing::warn!(key, "not an original's key; ignored");
                continue;
            };
            let outcome = self.convert(post, &key).await?;
            match &outcome {
                Outcome::Published { image_key } => tracing::info!(%post, image_key, "converted"),
                Outcome::Failed { reason } => tracing::info!(%post, reason, "refused"),
            }
            let body = serde_json::to_string(&ConversionResult {
                post_id: post,
                outcome,
            })
            .map_err(Error::internal)?;
            self.sqs
                .send_message()
                .queue_url(&self.results_queue_url)
                .message_body(body)
                .send()
                .await
                .map_err(|e| Error::unavailable("results queue", e))?;
        }
        Ok(())
    }
}

impl Converter {
    async fn convert(&self, post: PostId, key: &str) -> Result<Outcome, Error> {
        let failed = |reason: String| Ok(Outcome::Failed { reason });
        let Some(head) = self.objects.head(key).await? else {
            return failed("the uploaded original is missing".into());
        };
        if head.size > MAX_IMAGE_BYTES {
            return failed(format!(
                "the image is {} bytes; at most {MAX_IMAGE_BYTES} (100 MiB) is accepted",
                head.size
            ));
        }
        let image_key = post.converted_key();
        // A repeated event (S3 delivers at least once; moto twice per
        // multipart upload) finds its work done.
        if self.objects.converted_from(&image_key).await?.as_deref() == Some(head.etag.as_str()) {
            return Ok(Outcome::Published { image_key });
        }
        let body = self.objects.open(key, &head.etag).await?;
        // The decoders read synchronously on a blocking thread, pulling the
        // body through a bridge as they go: download and decoding overlap,
        // and memory holds a buffer, not the file.
        let download = Download::new(SyncIoBridge::new(body.into_async_read()));
        let broken = download.broken.clone();
        let limits = self.limits;
        // CPU-bound, and a decoder may panic on hostile input: a blocking
        // task contains both (convert_reader catches the decoders' panics
        // itself; this is the second line).
        let converted = tokio::task::spawn_blocking(move || {
            convert::convert_reader(
                std::io::BufReader::with_capacity(1 << 20, download),
                &limits,
            )
        })
        .await;
        // A connection lost mid-download reads to the decoder like a
        // truncated file: that is S3's failure, not the image's, so the
        // message goes back for a retry instead of failing the post.
        if let Some(e) = broken.lock().expect("download error lock").take() {
            return Err(Error::unavailable("object store", e));
        }
        let jpeg = match converted {
            Ok(Ok(jpeg)) => jpeg,
            Ok(Err(rejection)) => return failed(rejection.0),
            Err(e) if e.is_panic() => return failed("the image could not be decoded".into()),
            Err(e) => return Err(Error::internal(e)),
        };
        self.objects
            .put_converted(&image_key, jpeg, &head.etag)
            .await?;
        Ok(Outcome::Published { image_key })
    }
}

/// A download read by a decoder, remembering whether the transfer itself
/// failed (as opposed to the bytes being bad).
struct Download<R> {
    inner: R,
    broken: Arc<Mutex<Option<std::io::Error>>>,
}

impl<R> Download<R> {
    fn new(inner: R) -> Self {
        Download {
            inner,
            broken: Arc::default(),
        }
    }
}

impl<R: Read> Read for Download<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.inner.read(buf).inspect_err(|e| {
            let copy = std::io::Error::new(e.kind(), e.to_string());
            *self.broken.lock().expect("download error lock") = Some(copy);
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hands out `good` bytes, then fails like a dropped connection.
    struct Flaky {
        good: Vec<u8>,
    }

    impl Read for Flaky {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            if self.good.is_empty() {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::ConnectionReset,
                    "connection reset",
                ));
            }
            let n = buf.len().min(self.good.len());
            buf[..n].copy_from_slice(&self.good[..n]);
            self.good.drain(..n);
            Ok(n)
        }
    }

    #[test]
    fn a_broken_download_is_told_apart_from_a_broken_image() {
        // A decoder sees a lost connection as a truncated file; the flag is
        // what makes the converter retry instead of failing the post.
        let png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec();
        let download = Download::new(Flaky { good: png });
        let broken = download.broken.clone();
        let refused = convert::convert_reader(
            std::io::BufReader::new(download),
            &convert::Limits::default(),
        );
        assert!(refused.is_err());
        let e = broken
            .lock()
            .unwrap()
            .take()
            .expect("the failure was recorded");
        assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset);

        let whole = Download::new(&b"\xFF\xD8\xFF"[..]);
        let flag = whole.broken.clone();
        let _ = convert::convert_reader(std::io::BufReader::new(whole), &Limits::default());
        assert!(
            flag.lock().unwrap().is_none(),
            "a short file is not a broken download"
        );
    }
}
