//! Loads a realistic dataset into the local MariaDB, fast: multi-row
//! inserts of thousands of rows over a few connections, not a row per round
//! trip. Replaces what the database held.
//!
//! ```text
//! imagegram-seed [--posts 1000000] [--comments 5000000] [--force]
//! ```
//!
//! Refuses to replace a database holding posts it did not seed (any post
//! whose caption does not end in `#seed`) unless given `--force`.

use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use imagegram::domain::{CommentId, PostId, sql_datetime};
use imagegram_bench::{TIERS, arg, database_url};
use mysql_async::prelude::*;
use mysql_async::{Pool, Value};
use uuid::{NoContext, Timestamp, Uuid};

const POST_ROWS: usize = 4000;
const COMMENT_ROWS: usize = 10_000;
const WORKERS: usize = 3;

fn xorshift(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

/// A UUIDv7 at a chosen time, so ids (and with them the feed's "newest
/// first") spread over the past year.
fn id_at(unix_ms: u64) -> Uuid {
    Uuid::new_v7(Timestamp::from_unix(
        NoContext,
        unix_ms / 1000,
        ((unix_ms % 1000) * 1_000_000) as u32,
    ))
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--help" || a == "-h") {
        println!("usage: imagegram-seed [--posts 1000000] [--comments 5000000] [--force]");
        return;
    }
    let force = args.iter().any(|a| a == "--force");
    let posts: usize = arg("--posts", 1_000_000);
    let comments: u64 = arg("--comments", 5_000_000);
    let started = Instant::now();
    // TCP only (mysql_async would otherwise move to the socket the server
    // names, on a machine with two servers possibly the other's).
    let pool = Pool::new(format!("{}?prefer_socket=false", database_url()).as_str());
    imagegram::store::migrate(&pool).await.expect("migrations");
    let mut conn = pool
        .get_conn()
        .await
        .expect("MariaDB reachable (scripts/up starts it)");
    let foreign: u64 = conn
        .query_first("SELECT COUNT(*) FROM posts WHERE caption NOT LIKE '%#seed'")
        .await
        .unwrap()
        .unwrap_or(0);
    if foreign > 0 && !force {
        eprintln!(
            "imagegram-seed: the database ({}) holds {foreign} posts this tool did not seed; \
             it replaces everything: run again with --force to do that",
            database_url().rsplit('@').next().unwrap_or_default()
        );
        std::process::exit(1);
    }
    conn.query_drop("SET FOREIGN_KEY_CHECKS = 0").await.unwrap();
    conn.query_drop("TRUNCATE TABLE comments").await.unwrap();
    conn.query_drop("TRUNCATE TABLE posts").await.unwrap();
    drop(conn);

    // Comment counts per post, by tier, assigned to random posts.
    let scale = comments as f64 / 5_000_000.0;
    let mut counts = vec![0u64; posts];
    let mut rng = 0x2545_F491_4F6C_DD1Du64;
    let mut next = 0usize;
    for (share, each) in TIERS {
        let n = ((posts as f64 * share).round() as usize)
            .max(1)
            .min(posts - next);
        let each = ((*each as f64 * scale).round() as u64).max(1);
        counts[next..next + n].fill(each);
        next += n;
    }
    for i in (1..posts).rev() {
        counts.swap(i, (xorshift(&mut rng) % (i as u64 + 1)) as usize);
    }
    let total_comments: u64 = counts.iter().sum();

    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let year_ms = 365 * 24 * 3600 * 1000u64;
    let step = year_ms / posts as u64;
    let ids: Arc<Vec<PostId>> = Arc::new(
        (0..posts)
            .map(|i| PostId::from_bytes(*id_at(now_ms - year_ms + i as u64 * step).as_bytes()))
            .collect(),
    );
    let counts = Arc::new(counts);

    // Posts, in chunks spread over the workers.
    let chunks: Vec<Vec<usize>> = (0..posts)
        .collect::<Vec<_>>()
        .chunks(POST_ROWS)
        .map(<[usize]>::to_vec)
        .collect();
    let (ids2, counts2) = (ids.clone(), counts.clone());
    run_parallel(&pool, chunks, move |chunk| {
        let (ids, counts) = (&ids2, &counts2);
        let mut params: Vec<Value> = Vec::with_capacity(chunk.len() * 7);
        for &i in &chunk {
            let id = ids[i];
            params.extend([
                id.as_bytes().to_vec().into(),
                format!("user{}", i % 10_000).into(),
                format!("Post number {i} #seed").into(),
                format!("converted/{id}.jpg").into(),
                counts[i].into(),
                sql_datetime(id.created_at()).into(),
            ]);
        }
        let row = "(?, ?, ?, 'published', 'image/jpeg', 3000000, 5242880, ?, ?, ?, NOW(3))";
        let sql = format!(
            "INSERT INTO posts (id, author, caption, status, content_type, size_bytes, part_size, image_key, \
             comment_count, created_at, updated_at) VALUES {}",
            vec![row; chunk.len()].join(",")
        );
        (sql, params)
    })
    .await;
    let posts_done = started.elapsed();

    // Comments: per post, ids after the post's own time.
    let mut work: Vec<(usize, u64)> = Vec::new(); // (post index, how many)
    let mut rows: Vec<Vec<(usize, u64)>> = Vec::new();
    let mut in_chunk = 0u64;
    for (i, &c) in counts.iter().enumerate() {
        let mut left = c;
        while left > 0 {
            let take = left.min(COMMENT_ROWS as u64 - in_chunk);
            work.push((i, take));
            in_chunk += take;
            left -= take;
            if in_chunk == COMMENT_ROWS as u64 {
                rows.push(std::mem::take(&mut work));
                in_chunk = 0;
            }
        }
    }
    if !work.is_empty() {
        rows.push(work);
    }
    let ids2 = ids.clone();
    run_parallel(&pool, rows, move |chunk| {
        let ids = &ids2;
        let mut params: Vec<Value> = Vec::new();
        let mut n = 0;
        let mut rng = chunk[0].0 as u64 * 2_654_435_761 + 1;
        for &(i, take) in &chunk {
            let post = ids[i];
            let post_ms = (post.created_at().unix_timestamp_nanos() / 1_000_000) as u64;
            for _ in 0..take {
                let at = post_ms + 1 + xorshift(&mut rng) % (now_ms - post_ms).max(1);
                let id = CommentId::from_bytes(*id_at(at).as_bytes());
                params.extend([
                    post.as_bytes().to_vec().into(),
                    id.as_bytes().to_vec().into(),
                    format!("user{}", xorshift(&mut rng) % 10_000).into(),
                    "What a shot! #seed".into(),
                    sql_datetime(id.created_at()).into(),
                ]);
                n += 1;
            }
        }
        let sql = format!(
            "INSERT INTO comments (post_id, id, author, content, created_at) VALUES {}",
            vec!["(?, ?, ?, ?, ?)"; n].join(",")
        );
        (sql, params)
    })
    .await;
    let mut conn = pool.get_conn().await.unwrap();
    // Each post's newest two comments, as the API keeps them.
    conn.query_drop(imagegram::store::mysql::sql::BACKFILL_LAST_COMMENTS)
        .await
        .unwrap();
    conn.query_drop("ANALYZE TABLE posts, comments")
        .await
        .unwrap();
    drop(conn); // disconnect() waits for every connection to come back
    println!(
        "seeded {posts} posts in {:.1} s and {total_comments} comments in {:.1} s; total {:.1} s \
         (hottest post: {} comments)",
        posts_done.as_secs_f64(),
        (started.elapsed() - posts_done).as_secs_f64(),
        started.elapsed().as_secs_f64(),
        counts.iter().max().unwrap_or(&0),
    );
    pool.disconnect().await.ok();
}

/// Runs the statements `build` makes of each chunk on WORKERS connections.
async fn run_parallel<C: Send + 'static>(
    pool: &Pool,
    chunks: Vec<C>,
    build: impl Fn(C) -> (String, Vec<Value>) + Send + Sync + 'static,
) {
    let build = Arc::new(build);
    let queue = Arc::new(std::sync::Mutex::new(chunks.into_iter()));
    let mut tasks = Vec::new();
    for _ in 0..WORKERS {
        let (pool, queue, build) = (pool.clone(), queue.clone(), build.clone());
        tasks.push(tokio::spawn(async move {
            let mut conn = pool.get_conn().await.unwrap();
            conn.query_drop("SET FOREIGN_KEY_CHECKS = 0, UNIQUE_CHECKS = 0")
                .await
                .unwrap();
            loop {
                let Some(chunk) = queue.lock().unwrap().next() else {
                    break;
                };
                let (sql, params) = build(chunk);
                conn.exec_drop(sql, params).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}
