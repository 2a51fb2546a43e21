//! The local WebSocket API of notifications (contract section 7): what API
//! Gateway's WebSocket API and its `@connections` management API do, at
//! the gateway's `/events`.
//!
//! - `GET /events?ticket=...` with a WebSocket handshake: the `$connect`
//!   event (API Gateway's shape) goes to the same handler the
//!   EventsFunction runs; 200 upgrades the connection, anything else is the
//!   handshake's answer. Each text message is a `$default` event whose
//!   answer is sent back (the route response); the end of the connection
//!   is a `$disconnect` event.
//! - `POST /events/@connections/{id}` (what the finalizer's and the
//!   sweeper's SDK clients call, held to their template policies by the
//!   IAM guard before they leave): the data as one text message; 410
//!   `GoneException` for a connection that is not open; 413 past 128 KiB.
//!   `GET` describes a connection, `DELETE` closes it.
//!
//! API Gateway's limits are kept: a connection idle for 10 minutes, or
//! open for 2 hours, is closed (1001, "Going away"); client frames over
//! 32 KiB and messages over 128 KiB close it (1009). Tests shorten the two
//! durations (`Hub::set_limits`).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_lambda_events::apigw::{ApiGatewayProxyResponse, ApiGatewayWebsocketProxyRequest};
use base64::Engine as _;
use futures::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Message, handshake::derive_accept_key};

/// The stage's path, as in AWS (`wss://{api}.execute-api.../events`).
pub const STAGE: &str = "events";
/// API Gateway's limits on WebSocket messages.
pub const MAX_MESSAGE: usize = 128 * 1024;
pub const MAX_FRAME: usize = 32 * 1024;

/// The handler the EventsFunction runs, as the gateway calls it.
pub type Handler = Arc<
    dyn Fn(
            ApiGatewayWebsocketProxyRequest,
        ) -> Pin<Box<dyn Future<Output = ApiGatewayProxyResponse> + Send>>
        + Send
        + Sync,
>;

/// How long API Gateway keeps a connection.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Closed after this long without a message either way (10 minutes).
    pub idle: Duration,
    /// Closed this long after it opened, whatever happens (2 hours).
    pub lifetime: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            idle: Duration::from_secs(600),
            lifetime: Duration::from_secs(2 * 3600),
        }
    }
}

enum Out {
    Text(String),
    Close,
}

struct Open {
    tx: mpsc::UnboundedSender<Out>,
    connected_at: time::OffsetDateTime,
    source_ip: String,
}

/// The open connections and the handler behind them.
pub struct Hub {
    handler: Handler,
    limits: Mutex<Limits>,
    open: Mutex<HashMap<String, Open>>,
}

type Response = hyper::Response<Full<Bytes>>;

impl Hub {
    /// A hub in front of `events` (the EventsFunction's handlers).
    pub fn for_events<L: imagegram::store::Listeners>(
        events: Arc<imagegram::events::Events<L>>,
        limits: Limits,
    ) -> Arc<Self> {
        Hub::new(
            Arc::new(move |e| {
                let events = Arc::clone(&events);
                Box::pin(async move { events.handle(e).await })
            }),
            limits,
        )
    }

    pub fn new(handler: Handler, limits: Limits) -> Arc<Self> {
        Arc::new(Hub {
            handler,
            limits: Mutex::new(limits),
            open: Mutex::default(),
        })
    }

    /// Limits for the connections opened from now on (tests shorten them).
    pub fn set_limits(&self, limits: Limits) {
        *self.limits.lock().expect("hub lock") = limits;
    }

    /// Connections open now.
    pub fn open_connections(&self) -> usize {
        self.open.lock().expect("hub lock").len()
    }

    /// Closes every open connection (1000), as `DELETE @connections/{id}`
    /// does one: a test's network drop.
    pub fn close_all(&self) {
        for conn in self.open.lock().expect("hub lock").values() {
            let _ = conn.tx.send(Out::Close);
        }
    }

    /// Whether the request is the Hub's: the stage's endpoint or its
    /// management API.
    pub fn serves(path: &str) -> bool {
        path == "/events" || path.starts_with("/events/@connections/")
    }

    pub async fn answer(
        self: &Arc<Self>,
        req: hyper::Request<Incoming>,
        peer: SocketAddr,
    ) -> Response {
        if req.uri().path() == "/events" {
            self.connect(req, peer).await
        } else {
            self.manage(req).await
        }
    }

    async fn connect(
        self: &Arc<Self>,
        mut req: hyper::Request<Incoming>,
        peer: SocketAddr,
    ) -> Response {
        let header = |name: &str| {
            req.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned()
        };
        let is_upgrade = req.method() == http::Method::GET
            && header("upgrade").eq_ignore_ascii_case("websocket")
            && header("connection")
                .split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
            && header("sec-websocket-version") == "13"
            && !header("sec-websocket-key").is_empty();
        if !is_upgrade {
            return plain(
                426,
                json!({ "message": "Upgrade Required: this is a WebSocket endpoint" }),
            );
        }
        let connection_id = connection_id();
        let now = time::OffsetDateTime::now_utc();
        let mut event = base_event_from(
            req.headers(),
            &connection_id,
            "$connect",
            "CONNECT",
            peer,
            now,
        );
        let query: HashMap<String, Vec<String>> = req
            .uri()
            .query()
            .map(|q| {
                let mut m: HashMap<String, Vec<String>> = HashMap::new();
                for (k, v) in form_urlencoded::parse(q.as_bytes()) {
                    m.entry(k.into_owned()).or_default().push(v.into_owned());
                }
                m
            })
            .unwrap_or_default();
        if !query.is_empty() {
            let single: HashMap<&String, &String> = query
                .iter()
                .map(|(k, v)| (k, v.last().expect("one at least")))
                .collect();
            event["queryStringParameters"] = json!(single);
            event["multiValueQueryStringParameters"] = json!(query);
        }
        let answer = self.call(event).await;
        if answer.status_code != 200 {
            // The handshake's answer: the status the handler chose.
            let mut resp = hyper::Response::new(Full::new(Bytes::from(body_text(&answer))));
            *resp.status_mut() = http::StatusCode::from_u16(answer.status_code as u16)
                .unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
            for (k, v) in &answer.headers {
                resp.headers_mut().insert(k, v.clone());
            }
            return resp;
        }
        let accept = derive_accept_key(header("sec-websocket-key").as_bytes());
        let upgrade = hyper::upgrade::on(&mut req);
        let headers = req.headers().clone();
        let hub = Arc::clone(self);
        tokio::spawn(async move {
            match upgrade.await {
                Ok(io) => {
                    let config = WebSocketConfig::default()
                        .max_message_size(Some(MAX_MESSAGE))
                        .max_frame_size(Some(MAX_FRAME));
                    let ws = WebSocketStream::from_raw_socket(
                        TokioIo::new(io),
                        Role::Server,
                        Some(config),
                    )
                    .await;
                    hub.run(ws, connection_id, headers, peer, now).await;
                }
                Err(e) => {
                    tracing::info!(error = %e, "WebSocket upgrade failed");
                    hub.disconnected(&connection_id, &headers, peer, now, 1006, "upgrade failed")
                        .await;
                }
            }
        });
        hyper::Response::builder()
            .status(http::StatusCode::SWITCHING_PROTOCOLS)
            .header(http::header::UPGRADE, "websocket")
            .header(http::header::CONNECTION, "Upgrade")
            .header("sec-websocket-accept", accept)
            .body(Full::new(Bytes::new()))
            .expect("a static response")
    }

    async fn run(
        &self,
        mut ws: WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>,
        id: String,
        headers: http::HeaderMap,
        peer: SocketAddr,
        connected_at: time::OffsetDateTime,
    ) {
        let (tx, mut rx) = mpsc::unbounded_channel();
        self.open.lock().expect("hub lock").insert(
            id.clone(),
            Open {
                tx,
                connected_at,
                source_ip: peer.ip().to_string(),
            },
        );
        let limits = *self.limits.lock().expect("hub lock");
        let lifetime = tokio::time::sleep(limits.lifetime);
        tokio::pin!(lifetime);
        let idle = tokio::time::sleep(limits.idle);
        tokio::pin!(idle);
        let (code, reason): (u16, &str) = loop {
            tokio::select! {
                incoming = ws.next() => match incoming {
                    Some(Ok(Message::Text(text))) => {
                        idle.as_mut().reset(tokio::time::Instant::now() + limits.idle);
                        let mut event = base_event_from(&headers, &id, "$default", "MESSAGE", peer, connected_at);
                        event["body"] = json!(text.as_str());
                        event["requestContext"]["messageId"] = json!(uuid::Uuid::new_v4().simple().to_string());
                        let answer = self.call(event).await;
                        if let Some(body) = answer.body.as_ref().map(|_| body_text(&answer))
                            && ws.send(Message::text(body)).await.is_err()
                        {
                            break (1006, "send failed");
                        }
                    }
                    Some(Ok(Message::Binary(b))) => {
                        idle.as_mut().reset(tokio::time::Instant::now() + limits.idle);
                        let mut event = base_event_from(&headers, &id, "$default", "MESSAGE", peer, connected_at);
                        event["body"] = json!(base64::engine::general_purpose::STANDARD.encode(&b));
                        event["isBase64Encoded"] = json!(true);
                        let answer = self.call(event).await;
                        if answer.body.is_some() && ws.send(Message::text(body_text(&answer))).await.is_err() {
                            break (1006, "send failed");
                        }
                    }
                    Some(Ok(Message::Close(frame))) => {
                        break (frame.map(|f| u16::from(f.code)).unwrap_or(1005), "Client closed");
                    }
                    Some(Ok(_)) => {
                        // Ping and pong frames: tungstenite answers pings.
                        idle.as_mut().reset(tokio::time::Instant::now() + limits.idle);
                    }
                    Some(Err(e)) => {
                        tracing::info!(connection_id = %id, error = %e, "connection failed");
                        let _ = ws.close(Some(CloseFrame { code: CloseCode::Size, reason: "Message too big".into() })).await;
                        break (1009, "Message too big");
                    }
                    None => break (1006, "Connection lost"),
                },
                out = rx.recv() => match out {
                    Some(Out::Text(text)) => {
                        idle.as_mut().reset(tokio::time::Instant::now() + limits.idle);
                        if ws.send(Message::text(text)).await.is_err() {
                            break (1006, "send failed");
                        }
                    }
                    Some(Out::Close) | None => {
                        let _ = ws.close(Some(CloseFrame { code: CloseCode::Normal, reason: "".into() })).await;
                        break (1000, "Closed by the management API");
                    }
                },
                () = &mut idle => {
                    let _ = ws.close(Some(CloseFrame { code: CloseCode::Away, reason: "Going away".into() })).await;
                    break (1001, "Going away: idle timeout");
                }
                () = &mut lifetime => {
                    let _ = ws.close(Some(CloseFrame { code: CloseCode::Away, reason: "Going away".into() })).await;
                    break (1001, "Going away: maximum connection duration");
                }
            }
        };
        self.open.lock().expect("hub lock").remove(&id);
        self.disconnected(&id, &headers, peer, connected_at, code, reason)
            .await;
    }

    async fn disconnected(
        &self,
        id: &str,
        headers: &http::HeaderMap,
        peer: SocketAddr,
        connected_at: time::OffsetDateTime,
        code: u16,
        reason: &str,
    ) {
        let mut event =
            base_event_from(headers, id, "$disconnect", "DISCONNECT", peer, connected_at);
        event["requestContext"]["disconnectStatusCode"] = json!(code);
        event["requestContext"]["disconnectReason"] = json!(reason);
        self.call(event).await;
    }

    async fn call(&self, event: Value) -> ApiGatewayProxyResponse {
        match serde_json::from_value::<ApiGatewayWebsocketProxyRequest>(event) {
            Ok(e) => (self.handler)(e).await,
            Err(e) => {
                tracing::error!(error = %e, "built a WebSocket event the handler cannot read");
                let mut r = ApiGatewayProxyResponse::default();
                r.status_code = 500;
                r
            }
        }
    }

    /// `@connections/{id}`: API Gateway's management API.
    async fn manage(&self, req: hyper::Request<Incoming>) -> Response {
        let signed = req
            .headers()
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("AWS4-HMAC-SHA256 "));
        if !signed {
            return error(403, "ForbiddenException", "Missing Authentication Token");
        }
        let id = req
            .uri()
            .path()
            .trim_start_matches("/events/@connections/")
            .to_owned();
        let id = percent_encoding::percent_decode_str(&id)
            .decode_utf8_lossy()
            .into_owned();
        let method = req.method().clone();
        let body = match Limited::new(req.into_body(), MAX_MESSAGE).collect().await {
            Ok(b) => b.to_bytes(),
            Err(_) => {
                return error(
                    413,
                    "PayloadTooLargeException",
                    "Message too long; the limit is 128 KiB",
                );
            }
        };
        let open = self.open.lock().expect("hub lock");
        let Some(conn) = open.get(&id) else {
            return error(410, "GoneException", "");
        };
        match method {
            http::Method::POST => {
                let Ok(text) = String::from_utf8(body.to_vec()) else {
                    return error(400, "BadRequestException", "the data must be UTF-8 text");
                };
                if conn.tx.send(Out::Text(text)).is_err() {
                    return error(410, "GoneException", "");
                }
                plain(200, Value::Null)
            }
            http::Method::GET => plain(
                200,
                json!({
                    "connectedAt": conn.connected_at.format(&time::format_description::well_known::Rfc3339).unwrap_or_default(),
                    "identity": { "sourceIp": conn.source_ip },
                    "lastActiveAt": time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339).unwrap_or_default(),
                }),
            ),
            http::Method::DELETE => {
                let _ = conn.tx.send(Out::Close);
                let mut r = plain(204, Value::Null);
                *r.body_mut() = Full::new(Bytes::new());
                r
            }
            _ => error(404, "NotFoundException", "no such operation"),
        }
    }
}

/// A connection id as API Gateway makes them: 16 characters of base64.
fn connection_id() -> String {
    base64::engine::general_purpose::STANDARD.encode(&uuid::Uuid::new_v4().as_bytes()[..11])
}

/// The event API Gateway sends a WebSocket route's Lambda integration.
fn base_event_from(
    headers: &http::HeaderMap,
    id: &str,
    route: &str,
    kind: &str,
    peer: SocketAddr,
    connected_at: time::OffsetDateTime,
) -> Value {
    let now = time::OffsetDateTime::now_utc();
    let mut single: HashMap<String, String> = HashMap::new();
    let mut multi: HashMap<String, Vec<String>> = HashMap::new();
    for (k, v) in headers {
        let v = String::from_utf8_lossy(v.as_bytes()).into_owned();
        // API Gateway keeps the client's header names; lowercase here.
        single.insert(k.as_str().to_owned(), v.clone());
        multi.entry(k.as_str().to_owned()).or_default().push(v);
    }
    let host = single
        .get("host")
        .cloned()
        .unwrap_or_else(|| "127.0.0.1".into());
    let ms = |t: time::OffsetDateTime| t.unix_timestamp() * 1000 + i64::from(t.millisecond());
    let mut event = json!({
        "requestContext": {
            "routeKey": route,
            "eventType": kind,
            "extendedRequestId": uuid::Uuid::new_v4().simple().to_string(),
            "requestTime": now.format(&time::format_description::well_known::Rfc2822).unwrap_or_default(),
            "messageDirection": "IN",
            "stage": STAGE,
            "connectedAt": ms(connected_at),
            "requestTimeEpoch": ms(now),
            "identity": {
                "sourceIp": peer.ip().to_string(),
                "userAgent": single.get("user-agent").cloned().unwrap_or_default(),
            },
            "requestId": uuid::Uuid::now_v7().simple().to_string(),
            "domainName": host,
            "connectionId": id,
            "apiId": crate::stack::EVENTS_API_ID,
        },
        "isBase64Encoded": false,
    });
    // $default messages carry no headers in AWS; $connect and $disconnect do.
    if route != "$default" {
        event["headers"] = json!(single);
        event["multiValueHeaders"] = json!(multi);
    }
    event
}

fn body_text(r: &ApiGatewayProxyResponse) -> String {
    match &r.body {
        Some(aws_lambda_events::encodings::Body::Text(t)) => t.clone(),
        Some(aws_lambda_events::encodings::Body::Binary(b)) => {
            String::from_utf8_lossy(b).into_owned()
        }
        _ => String::new(),
    }
}

fn plain(status: u16, body: Value) -> Response {
    let text = if body.is_null() {
        String::new()
    } else {
        body.to_string()
    };
    let mut resp = hyper::Response::new(Full::new(Bytes::from(text)));
    *resp.status_mut() = http::StatusCode::from_u16(status).expect("a status");
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    resp
}

/// The management API's error: its type in `x-amzn-ErrorType`, as AWS's
/// REST-JSON services answer.
fn error(status: u16, kind: &'static str, message: &str) -> Response {
    let mut resp = plain(status, json!({ "message": message }));
    resp.headers_mut()
        .insert("x-amzn-errortype", http::HeaderValue::from_static(kind));
    resp
}

#[cfg(test)]
mod tests {
    #[test]
    fn connection_ids_look_like_api_gateways() {
        let id = super::connection_id();
        assert_eq!(id.len(), 16);
        assert!(id.ends_with('='));
        assert_ne!(id, super::connection_id());
    }
}
