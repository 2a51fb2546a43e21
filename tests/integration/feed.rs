use imagegram::domain::PostStatus;
use imagegram_tests::spawn_app;

#[tokio::test]
async fn walking_the_feed_returns_every_published_post_once_in_order() {
    let app = spawn_app().await;
    // Ties on purpose: several posts per count, created in quick succession.
    let counts = [
        0, 3, 0, 1, 3, 100, 1, 0, 3, 2, 0, 0, 7, 1, 3, 0, 2, 100, 0, 5, 0, 1, 0,
    ];
    let mut expected = Vec::new();
    for (i, &c) in counts.iter().enumerate() {
        let id = app
            .insert_post(&format!("author{}", i % 3), PostStatus::Published, c)
            .await;
        expected.push((c, id));
        // Unpublished posts in between never show up (they have no
        // comments: only published posts take them).
        app.insert_post("x", PostStatus::Processing, 0).await;
        app.insert_post("x", PostStatus::Failed, 0).await;
    }
    // The contract's order: comment_count desc, then newest first (ids are
    // time-ordered, ties on the millisecond broken by id).
    expected.sort_by(|a, b| b.cmp(a));
    let expected: Vec<String> = expected.into_iter().map(|(_, id)| id.to_string()).collect();

    for limit in [1, 2, 3, 5, 22, 23, 24, 100] {
        let mut got = Vec::new();
        let mut cursor: Option<String> = None;
        for _ in 0..100 {
            let path = match &cursor {
                None => format!("/posts?limit={limit}"),
                Some(c) => format!("/posts?limit={limit}&cursor={c}"),
            };
            let r = app.get(&path, "reader").await;
            assert_eq!(r.status, 200, "{:?}", r.body);
            let posts = r.body["posts"].as_array().unwrap();
            assert!(posts.len() <= limit);
            got.extend(posts.iter().map(|p| {
                assert_eq!(p["status"], "published");
                p["id"].as_str().unwrap().to_owned()
            }));
            match r.body["next_cursor"].as_str() {
                Some(c) => {
                    assert_eq!(posts.len(), limit, "only the last page is short");
                    cursor = Some(c.to_owned());
                }
                None => break,
            }
        }
        assert_eq!(got, expected, "limit {limit}");
    }
}

#[tokio::test]
async fn the_default_page_is_20_posts() {
    let app = spawn_app().await;
    for _ in 0..21 {
        app.insert_post("a", PostStatus::Published, 0).await;
    }
    let r = app.get("/posts", "reader").await;
    assert_eq!(r.body["posts"].as_array().unwrap().len(), 20);
    assert!(r.body["next_cursor"].is_string());
}

#[tokio::test]
async fn feed_posts_carry_their_two_newest_comments() {
    let app = spawn_app().await;
    let busy = app
        .insert_post("alice", PostStatus::Published, 0)
        .await
        .to_string();
    let quiet = app
        .insert_post("alice", PostStatus::Published, 0)
        .await
        .to_string();
    let silent = app
        .insert_post("alice", PostStatus::Published, 0)
        .await
        .to_string();
    for i in 0..5 {
        app.comment(&busy, "bob", &format!("busy {i}")).await;
    }
    app.comment(&quiet, "bob", "only one").await;
    let r = app.get("/posts", "reader").await;
    let posts = r.body["posts"].as_array().unwrap();
    let ids: Vec<&str> = posts.iter().map(|p| p["id"].as_str().unwrap()).collect();
    assert_eq!(ids, [busy.as_str(), quiet.as_str(), silent.as_str()]);
    let texts = |i: usize| -> Vec<&str> {
        posts[i]["last_comments"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["content"].as_str().unwrap())
            .collect()
    };
    assert_eq!(texts(0), ["busy 4", "busy 3"]);
    assert_eq!(texts(1), ["only one"]);
    assert!(texts(2).is_empty());
    assert_eq!(posts[0]["comment_count"], 5);
    assert_eq!(posts[0]["last_comments"][0]["post_id"], busy);
}

#[tokio::test]
async fn bad_feed_parameters_are_400() {
    let app = spawn_app().await;
    for q in [
        "limit=0",
        "limit=101",
        "limit=abc",
        "limit=",
        "cursor=",
        "cursor=garbage",
        "cursor=%27%20OR%201%3D1",
        &format!("cursor={}", "A".repeat(4000)),
    ] {
        let r = app.get(&format!("/posts?{q}"), "reader").await;
        assert_eq!((r.status, r.error_code()), (400, "invalid_request"), "{q}");
    }
    // A cursor signed by another deployment.
    let foreign = imagegram::cursor::CursorCodec::new(b"another-secret").encode_feed(
        imagegram::domain::FeedPosition {
            comment_count: 1,
            post_id: imagegram::domain::PostId::generate(),
        },
    );
    let r = app.get(&format!("/posts?cursor={foreign}"), "reader").await;
    assert_eq!((r.status, r.error_code()), (400, "invalid_request"));
}
