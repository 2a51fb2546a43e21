//! The database capability, as a port per consumer: [`Posts`] for the
//! API's operations, [`Outcomes`] for the finalizer, [`Sweeps`] for the
//! sweeper (with [`PostStates`], what the API and the sweeper share).
//! [`mysql::MySqlStore`] implements them all and holds all SQL.

pub mod mysql;

use std::future::Future;

use time::OffsetDateTime;

use crate::Error;
pub use crate::domain::Outcome;
use crate::domain::{
    Caption, CommentId, CommentText, CommentsPosition, FeedPosition, IdempotencyKey, PostId,
    PostStatus, UserId,
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
    /// How often the sweeper sent it back to the converter.
    pub sweep_attempts: u32,
    pub comment_count: u64,
    /// Its two newest comments, newest first, kept with it.
    pub last_comments: Vec<CommentRecord>,
    /// The published image's ThumbHash (base64).
    pub thumbhash: Option<String>,
}

impl PostRecord {
    /// What clients see of it, with its image's URL (null unless
    /// published).
    pub fn view(self, image_url: Option<String>) -> crate::domain::Post {
        let published = self.status == PostStatus::Published;
        crate::domain::Post {
            created_at: crate::domain::rfc3339(self.id.created_at()),
            id: self.id,
            author: self.author,
            caption: self.caption,
            status: self.status,
            image_url: image_url.filter(|_| published),
            comment_count: self.comment_count,
            last_comments: self
                .last_comments
                .into_iter()
                .map(CommentRecord::view)
                .collect(),
            failure_reason: self
                .failure_reason
                .filter(|_| self.status == PostStatus::Failed),
            thumbhash: self.thumbhash.filter(|_| published),
        }
    }
}

/// A comment as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommentRecord {
    pub id: CommentId,
    pub post_id: PostId,
    pub author: String,
    pub content: String,
}

impl CommentRecord {
    pub fn view(self) -> crate::domain::Comment {
        crate::domain::Comment {
            created_at: crate::domain::rfc3339(self.id.created_at()),
            id: self.id,
            post_id: self.post_id,
            author: self.author,
            content: self.content,
        }
    }
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

/// What an idempotency key holds when a request claims it.
#[derive(Debug, PartialEq, Eq)]
pub enum Claim {
    /// Never used (or expired): this request runs and records its answer.
    New,
    /// Used by the same request: its first answer.
    Replay { status: u16, body: String },
    /// Used by another request (another body or route).
    Mismatch,
    /// The first request is still running.
    InProgress,
}

/// A create's answer, recorded for its idempotency key in the create's own
/// transaction: either both are stored or neither.
#[derive(Clone, Debug)]
pub struct Answer {
    pub caller: UserId,
    pub key: IdempotencyKey,
    pub status: u16,
    pub body: String,
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
            sweep_attempts: 0,
            comment_count: 0,
            last_comments: Vec::new(),
            thumbhash: None,
        }
    }
}

/// What the finalizer needs: record how a conversion ended. The sweeper
/// settles posts the same way.
pub trait Outcomes: Send + Sync + 'static {
    /// Records how a conversion ended, once: only a post still processing
    /// (or awaiting its upload: a result proves the upload completed) moves,
    /// so repeated or late results never flip a published post back.
    fn finish(
        &self,
        post: PostId,
        outcome: &Outcome,
    ) -> impl Future<Output = Result<bool, Error>> + Send;

    /// The post as stored now (to tell its author how it ended).
    fn read_post(
        &self,
        post: PostId,
    ) -> impl Future<Output = Result<Option<PostRecord>, Error>> + Send;
}

/// A WebSocket connection `$connect` accepted.
#[derive(Clone, Debug)]
pub struct NewConnection<'a> {
    /// API Gateway's `connectionId`.
    pub connection_id: &'a str,
    pub user: &'a UserId,
    /// The ticket's nonce: a ticket opens one connection.
    pub ticket: [u8; 16],
}

/// How long a connection row is kept: API Gateway closes every connection
/// after 2 hours; a minute more for clocks.
pub const CONNECTION_LIFETIME_SECS: u64 = 2 * 3600 + 60;

/// Who listens for notifications: the WebSocket handlers record
/// connections, the finalizer and the sweeper look them up.
pub trait Listeners: Send + Sync + 'static {
    /// Records an open connection; `false` when its ticket opened one
    /// before (a reused ticket).
    fn connect(&self, c: &NewConnection<'_>) -> impl Future<Output = Result<bool, Error>> + Send;
    /// The connection closed (`$disconnect`, or 410 Gone from a push).
    fn disconnect(&self, connection_id: &str) -> impl Future<Output = Result<(), Error>> + Send;
    /// The user's open connections.
    fn listeners(&self, user: &str) -> impl Future<Output = Result<Vec<String>, Error>> + Send;
    /// Removes up to `limit` rows of connections past their lifetime.
    fn purge_connections(&self, limit: u32) -> impl Future<Output = Result<u64, Error>> + Send;
}

/// A post's state moved, or the post removed while its upload is still
/// open: the API's upload routes and the sweeper both do.
pub trait PostStates: Send + Sync + 'static {
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
}

/// What the API's operations need: posts, the feed, comments, uploads,
/// and the idempotency keys of the creates.
pub trait Posts: PostStates {
    /// Round trip to the database, for `/health`.
    fn ping(&self) -> impl Future<Output = Result<(), Error>> + Send;

    fn post(&self, id: PostId) -> impl Future<Output = Result<Option<PostRecord>, Error>> + Send;

    /// Published posts by (comment_count desc, id desc), after `after`.
    fn feed_page(
        &self,
        after: Option<FeedPosition>,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<PostRecord>, Error>> + Send;

    /// A post's comments, newest first, after `after`.
    fn comments_page(
        &self,
        post: PostId,
        after: Option<CommentsPosition>,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<CommentRecord>, Error>> + Send;

    /// Inserts the comment, bumps the post's count and puts the comment in
    /// front of the post's newest two, in one transaction, only if the post
    /// is published.
    fn add_comment(
        &self,
        post: PostId,
        id: CommentId,
        author: &UserId,
        content: &CommentText,
        answer: Option<&Answer>,
    ) -> impl Future<Output = Result<AddComment, Error>> + Send;

    /// Deletes the comment if `caller` wrote it, lowers the count and
    /// recomputes the post's newest two, in one transaction.
    fn delete_comment(
        &self,
        post: PostId,
        id: CommentId,
        caller: &UserId,
    ) -> impl Future<Output = Result<DeleteComment, Error>> + Send;

    /// Stores the post (and `answer`, in the same transaction).
    fn create_post(
        &self,
        post: &NewPost,
        answer: Option<&Answer>,
    ) -> impl Future<Output = Result<(), Error>> + Send;

    /// Claims `key` for a request whose route, path and body hash to
    /// `hash`; see [`Claim`]. Keys last [`mysql::KEY_RETENTION_HOURS`].
    fn claim_key(
        &self,
        caller: &UserId,
        key: &IdempotencyKey,
        hash: &[u8; 32],
    ) -> impl Future<Output = Result<Claim, Error>> + Send;

    /// Gives up a claim whose request failed before answering, so a retry
    /// runs it again.
    fn release_key(
        &self,
        caller: &UserId,
        key: &IdempotencyKey,
    ) -> impl Future<Output = Result<(), Error>> + Send;

    /// Records `to` as the post's multipart upload in place of `from`, while
    /// it awaits its upload: a signing client (Uppy 6) created its own.
    /// False when the post's upload is no longer `from`.
    fn replace_upload(
        &self,
        post: PostId,
        from: &str,
        to: &str,
    ) -> impl Future<Output = Result<bool, Error>> + Send;

    /// How many posts of `author` await their upload, and the oldest one's
    /// upload deadline.
    fn open_uploads(
        &self,
        author: &UserId,
    ) -> impl Future<Output = Result<(u64, Option<OffsetDateTime>), Error>> + Send;
}

/// What the sweeper needs: what is stuck, and the ways to settle it.
pub trait Sweeps: Outcomes + PostStates {
    /// Posts still awaiting an upload whose deadline has passed, oldest
    /// deadline first.
    fn expired_uploads(
        &self,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<PostRecord>, Error>> + Send;

    /// Posts processing, untouched for `older_than_secs`, oldest first.
    fn stale_processing(
        &self,
        older_than_secs: u64,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<PostRecord>, Error>> + Send;

    /// Counts one more sweep of a processing post (and restarts its
    /// clock); false if it is no longer processing.
    fn count_sweep(&self, post: PostId) -> impl Future<Output = Result<bool, Error>> + Send;

    /// Removes up to `limit` keys past [`mysql::KEY_RETENTION_HOURS`]; how many went.
    fn purge_keys(&self, limit: u32) -> impl Future<Output = Result<u64, Error>> + Send;
}
