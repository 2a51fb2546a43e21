//! The finalizer Lambda's logic: conversion results (and the conversion
//! queue's dead letters) in, post records out.

use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};

use super::messages::{self, Body};
use crate::Error;
use crate::domain::{Outcome, PostId};
use crate::notify::{Notify, Silent};
use crate::store::Outcomes;

/// The reason a post gets when its conversion kept failing.
pub const GAVE_UP: &str =
    "the image could not be converted after repeated attempts; please upload it again";

/// The deployed finalizer.
pub type Deployed = Finalizer<crate::store::MySqlStore, crate::notify::Deployed>;

pub struct Finalizer<S, N = Silent> {
    pub store: S,
    /// Tells the post's author, after the post is written.
    pub notify: N,
}

impl<S: Outcomes, N: Notify> Finalizer<S, N> {
    pub async fn handle(&self, event: SqsEvent) -> SqsBatchResponse {
        super::each_message(self, event).await
    }
}

impl<S: Outcomes, N: Notify> super::Process for Finalizer<S, N> {
    async fn process(&self, body: &str) -> Result<(), Error> {
        match messages::parse(body) {
            Body::Result(r) => {
                let moved = self.finish(r.post_id, &r.outcome).await?;
                if moved
                    && matches!(r.outcome, Outcome::Published { .. })
                    && let Some(at) = r.uploaded_at.as_deref().and_then(parse_rfc3339)
                {
                    let latency = time::OffsetDateTime::now_utc() - at;
                    crate::metrics::upload_to_published(latency.unsigned_abs());
                }
                Ok(())
            }
            // A dead letter: an S3 notification the converter failed on
            // five times.
            Body::S3(n) => {
                for record in n.records.iter().filter(|r| r.is_object_created()) {
                    if let Some(post) = PostId::from_original_key(&record.key()) {
                        crate::metrics::dead_letter();
                        self.finish(
                            post,
                            &Outcome::Failed {
                                reason: GAVE_UP.into(),
                            },
                        )
                        .await?;
                    }
                }
                Ok(())
            }
            Body::TestEvent => Ok(()),
            Body::Malformed(why) => {
                tracing::warn!(why, "unreadable message; dropped");
                Ok(())
            }
        }
    }
}

impl<S: Outcomes, N: Notify> Finalizer<S, N> {
    /// Whether the post moved (not: a repeat, or the post already ended or
    /// was deleted). Once it moved, its author is told.
    async fn finish(&self, post: PostId, outcome: &Outcome) -> Result<bool, Error> {
        tracing::Span::current().record("post_id", tracing::field::display(post));
        let moved = self.store.finish(post, outcome).await?;
        tracing::info!(?outcome, moved, "finalized");
        if moved {
            // The post is written: nothing below can undo or fail it.
            match self.store.read_post(post).await {
                Ok(Some(p)) => self.notify.settled(&p).await,
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, "not told: the post could not be read"),
            }
        }
        Ok(moved)
    }
}

/// An S3 event time: RFC 3339 as AWS writes it (`...:41.123Z`), or, as moto
/// writes it, without a zone (`...:41.123456`), which is UTC.
fn parse_rfc3339(s: &str) -> Option<time::OffsetDateTime> {
    const NO_ZONE: &[time::format_description::FormatItem<'static>] = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond]"
    );
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .ok()
        .or_else(|| {
            time::PrimitiveDateTime::parse(s, NO_ZONE)
                .ok()
                .map(time::PrimitiveDateTime::assume_utc)
        })
}

#[cfg(test)]
mod tests {
    #[test]
    fn event_times_parse_with_and_without_a_zone() {
        let aws = super::parse_rfc3339("2026-11-26T09:40:41.123Z").unwrap();
        let moto = super::parse_rfc3339("2026-11-26T09:40:41.123000").unwrap();
        assert_eq!(aws, moto);
        assert!(super::parse_rfc3339("yesterday").is_none());
    }
}
