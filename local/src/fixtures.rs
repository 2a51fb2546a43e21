//! Rows for tests and for the sample events, made by the store's own
//! operations (`create_post`, `transition`, `finish`, `add_comment`): a
//! fixture is a post as the API and the pipeline would have left it, with
//! the same columns filled (`last_comments`, counts, keys), never a row
//! written by hand that the code could not have written.

use imagegram::Error;
use imagegram::domain::{Caption, CommentId, CommentText, PostId, PostStatus, UserId};
use imagegram::store::{AddComment, MySqlStore, NewPost, Outcome, Outcomes, PostStates, Posts};
use mysql_async::prelude::Queryable;
use time::OffsetDateTime;

/// The post the sample events name (`events/*.json`), by their caller.
pub const EVENTS_POST: &str = "0194f7a0c1d27b3e8a5b6c7d8e9f0a1b";
/// Its one comment, by the same caller.
pub const EVENTS_COMMENT: &str = "0194f7a1000070008000000000000c01";
/// The `sub` of the sample events' token.
pub const EVENTS_USER: &str = "user-123";

/// Why a failed fixture failed.
pub const FAILURE_REASON: &str = "the file is not a PNG, JPEG or BMP image";

/// A post to make: `comments` are added (by `commenter`) once it is
/// published, so its count and newest two are the store's own.
pub struct PostFixture<'a> {
    pub id: PostId,
    pub author: &'a str,
    pub caption: &'a str,
    pub status: PostStatus,
    pub comments: Vec<(CommentId, &'a str, &'a str)>,
}

impl<'a> PostFixture<'a> {
    pub fn new(author: &'a str, status: PostStatus) -> Self {
        PostFixture {
            id: PostId::generate(),
            author,
            caption: "",
            status,
            comments: Vec::new(),
        }
    }

    /// `n` comments by `commenter`, with fresh ids.
    pub fn with_comments(mut self, n: u32, commenter: &'a str) -> Self {
        self.comments.extend((0..n).map(|i| {
            (
                CommentId::generate(),
                commenter,
                ["nice", "wow", "great"][i as usize % 3],
            )
        }));
        self
    }
}

fn user(sub: &str) -> UserId {
    UserId::parse(sub).expect("a fixture's user id")
}

/// Makes the post through the store, as the API (create), the finalizer
/// (published, failed) and the API again (comments) would.
pub async fn post(store: &MySqlStore, f: &PostFixture<'_>) -> Result<PostId, Error> {
    let new = NewPost {
        id: f.id,
        author: user(f.author),
        caption: Caption::parse(f.caption.to_owned())?,
        content_type: "image/png",
        size_bytes: 1000,
        upload_id: format!("fixture-{}", f.id),
        part_size: imagegram::api::uploads::PART_SIZE,
        upload_expires_at: OffsetDateTime::now_utc() + time::Duration::hours(6),
    };
    store.create_post(&new, None).await?;
    match f.status {
        PostStatus::AwaitingUpload => {}
        PostStatus::Processing => {
            store
                .transition(
                    f.id,
                    PostStatus::AwaitingUpload,
                    PostStatus::Processing,
                    None,
                )
                .await?;
        }
        PostStatus::Published => {
            let image_key = f.id.converted_key();
            store
                .finish(
                    f.id,
                    &Outcome::Published {
                        image_key,
                        thumbhash: None,
                    },
                )
                .await?;
        }
        PostStatus::Failed => {
            let reason = FAILURE_REASON.to_owned();
            store.finish(f.id, &Outcome::Failed { reason }).await?;
        }
    }
    for (id, author, content) in &f.comments {
        let added = store
            .add_comment(
                f.id,
                *id,
                &user(author),
                &CommentText::parse(content)?,
                None,
            )
            .await?;
        if !matches!(added, AddComment::Added) {
            return Err(Error::internal(format!(
                "a fixture's comment was not added ({added:?}): only published posts take comments"
            )));
        }
    }
    Ok(f.id)
}

/// The sample events' fixture: their post (published, by their caller)
/// with its one comment by the same caller. What an earlier run left of it
/// (the post, its comments, the caller's open uploads and keys) is removed
/// first, so every event answers as `events/expected.json` says again.
pub async fn events(store: &MySqlStore) -> Result<(), Error> {
    let post = PostId::parse(EVENTS_POST).expect("the events' post id");
    let comment = CommentId::parse(EVENTS_COMMENT).expect("the events' comment id");
    let mut conn = store.pool().get_conn().await?;
    conn.exec_drop("DELETE FROM comments WHERE post_id = ?", (post.as_bytes(),))
        .await?;
    conn.exec_drop(
        "DELETE FROM idempotency_keys WHERE caller = ?",
        (EVENTS_USER,),
    )
    .await?;
    conn.exec_drop(
        "DELETE FROM posts WHERE id = ? OR (author = ? AND status = 'awaiting_upload')",
        (post.as_bytes(), EVENTS_USER),
    )
    .await?;
    drop(conn);
    self::post(
        store,
        &PostFixture {
            id: post,
            author: EVENTS_USER,
            caption: "sunset",
            status: PostStatus::Published,
            comments: vec![(comment, EVENTS_USER, "wow")],
        },
    )
    .await?;
    Ok(())
}
