//! The MySQL adapter: every SQL statement of the project, one function each,
//! parameters always bound. Each hot statement names the index it relies on;
//! `tests/tests/explain.rs` checks the plans.

use mysql_async::prelude::*;
use mysql_async::{
    IsolationLevel, OptsBuilder, Pool, PoolConstraints, PoolOpts, Row, SslOpts, TxOpts,
};

use super::{
    AddComment, Answer, CONNECTION_LIFETIME_SECS, Claim, CommentRecord, DeleteComment, Listeners,
    NewConnection, NewPost, Outcome, Outcomes, PostRecord, PostStates, Posts, Sweeps,
};
use crate::Error;
use crate::config::DbConfig;
use crate::domain::{
    CommentId, CommentText, CommentsPosition, FeedPosition, IdempotencyKey, PostId, PostStatus,
    UserId, sql_datetime,
};
use time::{OffsetDateTime, PrimitiveDateTime};

mod embedded {
    refinery::embed_migrations!("migrations");
}

/// Migrations whose text was changed after databases had applied it, to
/// one with the same effect, as (version, refinery's checksum of the old
/// text). V4's backfill was MariaDB-only SQL (MySQL refused it); a database
/// that applied the old text has its record moved to the new text's
/// checksum, where refinery would otherwise refuse to run as "divergent".
/// Nothing else is ever edited once applied.
const REBASELINED: &[(i32, u64)] = &[(4, V4_MARIADB_ONLY_CHECKSUM)];
const V4_MARIADB_ONLY_CHECKSUM: u64 = 13969321240071380226;

/// Applies the numbered migrations in `shared/migrations` that the database
/// has not seen yet.
pub async fn migrate(pool: &Pool) -> Result<(), Error> {
    let runner = embedded::migrations::runner();
    {
        let mut conn = pool.get_conn().await?;
        for &(version, old) in REBASELINED {
            let Some(new) = runner
                .get_migrations()
                .iter()
                .find(|m| m.version() == version)
            else {
                continue;
            };
            let moved = conn
                .exec_drop(
                    "UPDATE refinery_schema_history SET checksum = ? WHERE version = ? AND checksum = ?",
                    (new.checksum().to_string(), version, old.to_string()),
                )
                .await;
            match moved {
                // 1146: no history table yet (a new database).
                Err(mysql_async::Error::Server(e)) if e.code == 1146 => {}
                r => r?,
            }
        }
    }
    let mut pool = pool.clone();
    runner.run_async(&mut pool).await.map_err(Error::internal)?;
    Ok(())
}

/// Amazon RDS's certificate authorities (`scripts/rds-ca` writes the file).
pub const RDS_CA: &[u8] = include_bytes!("../../certs/rds-ca.pem");

#[derive(Clone)]
pub struct MySqlStore {
    /// Replaced (under the lock, briefly) when rotated credentials are read
    /// again; every operation takes the current one.
    pool: std::sync::Arc<std::sync::RwLock<(u64, Pool)>>,
    /// Reads the credentials again after the server refused them (1045);
    /// the mutex lets one request of many read the secret.
    reload: Option<(
        crate::config::Reload,
        std::sync::Arc<tokio::sync::Mutex<()>>,
    )>,
    max_connections: usize,
    /// Longest a statement (pool wait included) may take: a database that
    /// stops answering is a 503 within it, never a request hung until the
    /// Lambda timeout.
    timeout: std::time::Duration,
}

impl MySqlStore {
    /// Builds the pool; no connection is made until the first query, so a
    /// cold start does not wait on the database. The options are built from
    /// fields, never parsed from a URL: any character may be in a password.
    pub fn connect(db: &DbConfig, max_connections: usize) -> Self {
        MySqlStore {
            pool: std::sync::Arc::new(std::sync::RwLock::new((
                0,
                Self::pool_for(db, max_connections),
            ))),
            reload: db.reload.clone().map(|r| (r, Default::default())),
            max_connections,
            timeout: db.timeout,
        }
    }

    fn pool_for(db: &DbConfig, max_connections: usize) -> Pool {
        let constraints =
            PoolConstraints::new(0, max_connections.max(1)).expect("0 <= max connections");
        let opts = OptsBuilder::default()
            .ip_or_hostname(db.host.clone())
            .tcp_port(db.port)
            .user(Some(db.user.clone()))
            .pass(Some(db.password.expose().to_owned()))
            // None: the server alone (the schema step creates the database).
            .db_name((!db.database.is_empty()).then(|| db.database.clone()))
            // TCP always, as in AWS: no switch to the server's unix
            // socket when it is local (the tests' fault proxy sits on TCP).
            .prefer_socket(false)
            // rustls, verified against the public (webpki) roots, which RDS
            // Proxy's ACM certificate chains to, and the RDS certificate
            // authorities, which RDS and Aurora endpoints' certificates
            // chain to: the proxy and the direct connection alike.
            .ssl_opts(
                db.tls
                    .then(|| SslOpts::default().with_root_certs(vec![RDS_CA.into()])),
            )
            // No COM_RESET_CONNECTION when a connection goes back to the
            // pool: it would cost a round trip per request and drop the
            // prepared statements, so every query would be prepared anew.
            // Nothing here leaves session state behind (transactions end in
            // commit or rollback).
            //
            // Idle connections stay open for five minutes (a warm Lambda
            // container reuses them). With the default TTL of zero and a
            // minimum of zero, mysql_async closes every connection as it
            // comes back: profiling found a new connection (TCP, then the
            // unix-socket switch, then auth) for every query, ~1.3 ms each.
            //
            // One connection per container is one server connection, with
            // or without RDS Proxy: `exec` uses server-side prepared
            // statements, which pin a proxy session to its backend
            // connection (AWS documents this for the binary and the text
            // protocol alike). So the server sees at most the functions'
            // concurrency in connections (docs/DEPLOYING.md, "Database connections").
            .pool_opts(
                PoolOpts::default()
                    .with_constraints(constraints)
                    .with_reset_connection(false)
                    .with_inactive_connection_ttl(std::time::Duration::from_secs(300)),
            )
            // The last-comments statement comes in one shape per page size
            // (1..=100); keep them all prepared.
            .stmt_cache_size(160)
            .tcp_nodelay(true);
        Pool::new(opts)
    }

    /// A connection of the current pool. When the server refuses the
    /// password (1045: the secret was rotated, RDS-managed ones every 7
    /// days), the credentials are read again and the connection tried once
    /// more with them before the error (a 503) stands. Connections already
    /// open stay logged in through a rotation, so only new ones meet it.
    async fn conn(&self) -> Result<mysql_async::Conn, Error> {
        let (generation, pool) = self.current();
        match pool.get_conn().await {
            Err(mysql_async::Error::Server(e)) if e.code == 1045 => {
                let Some((reload, one_at_a_time)) = &self.reload else {
                    return Err(mysql_async::Error::Server(e).into());
                };
                let _reading = one_at_a_time.lock().await;
                let (now, mut pool) = self.current();
                if now == generation {
                    tracing::warn!("the database refused the password; reading the secret again");
                    pool = Self::pool_for(&reload.load().await?, self.max_connections);
                    let (_, old) = std::mem::replace(
                        &mut *self.pool.write().unwrap_or_else(|p| p.into_inner()),
                        (generation + 1, pool.clone()),
                    );
                    // The old pool's idle connections close in the background.
                    tokio::spawn(async move { old.disconnect().await.ok() });
                }
                Ok(pool.get_conn().await?)
            }
            r => Ok(r?),
        }
    }

    fn current(&self) -> (u64, Pool) {
        self.pool.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Runs one operation within the timeout. Cancelled on expiry: its
    /// connection goes back to the pool, which rolls back what it left.
    async fn within<T>(
        &self,
        op: impl std::future::Future<Output = Result<T, Error>>,
    ) -> Result<T, Error> {
        match tokio::time::timeout(self.timeout, op).await {
            Ok(r) => r,
            Err(_) => Err(Error::unavailable(
                "database",
                format!("no answer within {} ms", self.timeout.as_millis()),
            )),
        }
    }

    /// `op` once more if it failed on a deadlock (InnoDB rolled it back
    /// whole, so running it again is safe); a second deadlock is a 503.
    async fn retrying_deadlock<T, F, Fut>(&self, op: F) -> Result<T, Error>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<T, Error>>,
    {
        match op().await {
            Err(e) if is_deadlock(&e) => {
                tracing::info!("deadlock; running the transaction again");
                op().await
            }
            r => r,
        }
    }

    /// The current pool (a handle: clones share connections).
    pub fn pool(&self) -> Pool {
        self.current().1
    }
}

macro_rules! post_columns {
    () => {
        "SELECT id, author, caption, status, content_type, size_bytes, upload_id, part_size, \
         upload_expires_at, image_key, failure_reason, sweep_attempts, comment_count, last_comments, \
         thumbhash FROM posts "
    };
}

/// The newest two comments of post `$post` (a column or `?`) as the
/// `last_comments` JSON array, in SQL that MySQL and MariaDB both take:
/// MySQL's JSON_ARRAYAGG has no ORDER BY or LIMIT, and MariaDB allows no
/// outer reference in a derived table, so each slot is a scalar subquery on
/// the primary key (post_id, id). A missing comment is a JSON null, which
/// [`last_comments`] skips. With the post bound as a value, MySQL reads the
/// key backwards; correlated to a column, it sorts the post's comments.
macro_rules! newest_two {
    ($post:literal) => {
        concat!(
            "JSON_ARRAY(\
               (SELECT JSON_OBJECT('id', LOWER(HEX(c.id)), 'author', c.author, 'content', c.content) \
                  FROM comments c WHERE c.post_id = ",
            $post,
            " ORDER BY c.id DESC LIMIT 1), \
               (SELECT JSON_OBJECT('id', LOWER(HEX(c.id)), 'author', c.author, 'content', c.content) \
                  FROM comments c WHERE c.post_id = ",
            $post,
            " ORDER BY c.id DESC LIMIT 1 OFFSET 1))"
        )
    };
}

/// The statements on the request path, named so `EXPLAIN` tests check the
/// very text that runs.
pub mod sql {
    /// Primary key.
    pub const POST_BY_ID: &str = concat!(post_columns!(), "WHERE id = ?");
    /// Index posts_feed (status, comment_count, id), scanned backwards.
    pub const FEED_FIRST: &str = concat!(
        post_columns!(),
        "FORCE INDEX (posts_feed) WHERE status = 'published' ORDER BY comment_count DESC, id DESC LIMIT ?"
    );
    /// Same index, as a range over all three columns. FORCE INDEX because
    /// on the seeded 1M posts MariaDB otherwise picks a `ref` on `status`
    /// alone for some positions and filters its way down: 214 ms for a
    /// cursor in the zero-comment tail, against 0.3 ms as a range (see
    /// docs/PERFORMANCE.md). The OR is spelled out; a row comparison
    /// `(comment_count, id) < (?, ?)` is no better.
    pub const FEED_AFTER: &str = concat!(
        post_columns!(),
        "FORCE INDEX (posts_feed) WHERE status = 'published' \
         AND (comment_count < ? OR (comment_count = ? AND id < ?)) \
         ORDER BY comment_count DESC, id DESC LIMIT ?"
    );
    /// Primary key (post_id, id), scanned backwards.
    pub const COMMENTS_FIRST: &str = "SELECT post_id, id, author, content FROM comments WHERE post_id = ? ORDER BY id DESC LIMIT ?";
    pub const COMMENTS_AFTER: &str = "SELECT post_id, id, author, content FROM comments \
                                      WHERE post_id = ? AND id < ? ORDER BY id DESC LIMIT ?";
    pub const COMMENT_AUTHOR: &str = "SELECT author FROM comments WHERE post_id = ? AND id = ?";
    /// A notification's lookup: the author's open connections. Index
    /// event_connections_user (user_id, expires_at), a range on expiry.
    pub const LISTENERS: &str = "SELECT connection_id FROM event_connections \
         WHERE user_id = ? AND expires_at > NOW(3) AND closed_at IS NULL LIMIT 100";
    /// The sweeper's purge of expired connections. Index
    /// event_connections_expiry, oldest first.
    pub const PURGE_CONNECTIONS: &str =
        "DELETE FROM event_connections WHERE expires_at < NOW(3) ORDER BY expires_at LIMIT ?";
    /// A comment in: the count, and the comment among the post's newest two
    /// where its id puts it, under the post row's lock. Ids are 32
    /// lowercase hex digits, so their text sorts as they do: a comment whose
    /// transaction lost the race for the row to a newer one still lands
    /// behind it. Parameters: (id, id, author, content) twice, the post.
    pub const COUNT_AND_SHIFT_IN: &str = "UPDATE posts SET comment_count = comment_count + 1, \
         last_comments = CASE \
           WHEN JSON_VALUE(last_comments, '$[0].id') IS NULL \
             OR ? > JSON_VALUE(last_comments, '$[0].id') \
             THEN JSON_ARRAY(JSON_OBJECT('id', ?, 'author', ?, 'content', ?), \
                             JSON_EXTRACT(last_comments, '$[0]')) \
           WHEN JSON_VALUE(last_comments, '$[1].id') IS NULL \
             OR ? > JSON_VALUE(last_comments, '$[1].id') \
             THEN JSON_ARRAY(JSON_EXTRACT(last_comments, '$[0]'), \
                             JSON_OBJECT('id', ?, 'author', ?, 'content', ?)) \
           ELSE last_comments END \
         WHERE id = ? AND status = 'published'";
    /// A comment out: count, and the newest two again from the primary key
    /// (post_id, id), two rows. Parameters: the post, three times.
    pub const UNCOUNT_AND_RECOMPUTE: &str = concat!(
        "UPDATE posts SET comment_count = comment_count - 1, last_comments = ",
        newest_two!("?"),
        " WHERE id = ?"
    );
    /// Every post's newest two, from comments (the seed tool; migration V4
    /// does the same once, in the same words).
    pub const BACKFILL_LAST_COMMENTS: &str = concat!(
        "UPDATE posts p SET p.last_comments = ",
        newest_two!("p.id"),
        " WHERE p.comment_count > 0"
    );
    /// Index posts_upload_deadline (status, upload_expires_at): a range.
    pub const EXPIRED_UPLOADS: &str = concat!(
        post_columns!(),
        "WHERE status = 'awaiting_upload' AND upload_expires_at < NOW(3) \
         ORDER BY upload_expires_at LIMIT ?"
    );
    /// Index posts_status_updated (status, updated_at): a range.
    pub const STALE_PROCESSING: &str = concat!(
        post_columns!(),
        "WHERE status = 'processing' AND updated_at < NOW(3) - INTERVAL ? SECOND \
         ORDER BY updated_at LIMIT ?"
    );
    /// Index posts_author_status (author, status): one equality range.
    pub const OPEN_UPLOADS: &str = "SELECT COUNT(*), MIN(upload_expires_at) FROM posts \
                                    WHERE author = ? AND status = 'awaiting_upload'";
}

fn id_bytes(v: Vec<u8>) -> Result<[u8; 16], Error> {
    v.try_into()
        .map_err(|_| Error::internal("id column is not 16 bytes"))
}

fn post_from_row(mut row: Row) -> Result<PostRecord, Error> {
    // By position, in post_columns!'s order (more columns than mysql_async
    // converts as a tuple).
    fn col<T: mysql_async::prelude::FromValue>(row: &mut Row, i: usize) -> Result<T, Error> {
        row.take_opt(i)
            .ok_or_else(|| Error::internal(format!("post row has no column {i}")))?
            .map_err(Error::internal)
    }
    let status: String = col(&mut row, 3)?;
    let id = PostId::from_bytes(id_bytes(col(&mut row, 0)?)?);
    Ok(PostRecord {
        id,
        author: col(&mut row, 1)?,
        caption: col(&mut row, 2)?,
        status: PostStatus::parse(&status)
            .ok_or_else(|| Error::internal(format!("unknown status {status}")))?,
        content_type: col(&mut row, 4)?,
        size_bytes: col(&mut row, 5)?,
        upload_id: col(&mut row, 6)?,
        part_size: col(&mut row, 7)?,
        // Written as UTC (sql_datetime), read back as such.
        upload_expires_at: col::<Option<PrimitiveDateTime>>(&mut row, 8)?
            .map(PrimitiveDateTime::assume_utc),
        image_key: col(&mut row, 9)?,
        failure_reason: col(&mut row, 10)?,
        sweep_attempts: col(&mut row, 11)?,
        comment_count: col(&mut row, 12)?,
        last_comments: last_comments(&id, col::<Option<String>>(&mut row, 13)?)?,
        thumbhash: col(&mut row, 14)?,
    })
}

/// The `last_comments` column: a JSON array, newest first, of
/// `{"id", "author", "content"}`; `null` entries (a post's first comment
/// shifts an empty slot in) are skipped.
fn last_comments(post: &PostId, json: Option<String>) -> Result<Vec<CommentRecord>, Error> {
    #[derive(serde::Deserialize)]
    struct Stored {
        id: String,
        author: String,
        content: String,
    }
    let Some(json) = json else {
        return Ok(Vec::new());
    };
    let stored: Vec<Option<Stored>> = serde_json::from_str(&json)
        .map_err(|e| Error::internal(format!("last_comments of {post}: {e}")))?;
    stored
        .into_iter()
        .flatten()
        .map(|c| {
            Ok(CommentRecord {
                id: CommentId::parse(&c.id)
                    .ok_or_else(|| Error::internal(format!("last_comments of {post}: bad id")))?,
                post_id: *post,
                author: c.author,
                content: c.content,
            })
        })
        .collect()
}

fn comment_from_row(row: Row) -> Result<CommentRecord, Error> {
    let (post_id, id, author, content) =
        mysql_async::from_row_opt::<(Vec<u8>, Vec<u8>, String, String)>(row)
            .map_err(Error::internal)?;
    Ok(CommentRecord {
        id: CommentId::from_bytes(id_bytes(id)?),
        post_id: PostId::from_bytes(id_bytes(post_id)?),
        author,
        content,
    })
}

/// How long an idempotency key is kept (the contract: at least 24 hours):
/// past it, the key may be used again and the sweeper removes it.
pub const KEY_RETENTION_HOURS: u32 = 24;

/// How long a key may stay "in progress" before a retry may take it over:
/// the first request's function ended (Lambda's timeout is 10 s) without
/// recording an answer.
const ABANDONED_AFTER_SECS: u32 = 30;

/// Writes a create's answer for its idempotency key, in the create's
/// transaction.
async fn record_answer(tx: &mut mysql_async::Transaction<'_>, a: &Answer) -> Result<(), Error> {
    tx.exec_drop(
        "UPDATE idempotency_keys SET status = ?, response = ? WHERE caller = ? AND idem_key = ?",
        (a.status, &a.body, a.caller.as_str(), a.key.as_str()),
    )
    .await?;
    Ok(())
}

fn is_deadlock(e: &Error) -> bool {
    std::error::Error::source(e)
        .and_then(|s| s.downcast_ref::<mysql_async::Error>())
        .is_some_and(|m| matches!(m, mysql_async::Error::Server(s) if s.code == 1213))
}

fn read_committed() -> TxOpts {
    let mut opts = TxOpts::default();
    opts.with_isolation_level(IsolationLevel::ReadCommitted);
    opts
}

impl Outcomes for MySqlStore {
    async fn finish(&self, post: PostId, outcome: &Outcome) -> Result<bool, Error> {
        self.within(async {
            let (status, image_key, thumbhash, reason) = match outcome {
                Outcome::Published {
                    image_key,
                    thumbhash,
                } => (
                    PostStatus::Published,
                    Some(image_key.as_str()),
                    thumbhash.as_deref(),
                    None,
                ),
                Outcome::Failed { reason } => {
                    (PostStatus::Failed, None, None, Some(reason.as_str()))
                }
            };
            let mut conn = self.conn().await?;
            conn.exec_drop(
                // From awaiting_upload too: a result means S3 holds the
                // original, so the upload completed even if the `complete`
                // request that did it lost its answer and rolled the post back.
                "UPDATE posts SET status = ?, image_key = ?, thumbhash = ?, failure_reason = ?, \
             upload_id = NULL, updated_at = NOW(3) \
             WHERE id = ? AND status IN ('processing', 'awaiting_upload')",
                (
                    status.as_str(),
                    image_key,
                    thumbhash,
                    reason,
                    post.as_bytes(),
                ),
            )
            .await?;
            Ok(conn.affected_rows() == 1)
        })
        .await
    }

    async fn read_post(&self, id: PostId) -> Result<Option<PostRecord>, Error> {
        Posts::post(self, id).await
    }
}

impl Listeners for MySqlStore {
    async fn connect(&self, c: &NewConnection<'_>) -> Result<bool, Error> {
        self.within(async {
            let mut conn = self.conn().await?;
            let inserted = conn
                .exec_drop(
                    "INSERT INTO event_connections \
                     (connection_id, user_id, ticket, connected_at, expires_at) \
                     VALUES (?, ?, ?, NOW(3), NOW(3) + INTERVAL ? SECOND)",
                    (
                        c.connection_id,
                        c.user.as_str(),
                        &c.ticket[..],
                        CONNECTION_LIFETIME_SECS,
                    ),
                )
                .await;
            match inserted {
                Ok(()) => Ok(true),
                // 1062: the ticket (or, never in practice, the connection id)
                // is there already.
                Err(mysql_async::Error::Server(e)) if e.code == 1062 => Ok(false),
                Err(e) => Err(e.into()),
            }
        })
        .await
    }

    async fn disconnect(&self, connection_id: &str) -> Result<(), Error> {
        self.within(async {
            let mut conn = self.conn().await?;
            conn.exec_drop(
                "UPDATE event_connections SET closed_at = NOW(3) \
                 WHERE connection_id = ? AND closed_at IS NULL",
                (connection_id,),
            )
            .await?;
            Ok(())
        })
        .await
    }

    async fn listeners(&self, user: &str) -> Result<Vec<String>, Error> {
        self.within(async {
            let mut conn = self.conn().await?;
            Ok(conn.exec(sql::LISTENERS, (user,)).await?)
        })
        .await
    }

    async fn purge_connections(&self, limit: u32) -> Result<u64, Error> {
        self.within(async {
            let mut conn = self.conn().await?;
            conn.exec_drop(sql::PURGE_CONNECTIONS, (limit,)).await?;
            Ok(conn.affected_rows())
        })
        .await
    }
}

impl PostStates for MySqlStore {
    async fn transition(
        &self,
        post: PostId,
        from: PostStatus,
        to: PostStatus,
        failure_reason: Option<&str>,
    ) -> Result<bool, Error> {
        self.within(async {
        let mut conn = self.conn().await?;
        conn.exec_drop(
            "UPDATE posts SET status = ?, failure_reason = ?, updated_at = NOW(3) WHERE id = ? AND status = ?",
            (to.as_str(), failure_reason, post.as_bytes(), from.as_str()),
        )
        .await?;
        Ok(conn.affected_rows() == 1)
    })
        .await
    }

    async fn delete_unpublished(&self, post: PostId) -> Result<bool, Error> {
        self.within(async {
            let mut conn = self.conn().await?;
            conn.exec_drop(
                "DELETE FROM posts WHERE id = ? AND status = 'awaiting_upload'",
                (post.as_bytes(),),
            )
            .await?;
            Ok(conn.affected_rows() == 1)
        })
        .await
    }
}

impl Posts for MySqlStore {
    async fn replace_upload(&self, post: PostId, from: &str, to: &str) -> Result<bool, Error> {
        self.within(async {
            let mut conn = self.conn().await?;
            conn.exec_drop(
                "UPDATE posts SET upload_id = ?, updated_at = NOW(3) \
                 WHERE id = ? AND status = 'awaiting_upload' AND upload_id = ?",
                (to, post.as_bytes(), from),
            )
            .await?;
            Ok(conn.affected_rows() == 1)
        })
        .await
    }

    async fn ping(&self) -> Result<(), Error> {
        self.within(async {
            let mut conn = self.conn().await?;
            conn.ping().await?;
            Ok(())
        })
        .await
    }

    async fn post(&self, id: PostId) -> Result<Option<PostRecord>, Error> {
        self.within(async {
            let mut conn = self.conn().await?;
            let row: Option<Row> = conn.exec_first(sql::POST_BY_ID, (id.as_bytes(),)).await?;
            row.map(post_from_row).transpose()
        })
        .await
    }

    async fn feed_page(
        &self,
        after: Option<FeedPosition>,
        limit: usize,
    ) -> Result<Vec<PostRecord>, Error> {
        self.within(async {
            let mut conn = self.conn().await?;
            let rows: Vec<Row> = match after {
                None => conn.exec(sql::FEED_FIRST, (limit as u64,)).await?,
                Some(p) => {
                    conn.exec(
                        sql::FEED_AFTER,
                        (
                            p.comment_count,
                            p.comment_count,
                            p.post_id.as_bytes(),
                            limit as u64,
                        ),
                    )
                    .await?
                }
            };
            rows.into_iter().map(post_from_row).collect()
        })
        .await
    }

    async fn comments_page(
        &self,
        post: PostId,
        after: Option<CommentsPosition>,
        limit: usize,
    ) -> Result<Vec<CommentRecord>, Error> {
        self.within(async {
            let mut conn = self.conn().await?;
            let rows: Vec<Row> = match after {
                None => {
                    conn.exec(sql::COMMENTS_FIRST, (post.as_bytes(), limit as u64))
                        .await?
                }
                Some(p) => {
                    conn.exec(
                        sql::COMMENTS_AFTER,
                        (post.as_bytes(), p.comment_id.as_bytes(), limit as u64),
                    )
                    .await?
                }
            };
            rows.into_iter().map(comment_from_row).collect()
        })
        .await
    }

    async fn add_comment(
        &self,
        post: PostId,
        id: CommentId,
        author: &UserId,
        content: &CommentText,
        answer: Option<&Answer>,
    ) -> Result<AddComment, Error> {
        self.retrying_deadlock(|| {
            self.within(async {
                let mut conn = self.conn().await?;
                let mut tx = conn.start_transaction(read_committed()).await?;
                // Locks the post row first (as delete does), so concurrent
                // comments on one post serialise on it and the count stays
                // exact.
                // ... and the new comment goes in front of the post's newest
                // two, in the same statement.
                tx.exec_drop(
                    sql::COUNT_AND_SHIFT_IN,
                    {
                        let id = id.to_string();
                        let comment: [mysql_async::Value; 4] =
                            [(&id).into(), (&id).into(), author.as_str().into(), content.as_str().into()];
                        let mut params = comment.to_vec();
                        params.extend(comment);
                        params.push(post.as_bytes().into());
                        params
                    },
                )
                .await?;
                if tx.affected_rows() == 1 {
                    tx.exec_drop(
                        "INSERT INTO comments (post_id, id, author, content, created_at) VALUES (?, ?, ?, ?, ?)",
                        (post.as_bytes(), id.as_bytes(), author.as_str(), content.as_str(), sql_datetime(id.created_at())),
                    )
                    .await?;
                    if let Some(a) = answer {
                        record_answer(&mut tx, a).await?;
                    }
                    tx.commit().await?;
                    return Ok(AddComment::Added);
                }
                let row: Option<(String, String)> = tx
                    .exec_first(
                        "SELECT status, author FROM posts WHERE id = ?",
                        (post.as_bytes(),),
                    )
                    .await?;
                tx.rollback().await?;
                Ok(match row {
                    None => AddComment::NoSuchPost,
                    Some((status, author)) => AddComment::NotPublished {
                        status: PostStatus::parse(&status)
                            .ok_or_else(|| Error::internal("unknown status"))?,
                        author,
                    },
                })
            })
        })
        .await
    }

    async fn delete_comment(
        &self,
        post: PostId,
        id: CommentId,
        caller: &UserId,
    ) -> Result<DeleteComment, Error> {
        self.retrying_deadlock(|| {
            self.within(async {
                let mut conn = self.conn().await?;
                // A cheap unlocked look first: strangers are turned away without
                // taking a lock on a possibly hot post.
                let author: Option<String> = conn
                    .exec_first(sql::COMMENT_AUTHOR, (post.as_bytes(), id.as_bytes()))
                    .await?;
                match author {
                    None => return Ok(DeleteComment::NoSuchComment),
                    Some(a) if a != caller.as_str() => return Ok(DeleteComment::NotAuthor),
                    Some(_) => {}
                }
                let mut tx = conn.start_transaction(read_committed()).await?;
                // Post row first, then the comment: the same lock order as
                // add_comment, so the two cannot deadlock.
                tx.exec_drop(
                    "SELECT id FROM posts WHERE id = ? FOR UPDATE",
                    (post.as_bytes(),),
                )
                .await?;
                tx.exec_drop(
                    "DELETE FROM comments WHERE post_id = ? AND id = ? AND author = ?",
                    (post.as_bytes(), id.as_bytes(), caller.as_str()),
                )
                .await?;
                if tx.affected_rows() == 0 {
                    // Deleted concurrently by another request of the same author.
                    tx.rollback().await?;
                    return Ok(DeleteComment::NoSuchComment);
                }
                let post = post.as_bytes();
                tx.exec_drop(sql::UNCOUNT_AND_RECOMPUTE, (post, post, post))
                    .await?;
                tx.commit().await?;
                Ok(DeleteComment::Deleted)
            })
        })
        .await
    }

    async fn create_post(&self, p: &NewPost, answer: Option<&Answer>) -> Result<(), Error> {
        self.within(async {
            let mut conn = self.conn().await?;
            let mut tx = conn.start_transaction(read_committed()).await?;
            tx.exec_drop(
                "INSERT INTO posts (id, author, caption, status, content_type, size_bytes, upload_id, part_size, \
                 upload_expires_at, created_at, updated_at) VALUES (?, ?, ?, 'awaiting_upload', ?, ?, ?, ?, ?, ?, ?)",
                (
                    p.id.as_bytes(),
                    p.author.as_str(),
                    p.caption.as_str(),
                    p.content_type,
                    p.size_bytes,
                    &p.upload_id,
                    p.part_size,
                    sql_datetime(p.upload_expires_at),
                    sql_datetime(p.id.created_at()),
                    sql_datetime(p.id.created_at()),
                ),
            )
            .await?;
            if let Some(a) = answer {
                record_answer(&mut tx, a).await?;
            }
            tx.commit().await?;
            Ok(())
        })
        .await
    }

    async fn claim_key(
        &self,
        caller: &UserId,
        key: &IdempotencyKey,
        hash: &[u8; 32],
    ) -> Result<Claim, Error> {
        self.within(async {
            let mut conn = self.conn().await?;
            conn.exec_drop(
                "INSERT IGNORE INTO idempotency_keys (caller, idem_key, request_hash, created_at) \
                 VALUES (?, ?, ?, NOW(3))",
                (caller.as_str(), key.as_str(), &hash[..]),
            )
            .await?;
            if conn.affected_rows() == 1 {
                return Ok(Claim::New);
            }
            // Times compared in the database: one clock for every function.
            type Row = (Vec<u8>, Option<u16>, Option<String>, String, bool, bool);
            let row: Option<Row> = conn
                .exec_first(
                    "SELECT request_hash, status, response, DATE_FORMAT(created_at, '%Y-%m-%d %H:%i:%s.%f'), \
                     created_at < NOW(3) - INTERVAL ? HOUR, created_at < NOW(3) - INTERVAL ? SECOND \
                     FROM idempotency_keys WHERE caller = ? AND idem_key = ?",
                    (
                        KEY_RETENTION_HOURS,
                        ABANDONED_AFTER_SECS,
                        caller.as_str(),
                        key.as_str(),
                    ),
                )
                .await?;
            let Some((stored, status, response, created, expired, abandoned)) = row else {
                // Released between our insert and this read: ask again.
                return Ok(Claim::InProgress);
            };
            let take_over = expired || (status.is_none() && abandoned && stored == hash[..]);
            if take_over {
                // Only one retry wins the key (compare and set on its time).
                conn.exec_drop(
                    "UPDATE idempotency_keys SET request_hash = ?, status = NULL, response = NULL, \
                     created_at = NOW(3) WHERE caller = ? AND idem_key = ? AND created_at = ?",
                    (&hash[..], caller.as_str(), key.as_str(), created),
                )
                .await?;
                return Ok(if conn.affected_rows() == 1 {
                    Claim::New
                } else {
                    Claim::InProgress
                });
            }
            if stored != hash[..] {
                return Ok(Claim::Mismatch);
            }
            Ok(match (status, response) {
                (Some(status), Some(body)) => Claim::Replay { status, body },
                _ => Claim::InProgress,
            })
        })
        .await
    }

    async fn release_key(&self, caller: &UserId, key: &IdempotencyKey) -> Result<(), Error> {
        self.within(async {
            let mut conn = self.conn().await?;
            conn.exec_drop(
                "DELETE FROM idempotency_keys WHERE caller = ? AND idem_key = ? AND status IS NULL",
                (caller.as_str(), key.as_str()),
            )
            .await?;
            Ok(())
        })
        .await
    }

    async fn open_uploads(&self, author: &UserId) -> Result<(u64, Option<OffsetDateTime>), Error> {
        self.within(async {
            let mut conn = self.conn().await?;
            let row: Option<(u64, Option<PrimitiveDateTime>)> = conn
                .exec_first(sql::OPEN_UPLOADS, (author.as_str(),))
                .await?;
            let (count, oldest) = row.unwrap_or((0, None));
            Ok((count, oldest.map(PrimitiveDateTime::assume_utc)))
        })
        .await
    }
}

impl Sweeps for MySqlStore {
    async fn expired_uploads(&self, limit: u32) -> Result<Vec<PostRecord>, Error> {
        self.within(async {
            let mut conn = self.conn().await?;
            let rows: Vec<Row> = conn.exec(sql::EXPIRED_UPLOADS, (limit,)).await?;
            rows.into_iter().map(post_from_row).collect()
        })
        .await
    }

    async fn stale_processing(
        &self,
        older_than_secs: u64,
        limit: u32,
    ) -> Result<Vec<PostRecord>, Error> {
        self.within(async {
            let mut conn = self.conn().await?;
            let rows: Vec<Row> = conn
                .exec(sql::STALE_PROCESSING, (older_than_secs, limit))
                .await?;
            rows.into_iter().map(post_from_row).collect()
        })
        .await
    }

    async fn count_sweep(&self, post: PostId) -> Result<bool, Error> {
        self.within(async {
            let mut conn = self.conn().await?;
            conn.exec_drop(
                "UPDATE posts SET sweep_attempts = sweep_attempts + 1, updated_at = NOW(3) \
                 WHERE id = ? AND status = 'processing'",
                (post.as_bytes(),),
            )
            .await?;
            Ok(conn.affected_rows() == 1)
        })
        .await
    }

    async fn purge_keys(&self, limit: u32) -> Result<u64, Error> {
        self.within(async {
            let mut conn = self.conn().await?;
            conn.exec_drop(
                "DELETE FROM idempotency_keys WHERE created_at < NOW(3) - INTERVAL ? HOUR \
                 ORDER BY created_at LIMIT ?",
                (KEY_RETENTION_HOURS, limit),
            )
            .await?;
            Ok(conn.affected_rows())
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> MySqlStore {
        // Never connects: no statement runs.
        MySqlStore::connect(
            &DbConfig {
                host: "127.0.0.1".into(),
                port: 9,
                user: "u".into(),
                password: crate::config::Secret::new("p"),
                database: "d".into(),
                tls: false,
                timeout: std::time::Duration::from_millis(50),
                reload: None,
            },
            1,
        )
    }

    fn deadlock() -> Error {
        mysql_async::Error::Server(mysql_async::ServerError {
            code: 1213,
            message: "Deadlock found".into(),
            state: "40001".into(),
        })
        .into()
    }

    #[test]
    fn every_rds_certificate_authority_is_a_usable_root() {
        use rustls::pki_types::{CertificateDer, pem::PemObject};
        let mut roots = rustls::RootCertStore::empty();
        let mut n = 0;
        for cert in CertificateDer::pem_slice_iter(RDS_CA) {
            roots
                .add(cert.expect("a PEM certificate"))
                .expect("a trust anchor");
            n += 1;
        }
        // Three kinds (RSA2048, RSA4096, ECC384) for each region.
        assert!(n >= 60, "only {n} certificates");
    }

    #[test]
    fn the_rebaselined_checksum_is_the_old_texts() {
        // The MariaDB-only text V4 had, kept to prove the constant.
        let old = refinery::Migration::unapplied(
            "V4__last_comments_on_the_post",
            include_str!("superseded/V4__last_comments_on_the_post.sql"),
        )
        .unwrap();
        assert_eq!(old.checksum(), V4_MARIADB_ONLY_CHECKSUM);
        let now = embedded::migrations::runner();
        let v4 = now
            .get_migrations()
            .iter()
            .find(|m| m.version() == 4)
            .unwrap();
        assert_ne!(
            v4.checksum(),
            V4_MARIADB_ONLY_CHECKSUM,
            "V4's text is the new one"
        );
    }

    #[tokio::test]
    async fn a_deadlock_is_run_again_once() {
        let store = store();
        let calls = std::sync::atomic::AtomicU32::new(0);
        let r = store
            .retrying_deadlock(|| async {
                match calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst) {
                    0 => Err(deadlock()),
                    _ => Ok(7),
                }
            })
            .await;
        assert_eq!(r.unwrap(), 7);
        assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 2);
        // Twice is a 503.
        let r: Result<u8, Error> = store.retrying_deadlock(|| async { Err(deadlock()) }).await;
        assert_eq!(
            r.unwrap_err().status(),
            http::StatusCode::SERVICE_UNAVAILABLE
        );
    }

    #[tokio::test]
    async fn an_operation_past_the_timeout_is_a_503() {
        let store = store();
        let r: Result<(), Error> = store
            .within(async {
                tokio::time::sleep(std::time::Duration::from_secs(5)).await;
                Ok(())
            })
            .await;
        let e = r.unwrap_err();
        assert_eq!(e.status(), http::StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(e.retry_after_secs(), Some(1));
    }
}
