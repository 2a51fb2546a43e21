//! The database capability. [`Store`] is what the API operations and the
//! finalizer need; [`mysql::MySqlStore`] implements it and holds all SQL.

pub mod mysql;

use std::future::Future;

use time::OffsetDateTime;

use crate::Error;
pub use crate::domain::Outcome;
use crate::domain::{
    Caption, CommentId, CommentText, CommentsPosition, FeedPosition, PostId, PostStatus, UserId,
};

pub use mysql::{MySqlStore, migrate};

/// A post as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PostRecord {
    pub id: PostId,
    pub author: String,
    pub caption: String,
    pub status: PostStatus,
    pub content_type: String,
    pub size_bytes: u64,
    pub upload_id: Option<String>,
    pub part_size: u64,
    /// While awaiting its upload: when the upload expires.
    pub upload_expires_at: Option<OffsetDateTime>,
    pub image_key: Option<String>,
    pub failure_reason: Option<String>,
    pub comment_count: u64,
}

/// A comment as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommentRecord {
    pub id: CommentId,
    pub post_id: PostId,
    pub author: String,
    pub content: String,
}

/// What adding a comment did.
#[derive(Debug, PartialEq, Eq)]
pub enum AddComment {
    Added,
    NoSuchPost,
    /// The post exists but is not published; its status and author.
    NotPublished {
        status: PostStatus,
        author: String,
    },
}

/// What deleting a comment did.
#[derive(Debug, PartialEq, Eq)]
pub enum DeleteComment {
    Deleted,
    NoSuchComment,
    NotAuthor,
}

/// A post about to be created, with its open upload.
#[derive(Clone, Debug)]
pub struct NewPost {
    pub id: PostId,
    pub author: UserId,
    pub caption: Caption,
    pub content_type: &'static str,
    pub size_bytes: u64,
    pub upload_id: String,
    pub part_size: u64,
    pub upload_expires_at: OffsetDateTime,
}

impl NewPost {
    /// The record `create_post` stores, without reading it back.
    pub fn record(&self) -> PostRecord {
        PostRecord {
            id: self.id,
            author: self.author.as_str().to_owned(),
            caption: self.caption.as_str().to_owned(),
            status: PostStatus::AwaitingUpload,
            content_type: self.content_type.to_owned(),
            size_bytes: self.size_bytes,
            upload_id: Some(self.upload_id.clone()),
            part_size: self.part_size,
            upload_expires_at: Some(self.upload_expires_at),
            image_key: None,
            failure_reason: None,
            comment_count: 0,
        }
    }
}

pub trait Store: Send + Sync + 'static {
    /// Round trip to the database, for `/health`.
    fn ping(&self) -> impl Future<Output = Result<(), Error>> + Send;

    fn post(&self, id: PostId) -> impl Future<Output = Result<Option<PostRecord>, Error>> + Send;

    /// Published posts by (comment_count desc, id desc), after `after`.
    fn feed_page(
        &self,
        after: Option<FeedPosition>,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<PostRecord>, Error>> + Send;

    /// The newest `per_post` comments of each post, in one round trip.
    fn last_comments(
        &self,
        posts: &[PostId],
        per_post: usize,
    ) -> impl Future<Output = Result<Vec<CommentRecord>, Error>> + Send;

    /// A post's comments, newest first, after `after`.
    fn comments_page(
        &self,
        post: PostId,
        after: Option<CommentsPosition>,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<CommentRecord>, Error>> + Send;

    /// Inserts the comment and bumps the post's count in one transaction,
    /// only if the post is published.
    fn add_comment(
        &self,
        post: PostId,
        id: CommentId,
        author: &UserId,
        content: &CommentText,
    ) -> impl Future<Output = Result<AddComment, Error>> + Send;

    /// Deletes the comment if `caller` wrote it, and lowers the count, in one
    /// transaction.
    fn delete_comment(
        &self,
        post: PostId,
        id: CommentId,
        caller: &UserId,
    ) -> impl Future<Output = Result<DeleteComment, Error>> + Send;

    fn create_post(&self, post: &NewPost) -> impl Future<Output = Result<(), Error>> + Send;

    /// How many posts of `author` await their upload, and the oldest one's
    /// upload deadline.
    fn open_uploads(
        &self,
        author: &UserId,
    ) -> impl Future<Output = Result<(u64, Option<OffsetDateTime>), Error>> + Send;

    /// Moves the post from `from` to `to`; false when it was not in `from`
    /// (someone else moved it first).
    fn transition(
        &self,
        post: PostId,
        from: PostStatus,
        to: PostStatus,
        failure_reason: Option<&str>,
    ) -> impl Future<Output = Result<bool, Error>> + Send;

    /// Deletes a post still awaiting its upload; false if it was not.
    fn delete_unpublished(&self, post: PostId) -> impl Future<Output = Result<bool, Error>> + Send;

    /// Records how a conversion ended, once: only a `processing` post moves,
    /// so repeated or late results never flip a published post back.
    fn finish(
        &self,
        post: PostId,
        outcome: &Outcome,
    ) -> impl Future<Output = Result<bool, Error>> + Send;
}
