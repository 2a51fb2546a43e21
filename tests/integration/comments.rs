use imagegram::domain::PostStatus;
use imagegram_tests::spawn_app;
use serde_json::{Value, json};

#[tokio::test]
async fn a_comment_is_created_listed_counted_and_shown_on_the_post() {
    let app = spawn_app().await;
    let post = app.insert_post("alice", PostStatus::Published, 0).await;
    let r = app
        .comment(&post.to_string(), "bob", "  nice picture \n")
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let c = r.body;
    assert_eq!(c["post_id"], post.to_string());
    assert_eq!(c["author"], "bob");
    assert_eq!(c["content"], "nice picture", "stored trimmed");
    assert!(c["id"].as_str().is_some_and(|s| s.len() == 32));
    assert!(c["created_at"].as_str().is_some_and(|s| s.ends_with('Z')));

    let list = app.get(&format!("/posts/{post}/comments"), "carol").await;
    assert_eq!(list.status, 200);
    assert_eq!(list.body["comments"], json!([c.clone()]));
    assert!(list.body["next_cursor"].is_null());

    let p = app.get(&format!("/posts/{post}"), "carol").await;
    assert_eq!(p.body["comment_count"], 1);
    assert_eq!(p.body["last_comments"], json!([c]));
}

#[tokio::test]
async fn bad_comment_bodies_are_400_and_change_nothing() {
    let app = spawn_app().await;
    let post = app.insert_post("alice", PostStatus::Published, 0).await;
    let path = format!("/posts/{post}/comments");
    let long = "x".repeat(1001);
    let huge = "y".repeat(2 * 1024 * 1024);
    let bodies = [
        "".to_owned(),
        "not json".to_owned(),
        "{".to_owned(),
        "[]".to_owned(),
        "null".to_owned(),
        "{}".to_owned(),
        r#"{"content": 42}"#.to_owned(),
        r#"{"content": null}"#.to_owned(),
        r#"{"content": ["a"]}"#.to_owned(),
        r#"{"content": ""}"#.to_owned(),
        r#"{"content": "   \n\t "}"#.to_owned(),
        json!({ "content": long }).to_string(),
        json!({ "content": huge }).to_string(),
    ];
    for b in &bodies {
        let r = app.call("POST", &path, Some("bob"), Some(b)).await;
        assert_eq!(r.status, 400, "body {:.40}", b);
        assert_eq!(r.error_code(), "invalid_request");
    }
    let p = app.get(&format!("/posts/{post}"), "bob").await;
    assert_eq!(p.body["comment_count"], 0);
    let list = app.get(&path, "bob").await;
    assert_eq!(list.body["comments"], json!([]));
}

#[tokio::test]
async fn exactly_1000_characters_of_emoji_are_accepted() {
    let app = spawn_app().await;
    let post = app.insert_post("alice", PostStatus::Published, 0).await;
    let text = "👩‍🚀".chars().cycle().take(1000).collect::<String>();
    let r = app.comment(&post.to_string(), "bob", &text).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert_eq!(r.body["content"], text);
}

#[tokio::test]
async fn sql_metacharacters_and_emoji_round_trip_unchanged() {
    let app = spawn_app().await;
    let post = app.insert_post("alice", PostStatus::Published, 0).await;
    let nasty = [
        "'; DROP TABLE comments; --",
        "\" OR \"1\"=\"1",
        "50% off \\ _wild_ %s %n \\0",
        "Robert'); DELETE FROM posts WHERE ('1'='1",
        "😀🎉 naïve café 日本語 עברית",
        "<script>alert(1)</script>",
    ];
    for text in nasty {
        let r = app.comment(&post.to_string(), "o'brien\"; --", text).await;
        assert_eq!(r.status, 201, "{text}: {:?}", r.body);
        assert_eq!(r.body["content"], text);
        assert_eq!(r.body["author"], "o'brien\"; --");
    }
    let list = app
        .get(&format!("/posts/{post}/comments?limit=100"), "bob")
        .await;
    let got: Vec<&str> = list.body["comments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["content"].as_str().unwrap())
        .collect();
    let mut want = nasty.to_vec();
    want.reverse();
    assert_eq!(got, want, "newest first, bytes unchanged");
}

#[tokio::test]
async fn comments_on_missing_or_unpublished_posts() {
    let app = spawn_app().await;
    let r = app
        .comment("0194f7a0c1d27b3e8a5b6c7d8e9f0a1b", "bob", "hi")
        .await;
    assert_eq!((r.status, r.error_code()), (404, "not_found"));
    for status in [
        PostStatus::AwaitingUpload,
        PostStatus::Processing,
        PostStatus::Failed,
    ] {
        let post = app.insert_post("alice", status, 0).await.to_string();
        // Others cannot tell the post exists.
        let r = app.comment(&post, "bob", "hi").await;
        assert_eq!((r.status, r.error_code()), (404, "not_found"));
        // Its author learns it is in the wrong state.
        let r = app.comment(&post, "alice", "hi").await;
        assert_eq!((r.status, r.error_code()), (409, "conflict"));
        let list = app.get(&format!("/posts/{post}/comments"), "bob").await;
        assert_eq!((list.status, list.error_code()), (404, "not_found"));
    }
}

#[tokio::test]
async fn sixty_four_concurrent_comments_are_counted_as_64() {
    let app = spawn_app().await;
    let post = app
        .insert_post("alice", PostStatus::Published, 0)
        .await
        .to_string();
    let replies = futures::future::join_all((0..64).map(|i| {
        let (app, post) = (&app, &post);
        async move {
            app.comment_as_client(post, &format!("user{}", i % 8), &format!("comment {i}"))
                .await
        }
    }))
    .await;
    assert!(
        replies.iter().all(|r| r.status == 201),
        "{:?}",
        replies.iter().map(|r| r.status).collect::<Vec<_>>()
    );
    let p = app.get(&format!("/posts/{post}"), "bob").await;
    assert_eq!(p.body["comment_count"], 64);
    let list = app
        .get(&format!("/posts/{post}/comments?limit=100"), "bob")
        .await;
    let comments = list.body["comments"].as_array().unwrap();
    assert_eq!(comments.len(), 64);
    // The post's newest two, kept on the post under concurrent inserts,
    // are exactly the comment list's first two (ids newest first).
    let newest: Vec<&Value> = comments[..2].iter().collect();
    let kept: Vec<&Value> = p.body["last_comments"].as_array().unwrap().iter().collect();
    assert_eq!(kept, newest);
    // And so is what the feed shows of it.
    let feed = app.get("/posts?limit=100", "bob").await;
    let in_feed = feed.body["posts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["id"] == post.as_str())
        .unwrap();
    assert_eq!(in_feed["last_comments"], p.body["last_comments"]);
}

#[tokio::test]
async fn last_comments_stay_exact_under_64_concurrent_comments_and_deletes() {
    let app = spawn_app().await;
    let post = app
        .insert_post("alice", PostStatus::Published, 0)
        .await
        .to_string();
    let mut first = Vec::new();
    for i in 0..32 {
        let r = app.comment(&post, "bob", &format!("early {i}")).await;
        assert_eq!(r.status, 201, "{}", r.body);
        first.push(r.body["id"].as_str().unwrap().to_owned());
    }
    // 32 new comments racing 32 deletes, the newest ones among them (each
    // delete recomputes the newest two; each insert shifts one in).
    let adds = futures::future::join_all((0..32).map(|i| {
        let (app, post) = (&app, &post);
        async move {
            app.comment_as_client(post, "carol", &format!("late {i}"))
                .await
        }
    }));
    let deletes = futures::future::join_all(first.iter().rev().map(|id| {
        let (app, post) = (&app, &post);
        async move {
            // Retried after a 503 as a client would; a retry may find the
            // first attempt's delete done (404): deleted all the same.
            let path = format!("/posts/{post}/comments/{id}");
            let mut status = app.call("DELETE", &path, Some("bob"), None).await.status;
            for _ in 0..20 {
                if status != 503 {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                status = match app.call("DELETE", &path, Some("bob"), None).await.status {
                    404 => 204,
                    s => s,
                };
            }
            status
        }
    }));
    let (added, deleted) = futures::join!(adds, deletes);
    let added: Vec<u16> = added.iter().map(|r| r.status).collect();
    assert!(added.iter().all(|s| *s == 201), "{added:?}");
    assert!(deleted.iter().all(|s| *s == 204), "{deleted:?}");

    let p = app.get(&format!("/posts/{post}"), "x").await;
    assert_eq!(p.body["comment_count"], 32);
    let list = app
        .get(&format!("/posts/{post}/comments?limit=100"), "x")
        .await;
    let comments = list.body["comments"].as_array().unwrap();
    assert_eq!(comments.len(), 32);
    assert!(comments.iter().all(|c| c["author"] == "carol"));
    let newest: Vec<&Value> = comments[..2].iter().collect();
    let kept: Vec<&Value> = p.body["last_comments"].as_array().unwrap().iter().collect();
    assert_eq!(
        kept, newest,
        "the post's newest two are the list's first two"
    );
}

#[tokio::test]
async fn only_the_author_may_delete_and_last_comments_follow() {
    let app = spawn_app().await;
    let post = app
        .insert_post("alice", PostStatus::Published, 0)
        .await
        .to_string();
    let mut ids = Vec::new();
    for (who, text) in [("bob", "first"), ("carol", "second"), ("bob", "third")] {
        ids.push(
            app.comment(&post, who, text).await.body["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    let last = |r: &imagegram_tests::Reply| -> Vec<String> {
        r.body["last_comments"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["content"].as_str().unwrap().to_owned())
            .collect()
    };
    let p = app.get(&format!("/posts/{post}"), "x").await;
    assert_eq!(last(&p), ["third", "second"]);
    assert_eq!(p.body["comment_count"], 3);

    // Not the author, not even the post's author: 403, nothing changes.
    for who in ["carol", "alice"] {
        let r = app
            .call(
                "DELETE",
                &format!("/posts/{post}/comments/{}", ids[2]),
                Some(who),
                None,
            )
            .await;
        assert_eq!((r.status, r.error_code()), (403, "forbidden"), "{who}");
    }
    // The author may.
    let r = app
        .call(
            "DELETE",
            &format!("/posts/{post}/comments/{}", ids[2]),
            Some("bob"),
            None,
        )
        .await;
    assert_eq!(r.status, 204);
    assert!(r.body.is_null(), "204 has no body");
    let p = app.get(&format!("/posts/{post}"), "x").await;
    assert_eq!(last(&p), ["second", "first"]);
    assert_eq!(p.body["comment_count"], 2);
    // Twice is a 404, and the count does not move.
    let r = app
        .call(
            "DELETE",
            &format!("/posts/{post}/comments/{}", ids[2]),
            Some("bob"),
            None,
        )
        .await;
    assert_eq!((r.status, r.error_code()), (404, "not_found"));
    // A real comment id under another post is not found either.
    let other = app.insert_post("alice", PostStatus::Published, 0).await;
    let r = app
        .call(
            "DELETE",
            &format!("/posts/{other}/comments/{}", ids[0]),
            Some("bob"),
            None,
        )
        .await;
    assert_eq!((r.status, r.error_code()), (404, "not_found"));
    for bad in ["nope", "%27%3B--"] {
        let r = app
            .call(
                "DELETE",
                &format!("/posts/{post}/comments/{bad}"),
                Some("bob"),
                None,
            )
            .await;
        assert_eq!((r.status, r.error_code()), (404, "not_found"));
    }
    let p = app.get(&format!("/posts/{post}"), "x").await;
    assert_eq!(p.body["comment_count"], 2);
}

#[tokio::test]
async fn concurrent_deletes_of_one_comment_lower_the_count_once() {
    let app = spawn_app().await;
    let post = app
        .insert_post("alice", PostStatus::Published, 0)
        .await
        .to_string();
    let id = app.comment(&post, "bob", "x").await.body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    app.comment(&post, "bob", "y").await;
    let path = format!("/posts/{post}/comments/{id}");
    let replies =
        futures::future::join_all((0..8).map(|_| app.call("DELETE", &path, Some("bob"), None)))
            .await;
    let mut statuses: Vec<u16> = replies.iter().map(|r| r.status).collect();
    statuses.sort();
    assert_eq!(statuses, [204, 404, 404, 404, 404, 404, 404, 404]);
    assert_eq!(
        app.get(&format!("/posts/{post}"), "x").await.body["comment_count"],
        1
    );
}

#[tokio::test]
async fn comment_pages_walk_newest_first_with_signed_cursors() {
    let app = spawn_app().await;
    let post = app
        .insert_post("alice", PostStatus::Published, 0)
        .await
        .to_string();
    for i in 0..7 {
        assert_eq!(
            app.comment(&post, "bob", &format!("c{i}")).await.status,
            201
        );
    }
    let mut seen = Vec::new();
    let mut path = format!("/posts/{post}/comments?limit=3");
    let mut pages = 0;
    loop {
        let r = app.get(&path, "carol").await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        pages += 1;
        for c in r.body["comments"].as_array().unwrap() {
            seen.push(c["content"].as_str().unwrap().to_owned());
        }
        match r.body["next_cursor"].as_str() {
            Some(c) => path = format!("/posts/{post}/comments?limit=3&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, ["c6", "c5", "c4", "c3", "c2", "c1", "c0"]);

    // A cursor of this listing, tampered with or used on another post: 400.
    let first = app
        .get(&format!("/posts/{post}/comments?limit=1"), "x")
        .await;
    let cursor = first.body["next_cursor"].as_str().unwrap().to_owned();
    let other = app.insert_post("alice", PostStatus::Published, 0).await;
    let r = app
        .get(&format!("/posts/{other}/comments?cursor={cursor}"), "x")
        .await;
    assert_eq!((r.status, r.error_code()), (400, "invalid_request"));
    let mut tampered = cursor.clone().into_bytes();
    tampered[5] = if tampered[5] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    let r = app
        .get(&format!("/posts/{post}/comments?cursor={tampered}"), "x")
        .await;
    assert_eq!((r.status, r.error_code()), (400, "invalid_request"));
    // A feed cursor is foreign here.
    app.insert_post("alice", PostStatus::Published, 0).await;
    let feed = app.get("/posts?limit=1", "x").await;
    let feed_cursor = feed.body["next_cursor"].as_str().unwrap();
    let r = app
        .get(&format!("/posts/{post}/comments?cursor={feed_cursor}"), "x")
        .await;
    assert_eq!((r.status, r.error_code()), (400, "invalid_request"));
    for limit in ["0", "101", "-5", "ten", ""] {
        let r = app
            .get(&format!("/posts/{post}/comments?limit={limit}"), "x")
            .await;
        assert_eq!(
            (r.status, r.error_code()),
            (400, "invalid_request"),
            "limit={limit}"
        );
    }
}
