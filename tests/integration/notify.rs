//! Notifications (contract section 7) end to end on the local stack: the
//! ticket route, the gateway's WebSocket endpoint running the
//! EventsFunction's handlers, and the finalizer and the sweeper posting to
//! `@connections` through their guarded SDK clients.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use imagegram_tests::images::{bands, encode_rgb};
use imagegram_tests::{TestApp, spawn_app, spawn_app_spec};
use mysql_async::prelude::*;
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

fn jpeg() -> Vec<u8> {
    encode_rgb(
        &bands(64, 48, &[[200, 10, 10], [10, 200, 10]]),
        image::ImageFormat::Jpeg,
    )
}

/// `POST /events/ticket` as `user`: the URL to open.
async fn ticket(app: &TestApp, user: &str) -> String {
    let r = app.call("POST", "/events/ticket", Some(user), None).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let url = r.body["url"].as_str().unwrap().to_owned();
    assert!(
        url.starts_with(&format!(
            "{}/events?ticket=",
            app.base.replace("http", "ws")
        )),
        "{url}"
    );
    url
}

async fn open(url: &str) -> Socket {
    tokio_tungstenite::connect_async(url)
        .await
        .expect("the ticket opens a connection")
        .0
}

/// The status the handshake was refused with.
async fn refused(url: &str) -> u16 {
    match tokio_tungstenite::connect_async(url).await {
        Ok(_) => panic!("{url} opened a connection"),
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => resp.status().as_u16(),
        Err(e) => panic!("{url}: {e}"),
    }
}

/// The next text message, within `within`.
async fn next_message(ws: &mut Socket, within: Duration) -> Option<Value> {
    loop {
        match tokio::time::timeout(within, ws.next()).await {
            Err(_) => return None,
            Ok(Some(Ok(Message::Text(t)))) => return Some(serde_json::from_str(&t).unwrap()),
            Ok(Some(Ok(Message::Close(f)))) => panic!("closed: {f:?}"),
            Ok(Some(Ok(_))) => continue,
            Ok(other) => panic!("connection ended: {other:?}"),
        }
    }
}

/// The message about `post`, skipping others, once it has been sent: the
/// finalizer and the sweeper push within their 1.5 s budget of the commit,
/// so 10 s is ample on a loaded machine, and a push that never comes (its
/// grant taken away, in `scripts/check-grants`) fails in 10 s, not 60.
async fn told(ws: &mut Socket, post: &str) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let left = deadline - tokio::time::Instant::now();
        let m = next_message(ws, left)
            .await
            .unwrap_or_else(|| panic!("no message about {post} within 10 s of its settling"));
        if m["post"]["id"] == post || m["id"] == post {
            return m;
        }
    }
}

/// [`told`], once `user`'s post has left processing (as the API shows it).
async fn told_when_final(app: &TestApp, ws: &mut Socket, user: &str, post: &str) -> Value {
    app.wait_until_final(post, user).await;
    told(ws, post).await
}

async fn ping(ws: &mut Socket) {
    ws.send(Message::text(r#"{"type":"ping"}"#)).await.unwrap();
    let m = next_message(ws, Duration::from_secs(10))
        .await
        .expect("an answer to the ping");
    assert_eq!(m, serde_json::json!({ "type": "pong" }));
}

#[tokio::test]
async fn the_author_is_told_of_publication_and_nobody_else_is() {
    let app = spawn_app().await;
    let mut alice = open(&ticket(&app, "alice").await).await;
    let mut bob = open(&ticket(&app, "bob").await).await;
    let id = app.post_image("alice", "image/jpeg", &jpeg()).await;
    let m = told_when_final(&app, &mut alice, "alice", &id).await;
    assert_eq!(m["type"], "post");
    let pushed = &m["post"];
    assert_eq!(pushed["status"], "published", "{m}");
    // What GET /posts/{id} shows the author, image URL and placeholder included.
    let read = app.get(&format!("/posts/{id}"), "alice").await.body;
    for k in [
        "id",
        "author",
        "caption",
        "status",
        "thumbhash",
        "comment_count",
        "created_at",
    ] {
        assert_eq!(pushed[k], read[k], "{k}");
    }
    imagegram_tests::check_against_spec("GET", &format!("/posts/{id}"), 200, pushed);
    let img = app.fetch_image(pushed).await;
    assert_eq!(img.dimensions(), (600, 600));
    // Bob heard nothing: the first thing on his connection is his pong.
    ping(&mut bob).await;
    // Alice's connection is still open and answers too.
    ping(&mut alice).await;
}

#[tokio::test]
async fn a_failed_post_is_told_with_its_reason() {
    let app = spawn_app().await;
    let mut ws = open(&ticket(&app, "carol").await).await;
    let id = app
        .post_image("carol", "image/png", b"not a picture at all, just words")
        .await;
    let m = told_when_final(&app, &mut ws, "carol", &id).await;
    assert_eq!(m["post"]["status"], "failed", "{m}");
    assert!(
        m["post"]["failure_reason"].as_str().unwrap().len() > 10,
        "{m}"
    );
    assert!(m["post"]["image_url"].is_null());
}

#[tokio::test]
async fn expired_tampered_missing_and_reused_tickets_are_refused() {
    let app = spawn_app().await;
    let url = ticket(&app, "dave").await;
    // Used once: refused ever after, open or closed.
    let mut ws = open(&url).await;
    assert_eq!(refused(&url).await, 401);
    ws.close(None).await.unwrap();
    imagegram_tests::eventually("the gateway sees the close", async || {
        app.gateway.events().unwrap().open_connections() == 0
    })
    .await;
    assert_eq!(
        refused(&url).await,
        401,
        "reused after its connection closed"
    );
    // Tampered: one character of the ticket changed.
    let fresh = ticket(&app, "dave").await;
    let (base, t) = fresh.split_once("ticket=").unwrap();
    let mut chars: Vec<char> = t.chars().collect();
    let i = chars.len() / 2;
    chars[i] = if chars[i] == 'A' { 'B' } else { 'A' };
    let tampered = format!("{base}ticket={}", chars.into_iter().collect::<String>());
    assert_eq!(refused(&tampered).await, 401);
    // The untampered one still opens (the tampered try did not use it).
    drop(open(&fresh).await);
    // Expired: issued with the stack's key 61 s ago.
    let events = &app.app().events;
    let (old, _) = events.tickets.issue(
        &imagegram::domain::UserId::parse("dave").unwrap(),
        time::OffsetDateTime::now_utc() - time::Duration::seconds(61),
    );
    assert_eq!(refused(&format!("{base}ticket={old}")).await, 401);
    // None at all, and a plain GET of the endpoint.
    assert_eq!(refused(base.trim_end_matches('?')).await, 401);
    let plain = app
        .http
        .get(format!("{}/events", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(plain.status().as_u16(), 426);
}

#[tokio::test]
async fn a_client_that_reconnects_reads_the_post_once_and_sees_its_final_state() {
    // The read-after-connect rule: messages are not replayed.
    let app = spawn_app().await;
    let ws = open(&ticket(&app, "erin").await).await;
    // Another of erin's connections, open throughout. The finalizer looks
    // erin's connections up once after its commit and pushes to each; a
    // GET can see the commit before that lookup, and a connection opened
    // then gets the push too (live, not a replay). The witness's message
    // says the lookup is over.
    let mut witness = open(&ticket(&app, "erin").await).await;
    let created = app.create_post("erin", "image/jpeg", jpeg().len()).await;
    let id = created["post"]["id"].as_str().unwrap().to_owned();
    app.upload_all(&created, &jpeg()).await;
    // The connection drops mid-wait.
    drop(ws);
    let r = app
        .call(
            "POST",
            &format!("/posts/{id}/upload/complete"),
            Some("erin"),
            None,
        )
        .await;
    assert_eq!(r.status, 202);
    assert_eq!(
        told_when_final(&app, &mut witness, "erin", &id).await["post"]["status"],
        "published"
    );
    // Reconnect, then read once: the post's final state is there; the
    // connection carries nothing about it (no replay).
    let mut ws = open(&ticket(&app, "erin").await).await;
    let read = app.get(&format!("/posts/{id}"), "erin").await.body;
    assert_eq!(read["status"], "published");
    ping(&mut ws).await;
}

#[tokio::test]
async fn a_gone_connection_is_closed_and_the_post_still_published() {
    let app = spawn_app().await;
    // A connection the database lists but API Gateway no longer holds (its
    // $disconnect was lost): a push answers 410 Gone.
    let store = app.app().store.clone();
    let user = imagegram::domain::UserId::parse("frank").unwrap();
    let recorded = imagegram::store::Listeners::connect(
        &store,
        &imagegram::store::NewConnection {
            connection_id: "Z29uZQAAAAAAAAA=",
            user: &user,
            ticket: *uuid::Uuid::new_v4().as_bytes(),
        },
    )
    .await
    .unwrap();
    assert!(recorded);
    let mut live = open(&ticket(&app, "frank").await).await;
    let id = app.post_image("frank", "image/jpeg", &jpeg()).await;
    assert_eq!(
        told_when_final(&app, &mut live, "frank", &id).await["post"]["status"],
        "published"
    );
    // Closed once every push of the notice answered (the live one may be
    // read first).
    imagegram_tests::eventually("the gone connection is closed", async || {
        let mut conn = app.direct_db.get_conn().await.unwrap();
        let closed: Option<Option<String>> = conn
            .exec_first(
                "SELECT CAST(closed_at AS CHAR) FROM event_connections WHERE connection_id = ?",
                ("Z29uZQAAAAAAAAA=",),
            )
            .await
            .unwrap();
        matches!(closed, Some(Some(_)))
    })
    .await;
    assert!(
        imagegram::store::Listeners::listeners(&store, "frank")
            .await
            .unwrap()
            .iter()
            .all(|c| c != "Z29uZQAAAAAAAAA="),
    );
}

/// A TCP listener that accepts and never answers.
async fn hung_endpoint() -> (
    std::net::SocketAddr,
    tokio::sync::mpsc::UnboundedReceiver<()>,
) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = l.accept().await {
            let _ = tx.send(());
            held.push(s);
        }
    });
    (addr, rx)
}

#[tokio::test]
async fn the_management_endpoint_hung_or_down_never_holds_a_publication() {
    let (hung, mut accepted) = hung_endpoint().await;
    // Nothing listens on port 9.
    for endpoint in [
        format!("http://{hung}/events"),
        "http://127.0.0.1:9/events".to_owned(),
    ] {
        let app = spawn_app_spec(|spec| {
            spec.env.push(("EVENTS_ENDPOINT".into(), endpoint.clone()));
        })
        .await;
        let _ws = open(&ticket(&app, "gina").await).await;
        let started = std::time::Instant::now();
        let id = app.post_image("gina", "image/jpeg", &jpeg()).await;
        let post = app.wait_until_final(&id, "gina").await;
        assert_eq!(post["status"], "published", "{endpoint}");
        // The finalizer's batch ended too (its budget), not at the queue's
        // visibility timeout: nothing is left in the results queue.
        let results = app
            .queues
            .by_logical_id("ResultsQueue")
            .unwrap()
            .url
            .clone();
        imagegram_tests::eventually("the result is consumed", async || {
            app.queue_depth(&results).await == 0
        })
        .await;
        eprintln!(
            "{endpoint}: published and consumed in {:?}",
            started.elapsed()
        );
    }
    assert!(accepted.try_recv().is_ok(), "the hung endpoint was called");
}

#[tokio::test]
async fn the_sweeper_tells_the_author_of_a_removed_upload() {
    let app = spawn_app().await;
    let mut ws = open(&ticket(&app, "hana").await).await;
    let created = app.create_post("hana", "image/jpeg", 1000).await;
    let id = created["post"]["id"].as_str().unwrap().to_owned();
    app.expire_upload(&id).await;
    app.sweeper.run().await.unwrap();
    let m = told(&mut ws, &id).await;
    assert_eq!(m, serde_json::json!({ "type": "post_removed", "id": id }));
}

#[tokio::test]
async fn api_gateways_idle_and_lifetime_limits_close_connections() {
    let app = spawn_app().await;
    let hub = app.gateway.events().unwrap();
    let closed_with = async |ws: &mut Socket| -> (u16, Duration) {
        let started = std::time::Instant::now();
        loop {
            match tokio::time::timeout(Duration::from_secs(30), ws.next())
                .await
                .unwrap()
            {
                Some(Ok(Message::Close(Some(f)))) => return (u16::from(f.code), started.elapsed()),
                Some(Ok(_)) => continue,
                other => panic!("{other:?}"),
            }
        }
    };
    // Idle: no message either way for `idle` (600 s in AWS).
    hub.set_limits(imagegram_local::websocket::Limits {
        idle: Duration::from_millis(700),
        lifetime: Duration::from_secs(3600),
    });
    let mut ws = open(&ticket(&app, "ivan").await).await;
    assert_eq!(closed_with(&mut ws).await.0, 1001);
    // Lifetime: closed at `lifetime` (2 hours in AWS) though it pings.
    hub.set_limits(imagegram_local::websocket::Limits {
        idle: Duration::from_secs(3600),
        lifetime: Duration::from_millis(1500),
    });
    let mut ws = open(&ticket(&app, "ivan").await).await;
    let mut pongs = 0;
    let code = loop {
        ws.send(Message::text(r#"{"type":"ping"}"#)).await.ok();
        match tokio::time::timeout(Duration::from_secs(30), ws.next())
            .await
            .unwrap()
        {
            Some(Ok(Message::Text(_))) => pongs += 1,
            Some(Ok(Message::Close(Some(f)))) => break u16::from(f.code),
            other => panic!("{other:?}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(code, 1001);
    assert!(pongs >= 3, "it was alive until then ({pongs} pongs)");
    // Closed connections are closed in the database too ($disconnect).
    imagegram_tests::eventually("both rows closed", async || {
        imagegram::store::Listeners::listeners(&app.app().store, "ivan")
            .await
            .unwrap()
            .is_empty()
    })
    .await;
}

#[tokio::test]
async fn oversized_messages_are_refused_as_api_gateway_refuses_them() {
    let app = spawn_app().await;
    // From the client: a message over 128 KiB closes the connection (1009).
    let mut ws = open(&ticket(&app, "jack").await).await;
    let big = format!(r#"{{"type":"ping","x":"{}"}}"#, "a".repeat(200 * 1024));
    let _ = ws.send(Message::text(big)).await;
    let code = loop {
        match tokio::time::timeout(Duration::from_secs(30), ws.next())
            .await
            .unwrap()
        {
            Some(Ok(Message::Close(Some(f)))) => break u16::from(f.code),
            Some(Ok(_)) => continue,
            Some(Err(_)) | None => break 1006,
        }
    };
    assert!(code == 1009 || code == 1006, "{code}");
    // Unknown and malformed messages get an error message; the connection stays.
    let mut ws = open(&ticket(&app, "jack").await).await;
    for bad in ["hello", r#"{"type":"subscribe"}"#, "[]"] {
        ws.send(Message::text(bad)).await.unwrap();
        let m = next_message(&mut ws, Duration::from_secs(10))
            .await
            .unwrap();
        assert_eq!(m["type"], "error", "{bad}");
        assert_eq!(m["error"]["code"], "invalid_request");
    }
    ping(&mut ws).await;
    // Through the management API: over 128 KiB is a 413, to a closed
    // connection a 410, both as typed errors of the SDK.
    let sdk = imagegram_tests::sdk_config().await;
    let client = aws_sdk_apigatewaymanagement::Client::from_conf(
        aws_sdk_apigatewaymanagement::config::Builder::from(&sdk)
            .endpoint_url(format!("{}/events", app.base))
            .build(),
    );
    let err = client
        .post_to_connection()
        .connection_id("bm9uZQAAAAAAAAA=")
        .data(aws_sdk_apigatewaymanagement::primitives::Blob::new("{}"))
        .send()
        .await
        .unwrap_err();
    assert!(
        err.as_service_error().unwrap().is_gone_exception(),
        "{err:?}"
    );
    let err = client
        .post_to_connection()
        .connection_id("bm9uZQAAAAAAAAA=")
        .data(aws_sdk_apigatewaymanagement::primitives::Blob::new(
            vec![b'a'; 129 * 1024],
        ))
        .send()
        .await
        .unwrap_err();
    assert!(
        err.as_service_error()
            .unwrap()
            .is_payload_too_large_exception(),
        "{err:?}"
    );
}

/// Known difference: the local `@connections` endpoint requires a SigV4
/// `Authorization` header, as API Gateway does, but does not verify the
/// signature (API Gateway does, then IAM decides). What a caller may do is
/// decided by the IAM guard on the caller's own SDK client instead.
#[tokio::test]
async fn known_difference_the_management_api_wants_a_signature_but_does_not_verify_it() {
    let app = spawn_app().await;
    let mut ws = open(&ticket(&app, "kate").await).await;
    ping(&mut ws).await;
    let ids = imagegram::store::Listeners::listeners(&app.app().store, "kate")
        .await
        .unwrap();
    assert_eq!(ids.len(), 1, "{ids:?}");
    let url = format!(
        "{}/events/@connections/{}",
        app.base,
        percent_encoding::utf8_percent_encode(&ids[0], percent_encoding::NON_ALPHANUMERIC)
    );
    let http = reqwest::Client::new();
    // No signature: API Gateway's 403.
    let r = http
        .post(&url)
        .body(r#"{"type":"x"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(
        r.text().await.unwrap(),
        r#"{"message":"Missing Authentication Token"}"#
    );
    assert!(
        next_message(&mut ws, Duration::from_millis(300))
            .await
            .is_none()
    );
    // A signature nobody could have made: AWS would answer 403; locally it
    // is delivered.
    let r = http
        .post(&url)
        .header(
            "authorization",
            "AWS4-HMAC-SHA256 Credential=AKIDNOBODY/20260101/us-east-1/execute-api/aws4_request, \
             SignedHeaders=host, Signature=00",
        )
        .body(r#"{"type":"forged"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let m = next_message(&mut ws, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(m["type"], "forged");
}

/// Known difference: the events stage's throttle (`DefaultRouteSettings`,
/// `ApiThrottleBurst` by default) is not applied locally; API Gateway
/// would answer messages past the burst with "Too Many Requests".
#[tokio::test]
async fn known_difference_the_websocket_stage_is_not_throttled_locally() {
    let t: serde_norway::Value = serde_norway::from_str(&imagegram_tests::template_text()).unwrap();
    let burst = t["Parameters"]["ApiThrottleBurst"]["Default"]
        .as_u64()
        .unwrap() as usize;
    assert!(
        matches!(
            &t["Resources"]["EventsStage"]["Properties"]["DefaultRouteSettings"]["ThrottlingBurstLimit"],
            serde_norway::Value::Tagged(_)
        ),
        "the stage's burst is the parameter"
    );
    let app = spawn_app().await;
    let mut ws = open(&ticket(&app, "liam").await).await;
    let n = burst + 20;
    for _ in 0..n {
        ws.send(Message::text(r#"{"type":"ping"}"#)).await.unwrap();
    }
    for i in 0..n {
        let m = next_message(&mut ws, Duration::from_secs(30))
            .await
            .unwrap_or_else(|| panic!("no answer to ping {i}"));
        assert_eq!(m, serde_json::json!({ "type": "pong" }), "ping {i} of {n}");
    }
}
