//! The converter Lambda's logic: SQS batch of S3 notifications in, converted
//! images and results out. Permanent failures (not an image, corrupt, too
//! big) become a `failed` result at once; transient ones (S3 or SQS
//! unreachable) put the message back for a retry through the batch response.
//!
//! What it needs from the outside is three small capabilities, [`Originals`],
//! [`ConvertedImages`] and [`Results`] (`pipeline::ports`);
//! `objects::S3Objects` and `queue::SqsQueue` are their adapters, fakes stand
//! in for them in the unit tests below.

use std::io::Read;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};

use super::convert::{self, Limits};
use super::messages::{self, Body, ConversionResult};
pub use super::ports::{ConvertedImages, ObjectHead, Originals, Provenance, Results};
use crate::Error;
use crate::domain::{MAX_IMAGE_BYTES, Outcome, PostId};

pub struct Converter<S, R> {
    /// Originals and converted images (one bucket).
    pub objects: S,
    pub results: R,
    /// Events of other buckets are ignored.
    pub bucket: String,
    pub limits: Limits,
}

impl Converter<crate::objects::S3Objects, crate::queue::SqsQueue> {
    /// The deployed wiring: configuration, and the clients the caller built
    /// once per process.
    pub fn from_config(
        cfg: &crate::config::ConverterConfig,
        s3: aws_sdk_s3::Client,
        sqs: aws_sdk_sqs::Client,
    ) -> Self {
        Converter {
            // Never presigns: the TTL is unused.
            objects: crate::objects::S3Objects::new(
                s3,
                cfg.bucket.clone(),
                None,
                std::time::Duration::from_secs(3600),
            ),
            results: crate::queue::SqsQueue {
                client: sqs,
                queue_url: cfg.results_queue_url.clone(),
                what: "results queue",
            },
            bucket: cfg.bucket.clone(),
            limits: Limits::default(),
        }
    }
}

impl<S: Originals + ConvertedImages, R: Results> Converter<S, R> {
    pub async fn handle(&self, event: SqsEvent) -> SqsBatchResponse {
        super::each_message(self, event).await
    }
}

impl<S: Originals + ConvertedImages, R: Results> super::Process for Converter<S, R> {
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
            if record.s3.bucket.name != self.bucket {
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
            tracing::Span::current().record("post_id", tracing::field::display(post));
            let outcome = self.convert(post, &key).await?;
            match &outcome {
                Outcome::Published { image_key, .. } => tracing::info!(image_key, "converted"),
                Outcome::Failed { reason } => tracing::info!(reason, "refused"),
            }
            self.results
                .send(&ConversionResult {
                    post_id: post,
                    outcome,
                    uploaded_at: record.event_time.clone(),
                })
                .await?;
        }
        Ok(())
    }
}

impl<S: Originals + ConvertedImages, R: Results> Converter<S, R> {
    async fn convert(&self, post: PostId, key: &str) -> Result<Outcome, Error> {
        let started = Instant::now();
        let refused = |reason: String, size: u64| {
            crate::metrics::conversion("unknown", "refused", started.elapsed(), size, None);
            Ok(Outcome::Failed { reason })
        };
        let Some(head) = self.objects.head(key).await? else {
            return refused("the uploaded original is missing".into(), 0);
        };
        if head.size > MAX_IMAGE_BYTES {
            return refused(
                format!(
                    "the image is {} bytes; at most {MAX_IMAGE_BYTES} (100 MiB) is accepted",
                    head.size
                ),
                head.size,
            );
        }
        // A client that completes its upload on S3 itself (Uppy 6) could
        // leave parts out; the native `complete` refuses that, and this is
        // the same check for every upload whose create recorded the size.
        if let Some(declared) = head.declared_size.filter(|d| *d != head.size) {
            return refused(
                format!(
                    "the upload is {} bytes, but the post declared {declared}: \
                     every part must be uploaded before the upload is completed",
                    head.size
                ),
                head.size,
            );
        }
        let image_key = post.converted_key();
        // A repeated event (S3 delivers at least once; moto twice per
        // multipart upload) finds its work done.
        if let Some(made) = self.objects.source_of(&image_key).await?
            && made.source_etag == head.etag
        {
            tracing::info!("already converted from this original");
            return Ok(Outcome::Published {
                image_key,
                thumbhash: made.thumbhash,
            });
        }
        let body = self.objects.open(key, &head.etag).await?;
        // The decoders read synchronously on a blocking thread, pulling the
        // body as they go: download and decoding overlap, and memory holds a
        // buffer, not the file.
        let download = Download::new(body);
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
        let converted = match converted {
            Ok(Ok(c)) => c,
            Ok(Err(rejection)) => return refused(rejection.0, head.size),
            Err(e) if e.is_panic() => {
                return refused("the image could not be decoded".into(), head.size);
            }
            Err(e) => return Err(Error::internal(e)),
        };
        let made = Provenance {
            source_etag: head.etag.clone(),
            thumbhash: Some(converted.thumbhash),
        };
        self.objects
            .store(&image_key, converted.jpeg, &made)
            .await?;
        crate::metrics::conversion(
            converted.format,
            "published",
            started.elapsed(),
            head.size,
            Some(converted.pixels),
        );
        Ok(Outcome::Published {
            image_key,
            thumbhash: made.thumbhash,
        })
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
    use std::collections::HashMap;

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

    /// A bucket in memory, counting what the converter asks of it.
    #[derive(Default)]
    struct Bucket {
        originals: Mutex<HashMap<String, (Vec<u8>, String)>>,
        converted: Mutex<HashMap<String, (Vec<u8>, Provenance)>>,
        /// Fail every call with a transient error.
        down: bool,
        /// Downloads break after this many bytes.
        break_after: Option<usize>,
        /// What every original's metadata says its post declared.
        declared_size: Option<u64>,
        opened: Mutex<u32>,
    }

    impl Bucket {
        fn with_original(key: &str, bytes: Vec<u8>) -> Self {
            let b = Bucket::default();
            b.originals
                .lock()
                .unwrap()
                .insert(key.into(), (bytes, "\"etag-1\"".into()));
            b
        }

        fn check(&self) -> Result<(), Error> {
            if self.down {
                return Err(Error::unavailable("object store", "connection refused"));
            }
            Ok(())
        }
    }

    impl Originals for Bucket {
        async fn head(&self, key: &str) -> Result<Option<ObjectHead>, Error> {
            self.check()?;
            Ok(self
                .originals
                .lock()
                .unwrap()
                .get(key)
                .map(|(b, e)| ObjectHead {
                    size: b.len() as u64,
                    etag: e.clone(),
                    declared_size: self.declared_size,
                }))
        }

        async fn open(&self, key: &str, etag: &str) -> Result<Box<dyn Read + Send>, Error> {
            self.check()?;
            *self.opened.lock().unwrap() += 1;
            let (bytes, e) = self.originals.lock().unwrap()[key].clone();
            assert_eq!(e, etag, "opened the version that was checked");
            Ok(match self.break_after {
                Some(n) => Box::new(Flaky {
                    good: bytes[..n].to_vec(),
                }),
                None => Box::new(std::io::Cursor::new(bytes)),
            })
        }
    }

    impl ConvertedImages for Bucket {
        async fn source_of(&self, key: &str) -> Result<Option<Provenance>, Error> {
            self.check()?;
            Ok(self
                .converted
                .lock()
                .unwrap()
                .get(key)
                .map(|(_, made)| made.clone()))
        }

        async fn store(&self, key: &str, jpeg: Vec<u8>, made: &Provenance) -> Result<(), Error> {
            self.check()?;
            self.converted
                .lock()
                .unwrap()
                .insert(key.into(), (jpeg, made.clone()));
            Ok(())
        }
    }

    #[derive(Default)]
    struct Sent(Mutex<Vec<ConversionResult>>);

    impl Results for Sent {
        async fn send(&self, result: &ConversionResult) -> Result<(), Error> {
            self.0.lock().unwrap().push(result.clone());
            Ok(())
        }
    }

    fn event(bucket: &str, key: &str) -> SqsEvent {
        let body = serde_json::json!({ "Records": [{
            "eventName": "ObjectCreated:CompleteMultipartUpload",
            "eventTime": "2026-11-26T10:00:00.000Z",
            "s3": { "bucket": { "name": bucket }, "object": { "key": key } } }] });
        serde_json::from_value(serde_json::json!({ "Records": [{
            "messageId": "m-1", "body": body.to_string(),
            "attributes": { "SentTimestamp": "1795600800000" } }] }))
        .unwrap()
    }

    fn png() -> Vec<u8> {
        let img = image::RgbImage::from_pixel(40, 30, image::Rgb([200, 10, 10]));
        let mut out = std::io::Cursor::new(Vec::new());
        img.write_to(&mut out, image::ImageFormat::Png).unwrap();
        out.into_inner()
    }

    fn converter(objects: Bucket) -> Converter<Bucket, Sent> {
        Converter {
            objects,
            results: Sent::default(),
            bucket: "b".into(),
            limits: Limits::default(),
        }
    }

    async fn run(c: &Converter<Bucket, Sent>, key: &str) -> (bool, Vec<ConversionResult>) {
        let response = c.handle(event("b", key)).await;
        let retried = !response.batch_item_failures.is_empty();
        (retried, c.results.0.lock().unwrap().clone())
    }

    fn key() -> (PostId, String) {
        let post = PostId::generate();
        (post, post.original_key())
    }

    #[tokio::test]
    async fn an_image_is_converted_stored_and_reported_with_its_upload_time() {
        let (post, key) = key();
        let c = converter(Bucket::with_original(&key, png()));
        let (retried, sent) = run(&c, &key).await;
        assert!(!retried);
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].post_id, post);
        assert_eq!(
            sent[0].outcome,
            Outcome::Published {
                image_key: post.converted_key(),
                thumbhash: c.objects.converted.lock().unwrap()[&post.converted_key()]
                    .1
                    .thumbhash
                    .clone(),
            }
        );
        assert_eq!(
            sent[0].uploaded_at.as_deref(),
            Some("2026-11-26T10:00:00.000Z")
        );
        let stored = c.objects.converted.lock().unwrap()[&post.converted_key()].clone();
        assert_eq!(stored.1.source_etag, "\"etag-1\"");
        assert_eq!(&stored.0[..2], b"\xFF\xD8", "a JPEG");
        // The placeholder is stored with the image and sent with the result.
        let hash = stored.1.thumbhash.expect("a ThumbHash");
        assert!((20..=40).contains(&hash.len()), "{hash}");
    }

    #[tokio::test]
    async fn a_repeated_event_finds_its_work_done_and_reads_nothing() {
        let (post, key) = key();
        let c = converter(Bucket::with_original(&key, png()));
        run(&c, &key).await;
        let (retried, sent) = run(&c, &key).await;
        assert!(!retried);
        assert_eq!(*c.objects.opened.lock().unwrap(), 1, "downloaded once");
        assert_eq!(sent.len(), 2, "both events answered");
        assert_eq!(sent[1].outcome, sent[0].outcome);
        assert!(
            matches!(sent[1].outcome, Outcome::Published { .. }),
            "{post}"
        );
    }

    #[tokio::test]
    async fn a_missing_original_fails_the_post_with_a_reason() {
        let (_, key) = key();
        let c = converter(Bucket::default());
        let (retried, sent) = run(&c, &key).await;
        assert!(!retried);
        assert!(
            matches!(&sent[0].outcome, Outcome::Failed { reason } if reason.contains("missing"))
        );
    }

    #[tokio::test]
    async fn an_oversized_original_is_refused_without_reading_it() {
        let (_, key) = key();
        let c = converter(Bucket::with_original(
            &key,
            vec![0; MAX_IMAGE_BYTES as usize + 1],
        ));
        let (retried, sent) = run(&c, &key).await;
        assert!(!retried);
        assert!(
            matches!(&sent[0].outcome, Outcome::Failed { reason } if reason.contains("100 MiB"))
        );
        assert_eq!(*c.objects.opened.lock().unwrap(), 0);
    }

    #[tokio::test]
    async fn an_original_of_another_size_than_declared_is_refused_without_reading_it() {
        let (_, key) = key();
        let image = png();
        let mut bucket = Bucket::with_original(&key, image.clone());
        bucket.declared_size = Some(image.len() as u64 + 5);
        let c = converter(bucket);
        let (retried, sent) = run(&c, &key).await;
        assert!(!retried);
        let expected = format!("declared {}", image.len() + 5);
        assert!(
            matches!(&sent[0].outcome, Outcome::Failed { reason } if reason.contains(&expected)),
            "{sent:?}"
        );
        assert_eq!(*c.objects.opened.lock().unwrap(), 0);

        // The size it declared: converted.
        let (_, key) = self::key();
        let mut bucket = Bucket::with_original(&key, image.clone());
        bucket.declared_size = Some(image.len() as u64);
        let c = converter(bucket);
        let (_, sent) = run(&c, &key).await;
        assert!(
            matches!(sent[0].outcome, Outcome::Published { .. }),
            "{sent:?}"
        );
    }

    #[tokio::test]
    async fn a_file_that_is_not_an_image_is_refused_at_once() {
        let (_, key) = key();
        let c = converter(Bucket::with_original(&key, b"hello, world".to_vec()));
        let (retried, sent) = run(&c, &key).await;
        assert!(!retried, "a refusal is final, not retried");
        assert!(
            matches!(&sent[0].outcome, Outcome::Failed { reason } if reason.contains("not a PNG, JPEG or BMP"))
        );
        assert!(c.objects.converted.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn transient_trouble_sends_the_message_back_and_reports_nothing() {
        let (_, key) = key();
        let mut bucket = Bucket::with_original(&key, png());
        bucket.down = true;
        let c = converter(bucket);
        let (retried, sent) = run(&c, &key).await;
        assert!(retried);
        assert!(sent.is_empty());

        // A download that breaks midway is the object store's fault too.
        let (_, key) = self::key();
        let mut bucket = Bucket::with_original(&key, png());
        bucket.break_after = Some(20);
        let c = converter(bucket);
        let (retried, sent) = run(&c, &key).await;
        assert!(retried);
        assert!(sent.is_empty(), "not failed for a broken connection");
    }

    #[tokio::test]
    async fn events_of_other_buckets_and_keys_are_ignored() {
        let (_, key) = key();
        let c = converter(Bucket::with_original(&key, png()));
        let response = c.handle(event("another", &key)).await;
        assert!(response.batch_item_failures.is_empty());
        let response = c.handle(event("b", "converted/x.jpg")).await;
        assert!(response.batch_item_failures.is_empty());
        assert!(c.results.0.lock().unwrap().is_empty());
        assert_eq!(*c.objects.opened.lock().unwrap(), 0);
    }
}
