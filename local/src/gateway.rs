//! The local API Gateway: turns each HTTP request into the HTTP API (payload
//! v2) event the deployed function receives, runs the same handler, and
//! writes its response back.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use base64::Engine as _;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use imagegram::api::{self, App, ROUTES, Route};
use imagegram::objects::ObjectStore;
use imagegram::store::Posts;
use serde_json::{Value, json};
use tokio::net::TcpListener;

use crate::auth::DevAuthorizer;

/// API Gateway's payload limit for HTTP APIs.
const MAX_PAYLOAD: usize = 10 * 1024 * 1024;

/// One route of the table: `GET /posts/{id}` split into method and segments.
#[derive(Debug, Clone)]
pub struct RoutePattern {
    pub key: &'static str,
    pub method: &'static str,
    segments: Vec<&'static str>,
}

impl RoutePattern {
    pub fn parse(key: &'static str) -> Self {
        let (method, path) = key.split_once(' ').expect("route keys are 'METHOD /path'");
        RoutePattern {
            key,
            method,
            segments: path.trim_start_matches('/').split('/').collect(),
        }
    }

    /// The path parameters when `path` matches, decoded as API Gateway does.
    pub fn matches(&self, path: &str) -> Option<HashMap<String, String>> {
        let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        if parts.len() != self.segments.len() {
            return None;
        }
        let mut params = HashMap::new();
        for (seg, part) in self.segments.iter().zip(parts) {
            if let Some(name) = seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                if part.is_empty() {
                    return None;
                }
                let value = percent_encoding::percent_decode_str(part)
                    .decode_utf8()
                    .ok()?;
                params.insert(name.to_owned(), value.into_owned());
            } else if *seg != part {
                return None;
            }
        }
        Some(params)
    }
}

pub struct Gateway<S, O> {
    app: App<S, O>,
    auth: DevAuthorizer,
    routes: Vec<RoutePattern>,
    /// The API reference rendered from openapi.yaml, served at /docs: the
    /// local stack's, not an API route (it is a static page in AWS).
    docs: Option<std::path::PathBuf>,
    /// The template's CORS configuration of the HTTP API.
    cors: crate::cors::Cors,
    /// The notifications WebSocket API, at `/events`.
    events: Option<Arc<crate::websocket::Hub>>,
}

impl<S: Posts, O: ObjectStore> Gateway<S, O> {
    pub fn new(app: App<S, O>, auth: DevAuthorizer) -> Self {
        Gateway {
            app,
            auth,
            routes: ROUTES.iter().map(|k| RoutePattern::parse(k)).collect(),
            docs: None,
            cors: Default::default(),
            events: None,
        }
    }

    /// Serves the notifications WebSocket API (and its management API) at
    /// `/events`.
    pub fn with_events(mut self, hub: Arc<crate::websocket::Hub>) -> Self {
        self.events = Some(hub);
        self
    }

    /// The WebSocket API, if served.
    pub fn events(&self) -> Option<&Arc<crate::websocket::Hub>> {
        self.events.as_ref()
    }

    /// Answers preflights and decorates every response as this CORS
    /// configuration (the template's) says.
    pub fn with_cors(mut self, cors: crate::cors::Cors) -> Self {
        self.cors = cors;
        self
    }

    /// Serves the rendered reference at `/docs`.
    pub fn with_docs(mut self, page: std::path::PathBuf) -> Self {
        self.docs = Some(page);
        self
    }

    /// The API the gateway serves.
    pub fn app(&self) -> &App<S, O> {
        &self.app
    }

    /// Serves until the listener fails; one task per connection.
    pub async fn serve(self: Arc<Self>, listener: TcpListener) -> std::io::Result<()> {
        loop {
            let (stream, peer) = listener.accept().await?;
            let _ = stream.set_nodelay(true);
            let gw = Arc::clone(&self);
            tokio::spawn(async move {
                let svc = service_fn(move |req| {
                    let gw = Arc::clone(&gw);
                    async move { Ok::<_, Infallible>(gw.respond(req, peer).await) }
                });
                if let Err(e) = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .with_upgrades()
                    .await
                {
                    tracing::debug!(error = %e, "connection ended");
                }
            });
        }
    }

    async fn respond(
        &self,
        req: hyper::Request<Incoming>,
        peer: SocketAddr,
    ) -> hyper::Response<Full<Bytes>> {
        // Another API of its own in AWS (no CORS, no JWT authorizer).
        if let Some(hub) = &self.events
            && crate::websocket::Hub::serves(req.uri().path())
        {
            return hub.answer(req, peer).await;
        }
        // Preflights are API Gateway's own business: answered before any
        // route or token is looked at.
        if crate::cors::Cors::is_preflight(req.method(), req.headers()) {
            let mut resp = hyper::Response::new(Full::new(Bytes::new()));
            *resp.status_mut() = http::StatusCode::NO_CONTENT;
            *resp.headers_mut() = self.cors.preflight(req.headers());
            return resp;
        }
        let origin = req
            .headers()
            .get(http::header::ORIGIN)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let mut resp = self.answer(req, peer).await;
        self.cors.decorate(origin.as_deref(), resp.headers_mut());
        resp
    }

    async fn answer(
        &self,
        req: hyper::Request<Incoming>,
        peer: SocketAddr,
    ) -> hyper::Response<Full<Bytes>> {
        let (parts, body) = req.into_parts();
        let body = match Limited::new(body, MAX_PAYLOAD).collect().await {
            Ok(b) => b.to_bytes(),
            Err(_) => {
                return to_hyper(api::error_response(&imagegram::Error::InvalidRequest(
                    "request body is larger than 10 MiB".into(),
                )));
            }
        };
        let path = parts.uri.path();
        if parts.method == http::Method::GET
            && matches!(path, "/docs" | "/docs/")
            && let Some(page) = &self.docs
        {
            return match std::fs::read(page) {
                Ok(html) => hyper::Response::builder()
                    .header(http::header::CONTENT_TYPE, "text/html; charset=utf-8")
                    .body(Full::new(Bytes::from(html)))
                    .expect("a static response"),
                Err(_) => to_hyper(api::error_response(&imagegram::Error::NotFound(
                    "the API reference is not built: scripts/up builds it",
                ))),
            };
        }
        let Some((route, params)) = self
            .routes
            .iter()
            .filter(|r| r.method == parts.method.as_str())
            .find_map(|r| r.matches(path).map(|p| (r, p)))
        else {
            return to_hyper(api::error_response(&imagegram::Error::NotFound(
                "no such route",
            )));
        };
        let claims = if Route::parse(route.key).is_some_and(Route::is_public) {
            None
        } else {
            let header = parts
                .headers
                .get(http::header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok());
            match self.auth.authorize(header) {
                Some(c) => Some(c),
                None => return to_hyper(api::error_response(&imagegram::Error::Unauthorized)),
            }
        };
        let event = v2_event(route.key, &parts, &params, claims.as_ref(), &body, peer);
        let request = match lambda_http::request::from_str(&event.to_string()) {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "built an event lambda_http cannot read");
                return to_hyper(api::error_response(&imagegram::Error::internal(e)));
            }
        };
        // The handler opens the request's span (API Gateway's request id,
        // route, post id), as it does in Lambda.
        to_hyper(api::handle(&self.app, request).await)
    }
}

/// The event API Gateway sends for an HTTP API route with a JWT authorizer.
fn v2_event(
    route_key: &str,
    parts: &http::request::Parts,
    params: &HashMap<String, String>,
    claims: Option<&HashMap<String, String>>,
    body: &Bytes,
    peer: SocketAddr,
) -> Value {
    // Header names lowercased, repeated headers joined by commas; cookies
    // travel apart.
    let mut headers: HashMap<String, String> = HashMap::new();
    let mut cookies: Vec<String> = Vec::new();
    for (name, value) in &parts.headers {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        if name == http::header::COOKIE {
            cookies.extend(value.split("; ").map(str::to_owned));
            continue;
        }
        headers
            .entry(name.as_str().to_owned())
            .and_modify(|v| {
                v.push(',');
                v.push_str(&value);
            })
            .or_insert(value);
    }
    let raw_query = parts.uri.query().unwrap_or("");
    let mut query: HashMap<String, String> = HashMap::new();
    for (k, v) in form_urlencoded::parse(raw_query.as_bytes()) {
        query
            .entry(k.into_owned())
            .and_modify(|e| {
                e.push(',');
                e.push_str(&v);
            })
            .or_insert_with(|| v.into_owned());
    }
    let (body, is_base64) = match std::str::from_utf8(body) {
        Ok(s) => (s.to_owned(), false),
        Err(_) => (base64::engine::general_purpose::STANDARD.encode(body), true),
    };
    let now = time::OffsetDateTime::now_utc();
    let mut event = json!({
        "version": "2.0",
        "routeKey": route_key,
        "rawPath": parts.uri.path(),
        "rawQueryString": raw_query,
        "headers": headers,
        "requestContext": {
            "accountId": "000000000000",
            "apiId": "local",
            "domainName": headers.get("host").cloned().unwrap_or_else(|| "127.0.0.1".into()),
            "domainPrefix": "local",
            "http": {
                "method": parts.method.as_str(),
                "path": parts.uri.path(),
                "protocol": "HTTP/1.1",
                "sourceIp": peer.ip().to_string(),
                "userAgent": headers.get("user-agent").cloned().unwrap_or_default(),
            },
            "requestId": uuid::Uuid::now_v7().simple().to_string(),
            "routeKey": route_key,
            "stage": "$default",
            "time": now.format(&time::format_description::well_known::Rfc2822).unwrap_or_default(),
            "timeEpoch": now.unix_timestamp() * 1000 + i64::from(now.millisecond()),
        },
        "isBase64Encoded": is_base64,
    });
    if !cookies.is_empty() {
        event["cookies"] = json!(cookies);
    }
    if !query.is_empty() {
        event["queryStringParameters"] = json!(query);
    }
    if !params.is_empty() {
        event["pathParameters"] = json!(params);
    }
    if !body.is_empty() {
        event["body"] = json!(body);
    }
    if let Some(claims) = claims {
        event["requestContext"]["authorizer"] =
            json!({ "jwt": { "claims": claims, "scopes": null } });
    }
    event
}

fn to_hyper(resp: http::Response<lambda_http::Body>) -> hyper::Response<Full<Bytes>> {
    let (parts, body) = resp.into_parts();
    let bytes = match body {
        lambda_http::Body::Empty => Bytes::new(),
        lambda_http::Body::Text(s) => Bytes::from(s),
        lambda_http::Body::Binary(b) => Bytes::from(b),
        _ => Bytes::new(),
    };
    hyper::Response::from_parts(parts, Full::new(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_capture_and_decode_parameters() {
        let r = RoutePattern::parse("DELETE /posts/{id}/comments/{comment_id}");
        let p = r.matches("/posts/abc/comments/d%20e").unwrap();
        assert_eq!(p["id"], "abc");
        assert_eq!(p["comment_id"], "d e");
        assert!(r.matches("/posts/abc/comments").is_none());
        assert!(r.matches("/posts//comments/x").is_none());
        assert!(
            RoutePattern::parse("GET /posts")
                .matches("/posts")
                .is_some()
        );
        assert!(
            RoutePattern::parse("GET /posts")
                .matches("/posts/x")
                .is_none()
        );
    }
}
