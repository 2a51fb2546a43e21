//! `POST /uploads/sign`, driven as Uppy 6's `signRequest` drives it: the
//! client creates its own multipart upload, uploads, lists and completes it
//! on S3 itself through the URLs the route signs (plain HTTP, with the
//! headers the route returns).

use imagegram_tests::images::noise_png;
use imagegram_tests::{Reply, TestApp, spawn_app};
use serde_json::{Value, json};

const MIB: usize = 1024 * 1024;

/// Signs one request; asserts 200.
async fn sign(app: &TestApp, user: &str, request: Value) -> Value {
    let r = sign_reply(app, user, request.clone()).await;
    assert_eq!(r.status, 200, "{request}: {:?}", r.body);
    r.body
}

async fn sign_reply(app: &TestApp, user: &str, request: Value) -> Reply {
    app.call(
        "POST",
        "/uploads/sign",
        Some(user),
        Some(&request.to_string()),
    )
    .await
}

/// Sends a signed request to S3 as a browser would: the method Uppy uses,
/// the URL and the headers the route returned, and a body.
async fn send(
    app: &TestApp,
    method: &str,
    signed: &Value,
    body: Vec<u8>,
) -> (u16, reqwest::header::HeaderMap, String) {
    let mut req = app
        .http
        .request(method.parse().unwrap(), signed["url"].as_str().unwrap())
        .body(body);
    for (name, value) in signed["headers"].as_object().unwrap() {
        req = req.header(name, value.as_str().unwrap());
    }
    let resp = req.send().await.expect("S3 answers");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    (status, headers, resp.text().await.unwrap())
}

fn xml_field<'a>(xml: &'a str, tag: &str) -> &'a str {
    let open = format!("<{tag}>");
    let start = xml
        .find(&open)
        .unwrap_or_else(|| panic!("no {tag} in {xml}"))
        + open.len();
    let end = start + xml[start..].find("</").unwrap();
    &xml[start..end]
}

/// Creates the client's own multipart upload of `key`; its UploadId.
async fn create_own_upload(app: &TestApp, user: &str, key: &str) -> String {
    let signed = sign(app, user, json!({"method": "POST", "key": key})).await;
    assert_eq!(signed["key"], key);
    let (status, _, xml) = send(app, "POST", &signed, Vec::new()).await;
    assert_eq!(status, 200, "{xml}");
    xml_field(&xml, "UploadId").to_owned()
}

async fn upload_part(
    app: &TestApp,
    user: &str,
    key: &str,
    upload: &str,
    n: usize,
    bytes: &[u8],
) -> String {
    let signed = sign(
        app,
        user,
        json!({"method": "PUT", "key": key, "uploadId": upload, "partNumber": n}),
    )
    .await;
    let chunk = bytes[(n - 1) * 5 * MIB..(n * 5 * MIB).min(bytes.len())].to_vec();
    let (status, headers, text) = send(app, "PUT", &signed, chunk).await;
    assert_eq!(status, 200, "part {n}: {text}");
    headers["etag"].to_str().unwrap().to_owned()
}

fn complete_xml(etags: &[String]) -> Vec<u8> {
    let parts: String = etags
        .iter()
        .enumerate()
        .map(|(i, e)| {
            format!(
                "<Part><PartNumber>{}</PartNumber><ETag>{e}</ETag></Part>",
                i + 1
            )
        })
        .collect();
    format!("<CompleteMultipartUpload>{parts}</CompleteMultipartUpload>").into_bytes()
}

async fn upload_exists(app: &TestApp, key: &str, upload: &str) -> bool {
    app.s3
        .list_parts()
        .bucket(&app.bucket)
        .key(key)
        .upload_id(upload)
        .send()
        .await
        .is_ok()
}

#[tokio::test]
async fn a_signing_client_uploads_through_its_own_upload_and_the_post_is_published() {
    let app = spawn_app().await;
    let bytes = noise_png(2400, 1000);
    assert!(bytes.len() > 5 * MIB && bytes.len() <= 10 * MIB);
    let created = app.create_post("alice", "image/png", bytes.len()).await;
    let id = created["post"]["id"].as_str().unwrap();
    let key = created["upload"]["key"].as_str().unwrap();
    assert_eq!(key, format!("originals/{id}"));
    let servers = created["upload"]["upload_id"].as_str().unwrap().to_owned();

    let own = create_own_upload(&app, "alice", key).await;
    assert_ne!(own, servers);
    // The create signed the post's type and declared size.
    let signed = sign(&app, "alice", json!({"method": "POST", "key": key})).await;
    assert_eq!(signed["headers"]["content-type"], "image/png");
    assert_eq!(
        signed["headers"]["x-amz-meta-declared-size"],
        bytes.len().to_string()
    );

    let etag1 = upload_part(&app, "alice", key, &own, 1, &bytes).await;
    // The first request naming the client's upload made it the post's; the
    // server's is gone, so the two do not both linger.
    assert_eq!(app.post_upload_id(id).await.as_deref(), Some(own.as_str()));
    assert!(!upload_exists(&app, key, &servers).await);
    // The native resume route sees the client's upload.
    let state = app.get(&format!("/posts/{id}/upload"), "alice").await;
    assert_eq!(state.body["upload_id"], own.as_str());

    // Completing before every part is there is refused at signing.
    let early = sign_reply(
        &app,
        "alice",
        json!({"method": "POST", "key": key, "uploadId": own}),
    )
    .await;
    assert_eq!(
        (early.status, early.error_code()),
        (409, "conflict"),
        "{:?}",
        early.body
    );
    assert!(
        early.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("part 2 of 2")
    );

    let etag2 = upload_part(&app, "alice", key, &own, 2, &bytes).await;
    let listed = sign(
        &app,
        "alice",
        json!({"method": "GET", "key": key, "uploadId": own}),
    )
    .await;
    let (status, _, xml) = send(&app, "GET", &listed, Vec::new()).await;
    assert_eq!(status, 200, "{xml}");
    assert_eq!(xml.matches("<PartNumber>").count(), 2, "{xml}");

    let complete = sign(
        &app,
        "alice",
        json!({"method": "POST", "key": key, "uploadId": own}),
    )
    .await;
    let (status, _, xml) = send(&app, "POST", &complete, complete_xml(&[etag1, etag2])).await;
    assert_eq!(status, 200, "{xml}");

    let done = app.wait_until_final(id, "alice").await;
    assert_eq!(done["status"], "published", "{done}");
    assert_eq!(app.fetch_image(&done).await.dimensions(), (600, 600));
    let original = app
        .s3
        .get_object()
        .bucket(&app.bucket)
        .key(key)
        .send()
        .await
        .unwrap();
    assert_eq!(original.body.collect().await.unwrap().into_bytes(), bytes);
    // Published: nothing more is signed for it.
    let after = sign_reply(&app, "alice", json!({"method": "POST", "key": key})).await;
    assert_eq!((after.status, after.error_code()), (409, "conflict"));
    assert_eq!(after.body["error"]["reason"], "wrong_state");
}

#[tokio::test]
async fn only_the_multipart_requests_of_the_callers_own_open_upload_are_signed() {
    let app = spawn_app().await;
    let created = app.create_post("alice", "image/png", 12 * MIB).await;
    let id = created["post"]["id"].as_str().unwrap();
    let key = created["upload"]["key"].as_str().unwrap();
    let servers = created["upload"]["upload_id"].as_str().unwrap();

    let refused = |status: u16, code: &'static str| {
        move |r: &Reply| (r.status, r.error_code()) == (status, code)
    };
    type Case<'a> = (Value, &'a str, Box<dyn Fn(&Reply) -> bool>);
    let cases: Vec<Case> = vec![
        // Another user's post.
        (
            json!({"method": "POST", "key": key}),
            "bob",
            Box::new(refused(403, "forbidden")),
        ),
        // Not a post's original.
        (
            json!({"method": "POST", "key": "converted/x.jpg"}),
            "alice",
            Box::new(refused(403, "forbidden")),
        ),
        (
            json!({"method": "POST", "key": format!("{key}/../x")}),
            "alice",
            Box::new(refused(403, "forbidden")),
        ),
        // No such post.
        (
            json!({"method": "POST", "key": "originals/0194f7a0c1d27b3e8a5b6c7d8e9f0a1b"}),
            "alice",
            Box::new(refused(404, "not_found")),
        ),
        // A single PUT of the whole object, or a DELETE of it.
        (
            json!({"method": "PUT", "key": key}),
            "alice",
            Box::new(refused(403, "forbidden")),
        ),
        (
            json!({"method": "DELETE", "key": key}),
            "alice",
            Box::new(refused(403, "forbidden")),
        ),
        // Malformed.
        (
            json!({"method": "PATCH", "key": key}),
            "alice",
            Box::new(refused(400, "invalid_request")),
        ),
        (
            json!({"key": key}),
            "alice",
            Box::new(refused(400, "invalid_request")),
        ),
        (
            json!({"method": "POST"}),
            "alice",
            Box::new(refused(400, "invalid_request")),
        ),
        (
            json!({"method": "POST", "key": key, "partNumber": 1}),
            "alice",
            Box::new(refused(400, "invalid_request")),
        ),
        (
            json!({"method": "PUT", "key": key, "uploadId": servers}),
            "alice",
            Box::new(refused(400, "invalid_request")),
        ),
        (
            json!({"method": "PUT", "key": key, "uploadId": servers, "partNumber": 0}),
            "alice",
            Box::new(refused(400, "invalid_request")),
        ),
        (
            json!({"method": "PUT", "key": key, "uploadId": servers, "partNumber": 10001}),
            "alice",
            Box::new(refused(400, "invalid_request")),
        ),
        (
            json!({"method": "PUT", "key": key, "uploadId": servers, "partNumber": "1"}),
            "alice",
            Box::new(refused(400, "invalid_request")),
        ),
        (
            json!({"method": "GET", "key": key, "uploadId": ""}),
            "alice",
            Box::new(refused(400, "invalid_request")),
        ),
        (
            json!({"method": "GET", "key": key, "uploadId": "x".repeat(1025)}),
            "alice",
            Box::new(refused(400, "invalid_request")),
        ),
        (
            json!({"method": "GET", "key": key, "uploadId": "a\nb"}),
            "alice",
            Box::new(refused(400, "invalid_request")),
        ),
        // Past the part count: 12 MiB is three parts of 5 MiB.
        (
            json!({"method": "PUT", "key": key, "uploadId": servers, "partNumber": 4}),
            "alice",
            Box::new(refused(400, "invalid_request")),
        ),
        // An upload S3 does not hold under this key.
        (
            json!({"method": "PUT", "key": key, "uploadId": "no-such-upload", "partNumber": 1}),
            "alice",
            Box::new(refused(409, "conflict")),
        ),
        // Nothing uploaded yet: nothing to complete.
        (
            json!({"method": "POST", "key": key, "uploadId": servers}),
            "alice",
            Box::new(refused(409, "conflict")),
        ),
    ];
    for (request, user, ok) in cases {
        let r = sign_reply(&app, user, request.clone()).await;
        assert!(ok(&r), "{user} {request}: {} {:?}", r.status, r.body);
    }
    for body in ["", "[]", "nope", r#"{"method": 1, "key": "k"}"#] {
        let r = app
            .call("POST", "/uploads/sign", Some("alice"), Some(body))
            .await;
        assert_eq!(
            (r.status, r.error_code()),
            (400, "invalid_request"),
            "{body}"
        );
    }
    // Nothing above changed the post's upload.
    assert_eq!(app.post_upload_id(id).await.as_deref(), Some(servers));

    // Past its deadline: 409, as the native upload routes answer.
    app.expire_upload(id).await;
    let r = sign_reply(&app, "alice", json!({"method": "POST", "key": key})).await;
    assert_eq!((r.status, r.error_code()), (409, "conflict"));
    assert!(
        r.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("expired")
    );
}

#[tokio::test]
async fn an_upload_completed_on_s3_with_a_part_left_out_ends_failed_with_the_sizes() {
    let app = spawn_app().await;
    let bytes = noise_png(2400, 1000);
    let created = app.create_post("alice", "image/png", bytes.len()).await;
    let id = created["post"]["id"].as_str().unwrap();
    let key = created["upload"]["key"].as_str().unwrap();
    let own = create_own_upload(&app, "alice", key).await;
    let etag1 = upload_part(&app, "alice", key, &own, 1, &bytes).await;
    // The route will not sign this complete; a client can still send S3
    // a list of its own through a complete it had signed earlier (here,
    // the SDK with the test's own credentials stands in for that).
    use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
    app.s3
        .complete_multipart_upload()
        .bucket(&app.bucket)
        .key(key)
        .upload_id(&own)
        .multipart_upload(
            CompletedMultipartUpload::builder()
                .parts(CompletedPart::builder().part_number(1).e_tag(etag1).build())
                .build(),
        )
        .send()
        .await
        .unwrap();
    let done = app.wait_until_final(id, "alice").await;
    assert_eq!(done["status"], "failed", "{done}");
    let reason = done["failure_reason"].as_str().unwrap();
    assert!(
        reason.contains(&format!("{} bytes", 5 * MIB))
            && reason.contains(&format!("declared {}", bytes.len())),
        "{reason}"
    );
}

#[tokio::test]
async fn a_retried_create_leaves_one_upload_and_an_abort_is_signed_for_any_of_the_posts() {
    let app = spawn_app().await;
    let bytes = noise_png(2400, 1000);
    let created = app.create_post("alice", "image/png", bytes.len()).await;
    let id = created["post"]["id"].as_str().unwrap();
    let key = created["upload"]["key"].as_str().unwrap();
    // A create whose answer was lost, then the retry the client used.
    let lost = create_own_upload(&app, "alice", key).await;
    let used = create_own_upload(&app, "alice", key).await;
    upload_part(&app, "alice", key, &used, 1, &bytes).await;
    assert_eq!(app.post_upload_id(id).await.as_deref(), Some(used.as_str()));
    // The lost one is the client's to abort (Uppy aborts what it gives
    // up); the route signs an abort of any upload under the post's key.
    let abort = sign(
        &app,
        "alice",
        json!({"method": "DELETE", "key": key, "uploadId": lost}),
    )
    .await;
    let (status, _, text) = send(&app, "DELETE", &abort, Vec::new()).await;
    assert_eq!(status, 204, "{text}");
    assert!(!upload_exists(&app, key, &lost).await);
    assert!(upload_exists(&app, key, &used).await);
    // A part of the used upload signed again: still the post's, no change.
    upload_part(&app, "alice", key, &used, 1, &bytes).await;
    assert_eq!(app.post_upload_id(id).await.as_deref(), Some(used.as_str()));
}
