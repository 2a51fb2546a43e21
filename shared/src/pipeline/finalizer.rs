//! The finalizer Lambda's logic: conversion results (and the conversion
//! queue's dead letters) in, post records out.

use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};

use super::messages::{self, Body};
use crate::Error;
use crate::domain::PostId;
use crate::store::{Outcome, Store};

/// The reason a post gets when its conversion kept failing.
pub const GAVE_UP: &str =
    "the image could not be converted after repeated attempts; please upload it again";

pub struct Finalizer<S> {
    pub store: S,
}

impl<S: Store> Finalizer<S> {
    pub async fn handle(&self, event: SqsEvent) -> SqsBatchResponse {
        super::each_message(self, event).await
    }
}

impl<S: Store> super::Process for Finalizer<S> {
    async fn process(&self, body: &str) -> Result<(), Error> {
        match messages::parse(body) {
            Body::Result(r) => self.finish(r.post_id, &r.outcome).await,
            // A dead letter: an S3 notification the converter failed on
            // five times.
            Body::S3(n) => {
                for record in n.records.iter().filter(|r| r.is_object_created()) {
                    if let Some(post) = PostId::from_original_key(&record.key()) {
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

impl<S: Store> Finalizer<S> {
    async fn finish(&self, post: PostId, outcome: &Outcome) -> Result<(), Error> {
        let moved = self.store.finish(post, outcome).await?;
        // Not moved: a repeat, or the post already ended (or was deleted).
        tracing::info!(%post, ?outcome, moved, "finalized");
        Ok(())
    }
}
