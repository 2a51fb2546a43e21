//! The upload routes, with plain HTTP PUTs to the presigned URLs.

use imagegram_tests::images::noise_png;
use imagegram_tests::spawn_app;
use serde_json::json;

const MIB: usize = 1024 * 1024;

#[tokio::test]
async fn an_image_of_several_parts_is_uploaded_and_published() {
    let app = spawn_app().await;
    let bytes = noise_png(2400, 1000);
    assert!(
        bytes.len() > 5 * MIB,
        "needs two parts: {} bytes",
        bytes.len()
    );
    let created = app.create_post("alice", "image/png", bytes.len()).await;
    let upload = &created["upload"];
    assert_eq!(upload["part_size"], 5 * MIB);
    assert_eq!(upload["part_count"], bytes.len().div_ceil(5 * MIB));
    assert_eq!(
        upload["parts"].as_array().unwrap().len(),
        bytes.len().div_ceil(5 * MIB)
    );
    assert!(upload["expires_at"].as_str().unwrap().ends_with('Z'));
    assert!(upload["upload_id"].as_str().is_some_and(|s| !s.is_empty()));
    let post = &created["post"];
    assert_eq!(post["status"], "awaiting_upload");
    assert!(post["image_url"].is_null());
    assert_eq!(post["caption"], "test");

    app.upload_all(&created, &bytes).await;
    let id = post["id"].as_str().unwrap();
    let r = app
        .call(
            "POST",
            &format!("/posts/{id}/upload/complete"),
            Some("alice"),
            None,
        )
        .await;
    assert_eq!(r.status, 202, "{:?}", r.body);
    assert_eq!(r.body["status"], "processing");
    let done = app.wait_until_final(id, "alice").await;
    assert_eq!(done["status"], "published", "{done}");
    let img = app.fetch_image(&done).await;
    assert_eq!(img.dimensions(), (600, 600));
    // Its placeholder: a ThumbHash that decodes to a square preview of the
    // image's average colour.
    let hash = done["thumbhash"]
        .as_str()
        .expect("a published post's thumbhash");
    imagegram_tests::images::assert_thumbhash_of(hash, &img);
    // The original is kept as uploaded.
    let original = app
        .s3
        .get_object()
        .bucket(&app.bucket)
        .key(format!("originals/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        original.body.collect().await.unwrap().into_bytes().len(),
        bytes.len()
    );
    // Published: others see it in the feed now.
    let feed = app.get("/posts", "bob").await;
    assert_eq!(feed.body["posts"][0]["id"], id);
}

#[tokio::test]
async fn an_upload_resumes_after_only_part_one_arrived() {
    let app = spawn_app().await;
    let bytes = noise_png(2400, 1000);
    let created = app.create_post("alice", "image/png", bytes.len()).await;
    let id = created["post"]["id"].as_str().unwrap();
    let parts = created["upload"]["parts"].as_array().unwrap();
    let etag1 = app
        .put_part(parts[0]["url"].as_str().unwrap(), bytes[..5 * MIB].to_vec())
        .await;

    // The connection dropped; the client asks what S3 has.
    let state = app.get(&format!("/posts/{id}/upload"), "alice").await;
    assert_eq!(state.status, 200, "{:?}", state.body);
    assert_eq!(state.body["upload_id"], created["upload"]["upload_id"]);
    assert_eq!(state.body["part_count"], 2);
    let held = state.body["uploaded_parts"].as_array().unwrap();
    assert_eq!(held.len(), 1);
    assert_eq!(held[0]["part_number"], 1);
    assert_eq!(held[0]["size"], 5 * MIB);
    assert_eq!(
        held[0]["etag"].as_str().unwrap().trim_matches('"'),
        etag1.trim_matches('"')
    );

    // Completing now is refused: part 2 is missing.
    let r = app
        .call(
            "POST",
            &format!("/posts/{id}/upload/complete"),
            Some("alice"),
            None,
        )
        .await;
    assert_eq!((r.status, r.error_code()), (409, "conflict"));

    // Fresh URL for part 2, then complete with the client's own list.
    let fresh = app
        .call(
            "POST",
            &format!("/posts/{id}/upload/parts"),
            Some("alice"),
            Some(r#"{"part_numbers":[2]}"#),
        )
        .await;
    assert_eq!(fresh.status, 200, "{:?}", fresh.body);
    assert!(fresh.body["expires_at"].is_string());
    let url = fresh.body["parts"][0]["url"].as_str().unwrap();
    assert_eq!(fresh.body["parts"][0]["part_number"], 2);
    let etag2 = app.put_part(url, bytes[5 * MIB..].to_vec()).await;
    let body = json!({ "parts": [{ "part_number": 1, "etag": etag1 }, { "part_number": 2, "etag": etag2 }] });
    let r = app
        .call(
            "POST",
            &format!("/posts/{id}/upload/complete"),
            Some("alice"),
            Some(&body.to_string()),
        )
        .await;
    assert_eq!(r.status, 202, "{:?}", r.body);
    assert_eq!(
        app.wait_until_final(id, "alice").await["status"],
        "published"
    );
    // Once completed, the upload is closed to everything but a retried
    // complete, which gets the post as it stands.
    let again = app
        .call(
            "POST",
            &format!("/posts/{id}/upload/complete"),
            Some("alice"),
            None,
        )
        .await;
    assert_eq!(
        (again.status, again.body["status"].as_str()),
        (202, Some("published"))
    );
    let parts = app
        .call("GET", &format!("/posts/{id}/upload"), Some("alice"), None)
        .await;
    assert_eq!((parts.status, parts.error_code()), (409, "conflict"));
}

#[tokio::test]
async fn aborting_removes_the_upload_and_the_post() {
    let app = spawn_app().await;
    let created = app.create_post("alice", "image/jpeg", 6 * MIB).await;
    let id = created["post"]["id"].as_str().unwrap();
    app.put_part(
        created["upload"]["parts"][0]["url"].as_str().unwrap(),
        vec![7u8; 5 * MIB],
    )
    .await;
    assert_eq!(app.open_uploads().await, 1);
    // Not by someone else.
    let r = app
        .call("DELETE", &format!("/posts/{id}/upload"), Some("bob"), None)
        .await;
    assert_eq!((r.status, r.error_code()), (403, "forbidden"));
    let r = app
        .call(
            "DELETE",
            &format!("/posts/{id}/upload"),
            Some("alice"),
            None,
        )
        .await;
    assert_eq!(r.status, 204);
    assert_eq!(app.open_uploads().await, 0);
    assert_eq!(app.get(&format!("/posts/{id}"), "alice").await.status, 404);
    let r = app
        .call(
            "DELETE",
            &format!("/posts/{id}/upload"),
            Some("alice"),
            None,
        )
        .await;
    assert_eq!((r.status, r.error_code()), (404, "not_found"));
}

#[tokio::test]
async fn a_client_lying_about_its_size_gets_413_and_nothing_is_converted() {
    let app = spawn_app().await;
    let created = app.create_post("alice", "image/png", 100 * MIB).await;
    let id = created["post"]["id"].as_str().unwrap();
    let parts = created["upload"]["parts"].as_array().unwrap();
    assert_eq!(parts.len(), 20);
    for (i, part) in parts.iter().enumerate() {
        // The last part carries one byte more than declared.
        let len = if i == 19 { 5 * MIB + 1 } else { 5 * MIB };
        app.put_part(part["url"].as_str().unwrap(), vec![0u8; len])
            .await;
    }
    let r = app
        .call(
            "POST",
            &format!("/posts/{id}/upload/complete"),
            Some("alice"),
            None,
        )
        .await;
    assert_eq!(
        (r.status, r.error_code()),
        (413, "too_large"),
        "{:?}",
        r.body
    );
    assert_eq!(app.open_uploads().await, 0, "the upload is aborted");
    let post = app.get(&format!("/posts/{id}"), "alice").await;
    assert_eq!(post.body["status"], "failed");
    assert!(
        post.body["failure_reason"]
            .as_str()
            .unwrap()
            .contains("100 MiB")
    );
    assert!(!app.object_exists(&format!("originals/{id}")).await);
    assert!(!app.object_exists(&format!("converted/{id}.jpg")).await);
}

#[tokio::test]
async fn create_post_validates_its_input() {
    let app = spawn_app().await;
    let cases = [
        (
            r#"{"caption":"x","content_type":"image/gif","size_bytes":10}"#,
            415,
            "unsupported_media_type",
        ),
        (
            r#"{"caption":"x","content_type":"application/pdf","size_bytes":10}"#,
            415,
            "unsupported_media_type",
        ),
        (
            r#"{"caption":"x","content_type":"image/png","size_bytes":104857601}"#,
            413,
            "too_large",
        ),
        (
            r#"{"caption":"x","content_type":"image/png","size_bytes":0}"#,
            400,
            "invalid_request",
        ),
        (
            r#"{"caption":"x","content_type":"image/png","size_bytes":-1}"#,
            400,
            "invalid_request",
        ),
        (
            r#"{"caption":"x","content_type":"image/png","size_bytes":"10"}"#,
            400,
            "invalid_request",
        ),
        (
            r#"{"caption":"x","content_type":"image/png","size_bytes":1.5}"#,
            400,
            "invalid_request",
        ),
        (
            r#"{"caption":"x","content_type":"image/png"}"#,
            400,
            "invalid_request",
        ),
        (r#"{"caption":"x","size_bytes":10}"#, 400, "invalid_request"),
        (
            r#"{"caption":7,"content_type":"image/png","size_bytes":10}"#,
            400,
            "invalid_request",
        ),
        (r#"not json"#, 400, "invalid_request"),
        ("", 400, "invalid_request"),
    ];
    for (body, status, code) in cases {
        let r = app.call("POST", "/posts", Some("alice"), Some(body)).await;
        assert_eq!((r.status, r.error_code()), (status, code), "{body}");
    }
    let long =
        json!({ "caption": "c".repeat(2201), "content_type": "image/png", "size_bytes": 10 });
    let r = app
        .call("POST", "/posts", Some("alice"), Some(&long.to_string()))
        .await;
    assert_eq!((r.status, r.error_code()), (400, "invalid_request"));
    // Exactly 100 MiB and an emoji caption of 2200 characters are fine.
    let ok = json!({ "caption": "📷".repeat(2200), "content_type": "image/bmp", "size_bytes": 100 * MIB });
    let r = app
        .call("POST", "/posts", Some("alice"), Some(&ok.to_string()))
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert_eq!(r.body["post"]["caption"], "📷".repeat(2200));
    assert_eq!(
        app.open_uploads().await,
        1,
        "no upload is left behind by refused requests"
    );
}

#[tokio::test]
async fn only_the_author_may_see_or_change_an_upload() {
    let app = spawn_app().await;
    let created = app.create_post("alice", "image/png", 1000).await;
    let id = created["post"]["id"].as_str().unwrap();
    for (m, p, b) in [
        ("GET", format!("/posts/{id}/upload"), None),
        (
            "POST",
            format!("/posts/{id}/upload/parts"),
            Some(r#"{"part_numbers":[1]}"#),
        ),
        ("POST", format!("/posts/{id}/upload/complete"), None),
        ("DELETE", format!("/posts/{id}/upload"), None),
    ] {
        let r = app.call(m, &p, Some("bob"), b).await;
        assert_eq!((r.status, r.error_code()), (403, "forbidden"), "{m} {p}");
        let missing = p.replace(id, "0194f7a0c1d27b3e8a5b6c7d8e9f0a1b");
        let r = app.call(m, &missing, Some("alice"), b).await;
        assert_eq!(
            (r.status, r.error_code()),
            (404, "not_found"),
            "{m} {missing}"
        );
    }
    // Others do not see the post at all while it awaits its upload.
    assert_eq!(app.get(&format!("/posts/{id}"), "bob").await.status, 404);
}

#[tokio::test]
async fn part_requests_are_checked() {
    let app = spawn_app().await;
    let created = app.create_post("alice", "image/png", 12 * MIB).await;
    let id = created["post"]["id"].as_str().unwrap();
    let path = format!("/posts/{id}/upload/parts");
    for body in [
        r#"{"part_numbers":[]}"#,
        r#"{"part_numbers":[0]}"#,
        r#"{"part_numbers":[4]}"#,
        r#"{"part_numbers":[-1]}"#,
        r#"{"part_numbers":"1"}"#,
        r#"{}"#,
    ] {
        let r = app.call("POST", &path, Some("alice"), Some(body)).await;
        assert_eq!(
            (r.status, r.error_code()),
            (400, "invalid_request"),
            "{body}"
        );
    }
    let r = app
        .call(
            "POST",
            &path,
            Some("alice"),
            Some(r#"{"part_numbers":[3,1,3]}"#),
        )
        .await;
    assert_eq!(r.status, 200);
    let numbers: Vec<u64> = r.body["parts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["part_number"].as_u64().unwrap())
        .collect();
    assert_eq!(numbers, [1, 3]);
    // A parts list naming a part S3 does not hold, or with a wrong etag.
    let complete = format!("/posts/{id}/upload/complete");
    let r = app
        .call(
            "POST",
            &complete,
            Some("alice"),
            Some(r#"{"parts":[{"part_number":1,"etag":"\"abc\""}]}"#),
        )
        .await;
    assert_eq!((r.status, r.error_code()), (400, "invalid_request"));
    for bad in [
        r#"{"parts":"all"}"#,
        r#"{"parts":[{"part_number":1}]}"#,
        "nope",
    ] {
        let r = app.call("POST", &complete, Some("alice"), Some(bad)).await;
        assert_eq!(
            (r.status, r.error_code()),
            (400, "invalid_request"),
            "{bad}"
        );
    }
    // Nothing uploaded: nothing to complete.
    let r = app.call("POST", &complete, Some("alice"), None).await;
    assert_eq!((r.status, r.error_code()), (409, "conflict"));
    assert_eq!(
        app.get(&format!("/posts/{id}"), "alice").await.body["status"],
        "awaiting_upload"
    );
}

#[tokio::test]
async fn every_part_url_signs_its_exact_size_and_none_outlives_the_upload() {
    let app = imagegram_tests::spawn_app_spec(|s| {
        s.env.push(("UPLOAD_TTL_SECS".into(), "600".into()));
        s.env.push(("PRESIGN_TTL_SECS".into(), "600".into()));
    })
    .await;
    let size = 12 * MIB + 5;
    let created = app.create_post("alice", "image/png", size).await;
    let upload = &created["upload"];
    let deadline = time::OffsetDateTime::parse(
        upload["upload_expires_at"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    let left = (deadline - time::OffsetDateTime::now_utc()).whole_seconds();
    assert!((590..=600).contains(&left), "{left} s left");
    for part in upload["parts"].as_array().unwrap() {
        let url = part["url"].as_str().unwrap();
        assert!(
            url.contains("X-Amz-SignedHeaders=content-length%3Bhost"),
            "{url}"
        );
        let expires: u64 = url
            .split(['?', '&'])
            .find_map(|kv| kv.strip_prefix("X-Amz-Expires="))
            .unwrap()
            .parse()
            .unwrap();
        assert!(
            expires <= 600,
            "a part URL outlives the upload: {expires} s"
        );
    }
    // A plain PUT of each part's exact size is accepted (moto checks no
    // signature; README "Known differences": S3 refuses any other size).
    let bytes = vec![7u8; size];
    app.upload_all(&created, &bytes).await;
}

#[tokio::test]
async fn open_uploads_are_capped_per_user_with_retry_after() {
    let app =
        imagegram_tests::spawn_app_spec(|s| s.env.push(("MAX_OPEN_UPLOADS".into(), "2".into())))
            .await;
    let first = app.create_post("alice", "image/png", 1000).await;
    app.create_post("alice", "image/png", 1000).await;
    let body =
        json!({ "caption": "", "content_type": "image/png", "size_bytes": 1000 }).to_string();
    let r = app.call("POST", "/posts", Some("alice"), Some(&body)).await;
    assert_eq!(
        (r.status, r.error_code()),
        (429, "too_many_requests"),
        "{:?}",
        r.body
    );
    // Until the oldest open upload expires at the latest (6 h by default).
    let wait: u64 = r.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((21_000..=21_600).contains(&wait), "Retry-After {wait}");
    // Per user: bob is not affected.
    app.create_post("bob", "image/png", 1000).await;
    // Aborting one frees a slot; no S3 upload was made for the refusal.
    assert_eq!(app.open_uploads().await, 3);
    let id = first["post"]["id"].as_str().unwrap();
    let r = app
        .call(
            "DELETE",
            &format!("/posts/{id}/upload"),
            Some("alice"),
            None,
        )
        .await;
    assert_eq!(r.status, 204);
    app.create_post("alice", "image/png", 1000).await;
}

#[tokio::test]
async fn an_expired_upload_answers_409_with_its_deadline() {
    let app = spawn_app().await;
    let created = app.create_post("alice", "image/png", 1000).await;
    let id = created["post"]["id"].as_str().unwrap();
    app.expire_upload(id).await;
    for (m, p, b) in [
        ("GET", format!("/posts/{id}/upload"), None),
        (
            "POST",
            format!("/posts/{id}/upload/parts"),
            Some(r#"{"part_numbers":[1]}"#),
        ),
        ("POST", format!("/posts/{id}/upload/complete"), None),
    ] {
        let r = app.call(m, &p, Some("alice"), b).await;
        assert_eq!((r.status, r.error_code()), (409, "conflict"), "{m} {p}");
        assert_eq!(r.body["error"]["reason"], "wrong_state", "{m} {p}");
        let msg = r.body["error"]["message"].as_str().unwrap();
        assert!(msg.contains("expired"), "{msg}");
    }
}

/// moto 5.1.22 computes a new part's ETag unlocked; an UploadPart answer and
/// a ListParts hashing it at once could both get (and cache) a wrong one
/// (with parts over moto's 16 MiB read block, nearly always). The local
/// stack runs moto through `local/moto_server.py`, which locks it; S3 has
/// no such race. Clients list an upload while sending it (the CLI and the
/// web page resume from the listing), so the listing must be right.
#[tokio::test]
async fn a_parts_etag_is_its_md5_while_the_upload_is_being_listed() {
    use imagegram_tests::listed_parts;
    use md5::Digest;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    // The functions' budgets are for small calls; 17 MiB parts to a busy
    // moto get a minute.
    let sdk = imagegram_tests::sdk_config().await;
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&sdk)
            .timeout_config(
                aws_sdk_s3::config::timeout::TimeoutConfig::builder()
                    .connect_timeout(std::time::Duration::from_secs(5))
                    .read_timeout(std::time::Duration::from_secs(30))
                    .operation_attempt_timeout(std::time::Duration::from_secs(60))
                    .operation_timeout(std::time::Duration::from_secs(60))
                    .build(),
            )
            .build(),
    );
    let bucket = imagegram_tests::fresh_bucket(&s3).await;
    let key = "originals/etag-race";
    let upload = s3
        .create_multipart_upload()
        .bucket(&bucket)
        .key(key)
        .send()
        .await
        .unwrap();
    let upload_id = upload.upload_id().unwrap().to_owned();
    let done = Arc::new(AtomicBool::new(false));
    let listers: Vec<_> = (0..8)
        .map(|_| {
            let (s3, bucket, upload_id, done) = (
                s3.clone(),
                bucket.clone(),
                upload_id.clone(),
                Arc::clone(&done),
            );
            tokio::spawn(async move {
                let mut seen = Vec::new();
                while !done.load(Ordering::Relaxed) {
                    seen.extend(listed_parts(&s3, &bucket, key, &upload_id).await);
                }
                seen
            })
        })
        .collect();
    let mut md5s = std::collections::HashMap::new();
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    for n in 1..=4 {
        // 17 MiB of noise: two of moto's read blocks.
        let bytes: Vec<u8> = (0..17 * MIB)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect();
        let md5 = format!("\"{:x}\"", md5::Md5::digest(&bytes));
        let answer = s3
            .upload_part()
            .bucket(&bucket)
            .key(key)
            .upload_id(&upload_id)
            .part_number(n)
            .body(bytes.into())
            .send()
            .await
            .unwrap();
        assert_eq!(
            answer.e_tag(),
            Some(md5.as_str()),
            "UploadPart's answer, part {n}"
        );
        md5s.insert(n, md5);
    }
    done.store(true, Ordering::Relaxed);
    let mut listed = 0;
    for lister in listers {
        for (n, etag) in lister.await.unwrap() {
            assert_eq!(etag, md5s[&n], "part {n} as ListParts gave it");
            listed += 1;
        }
    }
    assert!(listed > 0, "no listing saw a part");
    let last = listed_parts(&s3, &bucket, key, &upload_id).await;
    for (n, etag) in &last {
        assert_eq!(etag, &md5s[n], "part {n} as listed at the end");
    }
    assert_eq!(last.len(), 4);
    s3.abort_multipart_upload()
        .bucket(&bucket)
        .key(key)
        .upload_id(&upload_id)
        .send()
        .await
        .unwrap();
}
