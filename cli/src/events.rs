//! Waiting for a post's outcome over the notifications WebSocket (the
//! contract's section 7), with polling as the fallback.
//!
//! The socket is opened before `complete` (`POST /events/ticket`, then the
//! ticket's URL); after `complete` the post is read once, and then the
//! socket says when it turns `published` or `failed`. If the socket cannot
//! be opened, or drops and cannot be opened again, the wait goes on by
//! polling `GET /posts/{id}` with backoff, and says so on stderr.

use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;

use crate::Failure;
use crate::api::Api;

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Longest wait for a post's outcome.
const WAIT: Duration = Duration::from_secs(600);
/// A ping this often keeps the connection from API Gateway's 10-minute
/// idle close.
const KEEPALIVE: Duration = Duration::from_secs(240);

/// An open notifications connection, or why there is none.
pub struct Listener(Result<Socket, String>);

impl Listener {
    /// Opens the caller's notifications connection; never fails (a
    /// failure means polling later).
    pub async fn open(api: &Api) -> Self {
        Listener(connect(api).await)
    }
}

async fn connect(api: &Api) -> Result<Socket, String> {
    let ticket = api
        .expect(reqwest::Method::POST, "/events/ticket", None, None)
        .await
        .map_err(|e| e.message().to_owned())?;
    let url = ticket["url"]
        .as_str()
        .ok_or("the ticket answer has no url")?;
    let (ws, _) = tokio::time::timeout(
        Duration::from_secs(10),
        tokio_tungstenite::connect_async(url),
    )
    .await
    .map_err(|_| "no handshake within 10 s".to_owned())?
    .map_err(|e| e.to_string())?;
    crate::verbose("notifications connection open");
    Ok(ws)
}

/// Waits until `post_id` is `published` or `failed`: one read, then the
/// socket's messages; polling when there is no socket.
pub async fn wait_until_final(
    api: &Api,
    post_id: &str,
    listener: Listener,
) -> Result<Value, Failure> {
    let deadline = Instant::now() + WAIT;
    let mut socket = match listener.0 {
        Ok(ws) => Some(ws),
        Err(why) => {
            crate::info(&format!(
                "notifications unavailable ({why}); polling for the outcome instead"
            ));
            None
        }
    };
    let mut reconnected = false;
    loop {
        // The read after (re)connecting: what happened before the socket
        // opened is not replayed.
        let post = read(api, post_id).await?;
        if is_final(&post) {
            return Ok(post);
        }
        let Some(ws) = socket.as_mut() else {
            return poll(api, post_id, deadline).await;
        };
        match listen(ws, post_id, deadline).await {
            Heard::Post(p) => return Ok(p),
            Heard::Removed => {
                return Err(Failure::unexpected(format!(
                    "post {post_id} was removed: its upload expired before it completed"
                )));
            }
            Heard::Timeout => return Err(too_long(post_id, &post)),
            Heard::Dropped(why) if !reconnected => {
                reconnected = true;
                crate::info(&format!(
                    "the notifications connection dropped ({why}); opening it again"
                ));
                socket = match connect(api).await {
                    Ok(ws) => Some(ws),
                    Err(why) => {
                        crate::info(&format!(
                            "notifications unavailable ({why}); polling for the outcome instead"
                        ));
                        None
                    }
                };
            }
            Heard::Dropped(why) => {
                crate::info(&format!(
                    "the notifications connection dropped again ({why}); polling for the outcome instead"
                ));
                socket = None;
            }
        }
    }
}

enum Heard {
    Post(Value),
    Removed,
    Timeout,
    Dropped(String),
}

async fn listen(ws: &mut Socket, post_id: &str, deadline: Instant) -> Heard {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Heard::Timeout;
        }
        let next = match tokio::time::timeout(left.min(KEEPALIVE), ws.next()).await {
            Err(_) if left > KEEPALIVE => {
                if let Err(e) = ws.send(Message::text(r#"{"type":"ping"}"#)).await {
                    return Heard::Dropped(e.to_string());
                }
                continue;
            }
            Err(_) => return Heard::Timeout,
            Ok(next) => next,
        };
        let text = match next {
            Some(Ok(Message::Text(t))) => t,
            Some(Ok(Message::Close(frame))) => {
                return Heard::Dropped(
                    frame
                        .map(|f| format!("closed {}: {}", u16::from(f.code), f.reason))
                        .unwrap_or_else(|| "closed".into()),
                );
            }
            Some(Ok(_)) => continue,
            Some(Err(e)) => return Heard::Dropped(e.to_string()),
            None => return Heard::Dropped("the connection ended".into()),
        };
        let Ok(m) = serde_json::from_str::<Value>(&text) else {
            continue;
        };
        match m["type"].as_str() {
            Some("post") if m["post"]["id"] == post_id && is_final(&m["post"]) => {
                crate::verbose("told over the notifications connection");
                return Heard::Post(m["post"].clone());
            }
            Some("post_removed") if m["id"] == post_id => return Heard::Removed,
            // Another post's news, a pong.
            _ => {}
        }
    }
}

/// Polls the post until it is final, with backoff (250 ms doubling to 3 s).
async fn poll(api: &Api, post_id: &str, deadline: Instant) -> Result<Value, Failure> {
    let mut pause = Duration::from_millis(250);
    loop {
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(3));
        let post = read(api, post_id).await?;
        if is_final(&post) {
            return Ok(post);
        }
        if Instant::now() > deadline {
            return Err(too_long(post_id, &post));
        }
    }
}

async fn read(api: &Api, post_id: &str) -> Result<Value, Failure> {
    api.expect(
        reqwest::Method::GET,
        &format!("/posts/{post_id}"),
        None,
        None,
    )
    .await
}

fn is_final(post: &Value) -> bool {
    matches!(post["status"].as_str(), Some("published" | "failed"))
}

fn too_long(post_id: &str, post: &Value) -> Failure {
    Failure::unexpected(format!(
        "post {post_id} is still {} after 10 minutes; `imagegram show {post_id}` later",
        post["status"]
    ))
}
