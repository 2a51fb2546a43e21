//! Every statement on the request path is index-backed: EXPLAIN on a table
//! big enough that the optimizer would rather scan if it could.

use imagegram::domain::{CommentId, PostId};
use imagegram::store::mysql::sql;
use imagegram_tests::fresh_database;
use mysql_async::Value;
use mysql_async::prelude::*;

const POSTS: usize = 3000;
const HOT_POST_COMMENTS: usize = 20_000;

#[tokio::test]
async fn hot_queries_use_indexes_without_filesort() {
    let (_url, store) = fresh_database().await;
    let mut conn = store.pool().get_conn().await.unwrap();
    // Bulk fixtures: posts with skewed counts, one post with many comments.
    let mut ids = Vec::new();
    for chunk in 0..(POSTS / 500) {
        let mut values = Vec::new();
        let mut params: Vec<Value> = Vec::new();
        for i in 0..500 {
            let id = PostId::generate();
            ids.push(id);
            values.push("(?, 'a', '', ?, 'image/png', 1, 5242880, ?, NOW(3), NOW(3))");
            params.push(id.as_bytes().to_vec().into());
            params.push(
                if i % 10 == 0 {
                    "processing"
                } else {
                    "published"
                }
                .into(),
            );
            params.push(((chunk * 500 + i) % 37).into());
        }
        conn.exec_drop(
            format!(
                "INSERT INTO posts (id, author, caption, status, content_type, size_bytes, part_size, \
                 comment_count, created_at, updated_at) VALUES {}",
                values.join(",")
            ),
            params,
        )
        .await
        .unwrap();
    }
    let hot = ids[1];
    for _ in 0..(HOT_POST_COMMENTS / 1000) {
        let values = vec!["(?, ?, 'u', 'text', NOW(3))"; 1000].join(",");
        let mut params: Vec<Value> = Vec::new();
        for _ in 0..1000 {
            params.push(hot.as_bytes().to_vec().into());
            params.push(CommentId::generate().as_bytes().to_vec().into());
        }
        conn.exec_drop(
            format!(
                "INSERT INTO comments (post_id, id, author, content, created_at) VALUES {values}"
            ),
            params,
        )
        .await
        .unwrap();
    }
    // Connections of many users, a fifth of them expired: the
    // notification lookup goes straight to one user's, the purge to the expired.
    for chunk in 0..4 {
        let values =
            vec!["(?, ?, ?, NOW(3) - INTERVAL 3 HOUR, NOW(3) + INTERVAL ? MINUTE, NULL)"; 500]
                .join(",");
        let mut params: Vec<Value> = Vec::new();
        for i in 0..500 {
            let n = chunk * 500 + i;
            params.push(format!("conn-{n}").into());
            params.push(format!("user-{}", n % 400).into());
            params.push(CommentId::generate().as_bytes().to_vec().into());
            params.push((if n % 5 == 0 { -30 } else { 30 }).into());
        }
        conn.exec_drop(
            format!(
                "INSERT INTO event_connections \
                 (connection_id, user_id, ticket, connected_at, expires_at, closed_at) VALUES {values}"
            ),
            params,
        )
        .await
        .unwrap();
    }
    conn.query_drop("ANALYZE TABLE posts, comments, event_connections")
        .await
        .unwrap();
    // MySQL 9 explains as a tree by default; the table form is both
    // servers' own (MariaDB has no explain_format).
    let version: String = conn.query_first("SELECT VERSION()").await.unwrap().unwrap();
    if !version.contains("MariaDB") {
        conn.query_drop("SET SESSION explain_format = 'TRADITIONAL'")
            .await
            .unwrap();
    }

    let existing: Vec<u8> = conn
        .exec_first(
            "SELECT id FROM comments WHERE post_id = ? LIMIT 1",
            (hot.as_bytes(),),
        )
        .await
        .unwrap()
        .unwrap();
    let post = || Value::from(hot.as_bytes().to_vec());
    let comment = || Value::from(CommentId::generate().as_bytes().to_vec());
    let cases: Vec<(&str, String, Vec<Value>)> = vec![
        ("post by id", sql::POST_BY_ID.into(), vec![post()]),
        ("feed, first page", sql::FEED_FIRST.into(), vec![21.into()]),
        (
            "feed, later page",
            sql::FEED_AFTER.into(),
            vec![0.into(), 0.into(), post(), 21.into()],
        ),
        (
            "a comment in: count and newest two",
            sql::COUNT_AND_SHIFT_IN.into(),
            {
                let id = CommentId::generate().to_string();
                let comment: Vec<Value> = vec![(&id).into(), (&id).into(), "a".into(), "b".into()];
                [comment.clone(), comment, vec![post()]].concat()
            },
        ),
        (
            "a comment out: count and newest two again",
            sql::UNCOUNT_AND_RECOMPUTE.into(),
            vec![post(), post(), post()],
        ),
        (
            "comments, first page",
            sql::COMMENTS_FIRST.into(),
            vec![post(), 21.into()],
        ),
        (
            "comments, later page",
            sql::COMMENTS_AFTER.into(),
            vec![post(), comment(), 21.into()],
        ),
        (
            "comment author",
            sql::COMMENT_AUTHOR.into(),
            vec![post(), existing.clone().into()],
        ),
        (
            "a notification's listeners",
            sql::LISTENERS.into(),
            vec!["user-7".into()],
        ),
        (
            "expired connections purged",
            sql::PURGE_CONNECTIONS.into(),
            vec![100.into()],
        ),
    ];
    for (name, stmt, params) in cases {
        let rows: Vec<mysql_async::Row> =
            conn.exec(format!("EXPLAIN {stmt}"), params).await.unwrap();
        let mut checked = 0;
        for row in rows {
            let table: Option<String> = row.get("table").flatten();
            let access: Option<String> = row.get("type").flatten();
            let key: Option<String> = row.get("key").flatten();
            let extra: Option<String> = row.get("Extra").flatten();
            let line =
                format!("{name}: table={table:?} type={access:?} key={key:?} extra={extra:?}");
            println!("{line}");
            // Tables by name or by the statements' aliases (p, c); rows
            // of no table of ours (a union's result) are not plans to check.
            if !matches!(
                table.as_deref(),
                Some("posts" | "comments" | "event_connections" | "p" | "c")
            ) {
                continue;
            }
            assert_ne!(access.as_deref(), Some("ALL"), "full scan: {line}");
            assert!(key.is_some(), "no index: {line}");
            assert!(
                !extra.unwrap_or_default().contains("filesort"),
                "filesort: {line}"
            );
            // A later feed page is a range over the whole feed key, never a
            // `ref` on status that filters its way down to the cursor.
            if name == "feed, later page" {
                let key_len: Option<String> = row.get("key_len").flatten();
                assert_eq!(
                    (access.as_deref(), key.as_deref(), key_len.as_deref()),
                    (Some("range"), Some("posts_feed"), Some("21")),
                    "{line}"
                );
            }
            checked += 1;
        }
        assert!(checked > 0, "{name}: no plan row for a table of ours");
    }
}
