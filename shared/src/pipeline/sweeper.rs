//! The sweeper: on a schedule, settles what the event-driven path left
//! behind, so no post stays `processing` or `awaiting_upload` forever and
//! nothing is lost.
//!
//! - An upload past its deadline (`upload_expires_at`): if S3 holds its
//!   original after all (the `complete` that finished it lost its answer),
//!   the post goes on to `processing`; otherwise the post is removed (its row
//!   first, so a `complete` racing it keeps the post) and the multipart
//!   upload aborted.
//! - A post `processing` for longer than `processing_after`: published if
//!   its converted image exists and was made from its original; converted
//!   again (a conversion request on the queue, at most `max_attempts` times,
//!   then `failed`) if the original exists; back to `awaiting_upload` if its
//!   multipart upload is still open (the client may complete it again);
//!   `failed` otherwise. An original whose upload completed is never
//!   deleted.
//! - Idempotency keys older than 24 hours are removed, and the rows of
//!   notification connections past their 2 hours.
//!
//! The author of a post it publishes, fails or removes is told (`notify`).

use serde::Serialize;
use tracing::Instrument;

use super::ports::{Conversions, ConvertedImages, Originals};
use crate::Error;
use crate::domain::{Outcome, PostStatus};
use crate::notify::{Notify, Silent};
use crate::objects::ObjectStore;
use crate::store::{Listeners, Sweeps};

pub use crate::config::SweepLimits;

/// The reason a post gets when the sweeper gave up converting it.
pub const NEVER_CONVERTED: &str =
    "the image could not be converted in time, after repeated attempts; please upload it again";
/// The reason a post gets when its original is gone.
pub const ORIGINAL_MISSING: &str =
    "the uploaded original is missing; please upload the image again";

/// What one run did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Swept {
    pub uploads_removed: u32,
    pub uploads_completed: u32,
    pub published: u32,
    pub reconverting: u32,
    pub reopened: u32,
    pub failed: u32,
    pub keys_removed: u64,
    /// Rows of connections past their lifetime.
    pub connections_removed: u64,
}

/// The deployed sweeper.
pub type Deployed = Sweeper<
    crate::store::MySqlStore,
    crate::objects::S3Objects,
    crate::queue::SqsQueue,
    crate::notify::Deployed,
>;

impl Deployed {
    /// The deployed wiring: configuration, and the clients the caller built
    /// once per process (`credentials`: its SDK configuration's provider,
    /// which signs the image URLs it tells authors).
    pub fn from_config(
        cfg: &crate::config::SweeperConfig,
        s3: aws_sdk_s3::Client,
        sqs: aws_sdk_sqs::Client,
        credentials: Option<aws_sdk_s3::config::SharedCredentialsProvider>,
        connections: crate::notify::Connections,
    ) -> Self {
        let store = crate::store::MySqlStore::connect(&cfg.db, 1);
        Sweeper {
            notify: crate::notify::Notifier::from_config(
                &cfg.notify,
                store.clone(),
                s3.clone(),
                credentials,
                connections,
            ),
            store,
            // Never presigns: the TTL is unused.
            objects: crate::objects::S3Objects::new(
                s3,
                cfg.bucket.clone(),
                None,
                std::time::Duration::from_secs(3600),
            ),
            conversions: crate::queue::SqsQueue {
                client: sqs,
                queue_url: cfg.conversion_queue_url.clone(),
                what: "conversion queue",
            },
            bucket: cfg.bucket.clone(),
            limits: cfg.limits.clone(),
        }
    }
}

pub struct Sweeper<S, O, C, N = Silent> {
    pub store: S,
    /// Tells authors of the posts it settles or removes.
    pub notify: N,
    /// The bucket: originals, converted images, open multipart uploads.
    pub objects: O,
    pub conversions: C,
    pub bucket: String,
    pub limits: SweepLimits,
}

impl<S, O, C, N> Sweeper<S, O, C, N>
where
    S: Sweeps + Listeners,
    O: ObjectStore + Originals + ConvertedImages,
    C: Conversions,
    N: Notify,
{
    /// One run. A post it cannot settle now (a dependency down) is left for
    /// the next run; the error is returned after the others are done.
    pub async fn run(&self) -> Result<Swept, Error> {
        let mut swept = Swept::default();
        let mut first_error = None;
        for post in self.store.expired_uploads(self.limits.batch).await? {
            let span = tracing::info_span!("expired upload", post_id = %post.id);
            if let Err(e) = self
                .expired_upload(&post, &mut swept)
                .instrument(span)
                .await
            {
                tracing::warn!(error = %e, "left for the next run");
                first_error.get_or_insert(e);
            }
        }
        let stale = self
            .store
            .stale_processing(self.limits.processing_after_secs, self.limits.batch)
            .await?;
        for post in stale {
            let span = tracing::info_span!("stuck processing", post_id = %post.id);
            if let Err(e) = self.processing(&post, &mut swept).instrument(span).await {
                tracing::warn!(error = %e, "left for the next run");
                first_error.get_or_insert(e);
            }
        }
        swept.keys_removed = self.store.purge_keys(10_000).await?;
        swept.connections_removed = self.store.purge_connections(10_000).await?;
        tracing::info!(?swept, "swept");
        match first_error {
            Some(e) => Err(e),
            None => Ok(swept),
        }
    }

    async fn expired_upload(
        &self,
        post: &crate::store::PostRecord,
        swept: &mut Swept,
    ) -> Result<(), Error> {
        let key = post.id.original_key();
        if self.objects.head(&key).await?.is_some() {
            // Completed in S3 after all: its event is on the way, or was
            // dropped by the finalizer; either way the processing sweep
            // settles it from here.
            if self
                .store
                .transition(
                    post.id,
                    PostStatus::AwaitingUpload,
                    PostStatus::Processing,
                    None,
                )
                .await?
            {
                swept.uploads_completed += 1;
            }
            return Ok(());
        }
        if self.store.delete_unpublished(post.id).await? {
            if let Some(upload_id) = &post.upload_id {
                self.objects.abort_upload(&key, upload_id).await?;
            }
            swept.uploads_removed += 1;
            tracing::info!("expired upload removed");
            self.notify.removed(&post.author, post.id).await;
        }
        Ok(())
    }

    async fn processing(
        &self,
        post: &crate::store::PostRecord,
        swept: &mut Swept,
    ) -> Result<(), Error> {
        let key = post.id.original_key();
        let image_key = post.id.converted_key();
        let Some(original) = self.objects.head(&key).await? else {
            // Never completed in S3: if its multipart upload is still open,
            // the author may complete it again.
            if let Some(upload_id) = &post.upload_id
                && self.objects.list_parts(&key, upload_id).await?.is_some()
            {
                if self
                    .store
                    .transition(
                        post.id,
                        PostStatus::Processing,
                        PostStatus::AwaitingUpload,
                        None,
                    )
                    .await?
                {
                    swept.reopened += 1;
                }
                return Ok(());
            }
            return self.fail(post, ORIGINAL_MISSING, swept).await;
        };
        if let Some(made) = self.objects.source_of(&image_key).await?
            && made.source_etag == original.etag
        {
            // Converted, but the result never landed (the finalizer was down
            // past its queue's redrive): published with the placeholder the
            // image was stored with.
            let published = Outcome::Published {
                image_key,
                thumbhash: made.thumbhash,
            };
            if self.store.finish(post.id, &published).await? {
                swept.published += 1;
                tracing::info!("published by the sweeper");
                self.told(post.id).await;
            }
            return Ok(());
        }
        if post.sweep_attempts >= self.limits.max_attempts {
            return self.fail(post, NEVER_CONVERTED, swept).await;
        }
        if self.store.count_sweep(post.id).await? {
            self.conversions.request(&self.bucket, &key).await?;
            swept.reconverting += 1;
            tracing::info!(
                attempt = post.sweep_attempts + 1,
                "conversion requested again"
            );
        }
        Ok(())
    }

    async fn fail(
        &self,
        post: &crate::store::PostRecord,
        reason: &str,
        swept: &mut Swept,
    ) -> Result<(), Error> {
        let outcome = Outcome::Failed {
            reason: reason.into(),
        };
        if self.store.finish(post.id, &outcome).await? {
            swept.failed += 1;
            tracing::info!(reason, "failed by the sweeper");
            self.told(post.id).await;
        }
        Ok(())
    }

    /// Tells the author how the post it settled ended.
    async fn told(&self, post: crate::domain::PostId) {
        match self.store.read_post(post).await {
            Ok(Some(p)) => self.notify.settled(&p).await,
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "not told: the post could not be read"),
        }
    }
}
