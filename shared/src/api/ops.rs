//! The API operations: one function per route, on typed input, returning
//! domain output. No HTTP in here.

use serde::Serialize;

use super::App;
use crate::Error;
use crate::domain::{
    Comment, CommentId, CommentText, CommentsPosition, FeedPosition, IdempotencyKey, Limit, Post,
    PostId, PostStatus, UserId, rfc3339,
};
use crate::objects::ObjectStore;
use crate::store::{AddComment, Answer, Claim, CommentRecord, DeleteComment, PostRecord, Posts};

#[derive(Debug, Serialize)]
pub struct FeedPage {
    pub posts: Vec<Post>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct CommentsPage {
    pub comments: Vec<Comment>,
    pub next_cursor: Option<String>,
}

/// `POST /events/ticket`'s answer.
#[derive(Debug, Serialize)]
pub struct EventsTicket {
    /// The WebSocket URL with the ticket in its query (`?ticket=`).
    pub url: String,
    pub expires_at: String,
}

/// A ticket for the caller's notifications: a URL good for opening one
/// connection in the next 60 seconds. Nothing is stored until it is used.
pub fn events_ticket<S, O>(app: &App<S, O>, caller: &UserId) -> EventsTicket {
    let (ticket, expires_at) = app
        .events
        .tickets
        .issue(caller, time::OffsetDateTime::now_utc());
    let sep = if app.events.url.contains('?') {
        '&'
    } else {
        '?'
    };
    EventsTicket {
        url: format!("{}{sep}ticket={ticket}", app.events.url),
        expires_at: rfc3339(expires_at),
    }
}

/// Whether the database and the bucket answer. Behind the authorizer: each
/// call costs a round trip to both.
pub async fn dependencies<S: Posts, O: ObjectStore>(app: &App<S, O>) -> Result<(), Error> {
    let (db, objects) = tokio::join!(app.store.ping(), app.objects.ping());
    db.and(objects)
}

pub async fn feed<S: Posts, O: ObjectStore>(
    app: &App<S, O>,
    after: Option<FeedPosition>,
    limit: Limit,
) -> Result<FeedPage, Error> {
    let (rows, last) = page(app.store.feed_page(after, limit.get() + 1).await?, limit);
    let next_cursor = last.map(|p| {
        app.cursors.encode_feed(FeedPosition {
            comment_count: p.comment_count,
            post_id: p.id,
        })
    });
    Ok(FeedPage {
        posts: views(app, rows).await?,
        next_cursor,
    })
}

pub async fn get_post<S: Posts, O: ObjectStore>(
    app: &App<S, O>,
    caller: &UserId,
    id: PostId,
) -> Result<Post, Error> {
    let post = visible_post(app, caller, id).await?;
    let mut posts = views(app, vec![post]).await?;
    Ok(posts.remove(0))
}

pub async fn add_comment<S: Posts, O: ObjectStore>(
    app: &App<S, O>,
    caller: &UserId,
    post: PostId,
    content: CommentText,
    key: Option<&IdempotencyKey>,
) -> Result<Comment, Error> {
    let id = CommentId::generate();
    // The answer, made before the comment is stored: with an idempotency
    // key, it is stored with the comment, in one transaction.
    let comment = CommentRecord::view(CommentRecord {
        id,
        post_id: post,
        author: caller.as_str().to_owned(),
        content: content.as_str().to_owned(),
    });
    let recorded = answer(caller, key, 201, &comment)?;
    match app
        .store
        .add_comment(post, id, caller, &content, recorded.as_ref())
        .await?
    {
        AddComment::Added => Ok(comment),
        AddComment::NotPublished { status, author } if author == caller.as_str() => {
            Err(Error::Conflict(format!(
                "the post is {}; comments open once it is published",
                status.as_str()
            )))
        }
        AddComment::NotPublished { .. } | AddComment::NoSuchPost => {
            Err(Error::NotFound("no such post"))
        }
    }
}

pub async fn list_comments<S: Posts, O: ObjectStore>(
    app: &App<S, O>,
    caller: &UserId,
    post: PostId,
    after: Option<CommentsPosition>,
    limit: Limit,
) -> Result<CommentsPage, Error> {
    visible_post(app, caller, post).await?;
    let (rows, last) = page(
        app.store
            .comments_page(post, after, limit.get() + 1)
            .await?,
        limit,
    );
    let next_cursor = last.map(|c| {
        app.cursors
            .encode_comments(post, CommentsPosition { comment_id: c.id })
    });
    Ok(CommentsPage {
        comments: rows.into_iter().map(CommentRecord::view).collect(),
        next_cursor,
    })
}

pub async fn delete_comment<S: Posts, O: ObjectStore>(
    app: &App<S, O>,
    caller: &UserId,
    post: PostId,
    comment: CommentId,
) -> Result<(), Error> {
    match app.store.delete_comment(post, comment, caller).await? {
        DeleteComment::Deleted => Ok(()),
        DeleteComment::NoSuchComment => Err(Error::NotFound("no such comment")),
        DeleteComment::NotAuthor => Err(Error::Forbidden("only its author may delete a comment")),
    }
}

/// What a create answers, to record for its idempotency key (none without
/// one).
pub(super) fn answer<T: Serialize>(
    caller: &UserId,
    key: Option<&IdempotencyKey>,
    status: u16,
    value: &T,
) -> Result<Option<Answer>, Error> {
    key.map(|key| {
        Ok(Answer {
            caller: caller.clone(),
            key: key.clone(),
            status,
            body: serde_json::to_string(value).map_err(Error::internal)?,
        })
    })
    .transpose()
}

/// A page of `limit` rows from `limit + 1` fetched; the extra row only tells
/// that another page exists, and then the page's last row is returned for
/// the cursor.
fn page<R: Clone>(mut rows: Vec<R>, limit: Limit) -> (Vec<R>, Option<R>) {
    let more = rows.len() > limit.get();
    rows.truncate(limit.get());
    let last = rows.last().filter(|_| more).cloned();
    (rows, last)
}

/// The post, if the caller may see it: everyone sees published posts, the
/// author sees theirs in any state. Others get the same 404 as for a post
/// that does not exist, so unpublished posts do not leak.
async fn visible_post<S: Posts, O: ObjectStore>(
    app: &App<S, O>,
    caller: &UserId,
    id: PostId,
) -> Result<PostRecord, Error> {
    match app.store.post(id).await? {
        Some(p) if p.status == PostStatus::Published || p.author == caller.as_str() => Ok(p),
        _ => Err(Error::NotFound("no such post")),
    }
}

/// What clients see of stored posts: each with its newest comments (kept
/// on the post) and its image URL.
pub(super) async fn views<S: Posts, O: ObjectStore>(
    app: &App<S, O>,
    rows: Vec<PostRecord>,
) -> Result<Vec<Post>, Error> {
    let mut posts = Vec::with_capacity(rows.len());
    for p in rows {
        let image_url = match (&p.image_key, p.status) {
            (Some(key), PostStatus::Published) => Some(app.objects.image_url(key).await?),
            _ => None,
        };
        posts.push(p.view(image_url));
    }
    Ok(posts)
}

/// A create's outcome under an idempotency key.
pub enum Created<T> {
    /// It ran now.
    New(T),
    /// An earlier request with the key ran it; its answer as stored.
    Replayed { status: u16, body: String },
}

/// The idempotency protocol of the creates (the convention of Stripe and of
/// draft-ietf-httpapi-idempotency-key-header): the first request with a key
/// runs `create`, which stores its answer with what it created; a repeat of
/// the same request (`request`, its hash) gets that answer and creates
/// nothing; another request with the key is a 422; a repeat while the
/// first still runs is a 409 (`in_progress`). A request that fails gives
/// its key back, so its retry runs again. Without a key, `create` runs.
pub async fn idempotently<S: Posts, O: ObjectStore, T>(
    app: &App<S, O>,
    caller: &UserId,
    key: Option<IdempotencyKey>,
    request: &[u8; 32],
    create: impl AsyncFnOnce(Option<&IdempotencyKey>) -> Result<T, Error>,
) -> Result<Created<T>, Error> {
    let Some(key) = key else {
        return create(None).await.map(Created::New);
    };
    match app.store.claim_key(caller, &key, request).await? {
        Claim::New => {}
        Claim::Replay { status, body } => return Ok(Created::Replayed { status, body }),
        Claim::Mismatch => return Err(Error::IdempotencyKeyReused),
        Claim::InProgress => return Err(Error::KeyInProgress),
    }
    let result = create(Some(&key)).await;
    if result.is_err()
        && let Err(e) = app.store.release_key(caller, &key).await
    {
        // Taken over by a retry after a while instead.
        tracing::warn!(error = %e, "idempotency key not released");
    }
    result.map(Created::New)
}
