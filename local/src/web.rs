//! The web client's own origin, locally (`http://127.0.0.1:8080`): the
//! static files of `web/` (as a CDN or any static host serves them in
//! production), its `config.json` (which API to call), and, local only,
//! `GET /dev/token?sub=NAME` for the page's "Mint a dev token" button.

use std::convert::Infallible;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

pub struct Site {
    /// The `web/` directory: index.html, style.css, dist/.
    pub root: PathBuf,
    /// What `config.json` tells the page.
    pub api: String,
    /// Signs the dev tokens (the local gateway's authorizer key).
    pub dev_secret: String,
}

impl Site {
    pub async fn serve(self: Arc<Self>, listener: TcpListener) -> std::io::Result<()> {
        loop {
            let (stream, _) = listener.accept().await?;
            let site = Arc::clone(&self);
            tokio::spawn(async move {
                let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let site = Arc::clone(&site);
                    async move { Ok::<_, Infallible>(site.answer(&req)) }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    }

    fn answer(&self, req: &hyper::Request<hyper::body::Incoming>) -> hyper::Response<Full<Bytes>> {
        if req.method() != http::Method::GET && req.method() != http::Method::HEAD {
            return plain(405, "method not allowed");
        }
        let path = req.uri().path();
        match path {
            "/config.json" => {
                let body = serde_json::json!({ "api": self.api, "devTokens": true }).to_string();
                respond(200, "application/json", body.into_bytes())
            }
            "/dev/token" => {
                let sub = req
                    .uri()
                    .query()
                    .into_iter()
                    .flat_map(|q| form_urlencoded::parse(q.as_bytes()))
                    .find(|(k, _)| k == "sub")
                    .map(|(_, v)| v.into_owned())
                    .filter(|s| !s.is_empty() && s.len() <= 64)
                    .unwrap_or_else(|| "local-user".into());
                let token = crate::auth::mint(&self.dev_secret, &sub, Some(24 * 3600));
                respond(200, "text/plain", token.into_bytes())
            }
            _ => self.file(path),
        }
    }

    fn file(&self, path: &str) -> hyper::Response<Full<Bytes>> {
        let rel = if path == "/" {
            "index.html"
        } else {
            path.trim_start_matches('/')
        };
        let rel = Path::new(rel);
        // Nothing outside the directory.
        if rel.components().any(|c| !matches!(c, Component::Normal(_))) {
            return plain(404, "not found");
        }
        let full = self.root.join(rel);
        let kind = match full.extension().and_then(|e| e.to_str()) {
            Some("html") => "text/html; charset=utf-8",
            Some("css") => "text/css",
            Some("js") => "text/javascript",
            Some("map" | "json") => "application/json",
            _ => return plain(404, "not found"),
        };
        match std::fs::read(&full) {
            Ok(body) => respond(200, kind, body),
            Err(_) => plain(404, "not found (run `npm run build` in web/ for dist/)"),
        }
    }
}

fn respond(status: u16, kind: &str, body: Vec<u8>) -> hyper::Response<Full<Bytes>> {
    hyper::Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, kind)
        .header(http::header::CACHE_CONTROL, "no-store")
        .body(Full::new(Bytes::from(body)))
        .expect("a static response")
}

fn plain(status: u16, text: &str) -> hyper::Response<Full<Bytes>> {
    respond(status, "text/plain", text.as_bytes().to_vec())
}
