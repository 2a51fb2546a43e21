//! The HTTP API: API Gateway HTTP API (payload v2) in, JSON out.
//!
//! [`handle`] is the whole HTTP adapter: it finds the route by the event's
//! route key, reads the caller from the JWT authorizer context, parses the
//! input into domain values, calls one function of [`ops`] and turns its
//! result, or its [`Error`], into a response. Errors become responses here and
//! nowhere else.

pub mod ops;
pub mod routes;
pub mod uploads;

pub use routes::{ROUTES, Route, Throttle};

use http::StatusCode;
use lambda_http::request::RequestContext;
use lambda_http::{Body, Request, RequestExt, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::Error;
use crate::cursor::CursorCodec;
use crate::domain::{
    Caption, CommentId, CommentText, IdempotencyKey, ImageSize, Limit, PartNumber, PostId, UserId,
};
use crate::objects::ObjectStore;
use crate::store::Posts;

/// `openapi.yaml`, the contract as an OpenAPI 3.0 document, as JSON (made
/// by build.rs).
pub const OPENAPI_JSON: &str = include_str!(concat!(env!("OUT_DIR"), "/openapi.json"));

/// Largest request body read; API bodies are small JSON documents.
const MAX_BODY_BYTES: usize = 64 * 1024;

/// What the operations work with, built once per container.
pub struct App<S, O> {
    pub store: S,
    pub objects: O,
    pub cursors: CursorCodec,
    pub limits: Limits,
    /// Where notifications are (`POST /events/ticket`).
    pub events: Events,
}

/// The WebSocket endpoint of notifications and the tickets that open it.
#[derive(Clone)]
pub struct Events {
    /// `wss://{api}.execute-api.{region}.amazonaws.com/{stage}` (locally the
    /// gateway's `ws://.../events`).
    pub url: String,
    pub tickets: crate::ticket::Tickets,
}

/// Per-user limits of the API, from the configuration.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// How long an upload stays open before its post is removed.
    pub upload_ttl: std::time::Duration,
    /// Most uploads one user may have open at once.
    pub max_open_uploads: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            upload_ttl: std::time::Duration::from_secs(6 * 3600),
            max_open_uploads: 10,
        }
    }
}

/// Serves one API Gateway request. Never fails: every error is a response.
pub async fn handle<S: Posts, O: ObjectStore>(app: &App<S, O>, req: Request) -> Response<Body> {
    let route = route_key(&req).unwrap_or_default();
    let started = std::time::Instant::now();
    // Every line of the request carries API Gateway's request id (the one
    // clients and access logs see) and, once parsed, the post's id.
    let span = tracing::info_span!(
        "request",
        request_id = gateway_request_id(&req).unwrap_or_default(),
        route = route.as_str(),
        post_id = tracing::field::Empty,
    );
    let resp = tracing::Instrument::instrument(
        async {
            match dispatch(app, &route, &req).await {
                Ok(resp) => resp,
                Err(e) => {
                    if e.status().is_server_error() {
                        tracing::error!(error = %e, cause = ?std::error::Error::source(&e), "request failed");
                    } else {
                        tracing::info!(status = e.status().as_u16(), error = %e, "request refused");
                    }
                    error_response(&e)
                }
            }
        },
        span,
    )
    .await;
    crate::metrics::api_request(&route, resp.status().as_u16(), started.elapsed());
    resp
}

async fn dispatch<S: Posts, O: ObjectStore>(
    app: &App<S, O>,
    route: &str,
    req: &Request,
) -> Result<Response<Body>, Error> {
    let route = Route::parse(route).ok_or(Error::NotFound("no such route"))?;
    // Public routes answer without it; every other arm starts by taking it
    // (a unit test holds each arm to `Route::is_public`).
    let caller = caller(req);
    match route {
        Route::Health => {
            // Liveness: public, so it touches nothing behind the function.
            json(StatusCode::OK, &serde_json::json!({ "status": "ok" }))
        }
        Route::OpenApi => Response::builder()
            .status(StatusCode::OK)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Body::Text(OPENAPI_JSON.to_owned()))
            .map_err(Error::internal),
        Route::HealthDependencies => {
            // Any authenticated caller.
            caller?;
            ops::dependencies(app).await?;
            json(
                StatusCode::OK,
                &serde_json::json!({ "status": "ok", "database": "ok", "object_store": "ok" }),
            )
        }
        Route::Feed => {
            // Any authenticated caller.
            caller?;
            let limit = Limit::parse(query(req, "limit"))?;
            let after = query(req, "cursor")
                .map(|c| app.cursors.decode_feed(c))
                .transpose()?;
            let page = ops::feed(app, after, limit).await?;
            json(StatusCode::OK, &page)
        }
        Route::CreatePost => {
            let caller = caller?;
            #[derive(serde::Deserialize)]
            struct Input {
                #[serde(default)]
                caption: String,
                content_type: String,
                size_bytes: u64,
            }
            let input: Input = body(req)?;
            // In this order: malformed input is a 400 whatever else is
            // wrong; an unsupported type a 415 whatever the size; then 413.
            let caption = Caption::parse(input.caption)?;
            let key = idempotency_key(req)?;
            let format = crate::domain::format_of_content_type(&input.content_type)?;
            let size = ImageSize::parse(input.size_bytes)?;
            idempotent(app, &caller, req, key, async |key| {
                let created =
                    uploads::create_post(app, &caller, caption, format, size, key).await?;
                json(StatusCode::CREATED, &created)
            })
            .await
        }
        Route::GetUpload => {
            let caller = caller?;
            let state = uploads::upload_state(app, &caller, post_id(req)?).await?;
            json(StatusCode::OK, &state)
        }
        Route::SignParts => {
            let caller = caller?;
            #[derive(serde::Deserialize)]
            struct Input {
                part_numbers: Vec<u32>,
            }
            let post = post_id(req)?;
            let input: Input = body(req)?;
            let numbers = input
                .part_numbers
                .into_iter()
                .map(PartNumber::parse)
                .collect::<Result<Vec<_>, _>>()?;
            let urls = uploads::fresh_urls(app, &caller, post, numbers).await?;
            json(StatusCode::OK, &urls)
        }
        Route::CompleteUpload => {
            let caller = caller?;
            #[derive(serde::Deserialize)]
            struct Part {
                part_number: u32,
                etag: String,
            }
            #[derive(serde::Deserialize)]
            struct Input {
                #[serde(default, deserialize_with = "present")]
                parts: Option<Vec<Part>>,
            }
            let post = post_id(req)?;
            // The body is optional: none means "what S3 holds".
            let parts = if req.body().as_ref().iter().all(u8::is_ascii_whitespace) {
                None
            } else {
                body::<Input>(req)?
                    .parts
                    .map(|ps| {
                        ps.into_iter()
                            .map(|p| PartNumber::parse(p.part_number).map(|n| (n.get(), p.etag)))
                            .collect::<Result<Vec<_>, _>>()
                    })
                    .transpose()?
            };
            let post = uploads::complete(app, &caller, post, parts).await?;
            json(StatusCode::ACCEPTED, &post)
        }
        Route::AbortUpload => {
            let caller = caller?;
            uploads::abort(app, &caller, post_id(req)?).await?;
            Ok(empty(StatusCode::NO_CONTENT))
        }
        Route::SignUploadRequest => {
            let caller = caller?;
            // Uppy 6's `signRequest` argument as it is, camelCase; fields it
            // may add later are ignored.
            #[derive(serde::Deserialize)]
            #[serde(rename_all = "camelCase")]
            struct Input {
                method: String,
                key: String,
                #[serde(default)]
                upload_id: Option<String>,
                #[serde(default)]
                part_number: Option<u32>,
                #[serde(default)]
                expires_in: Option<u64>,
            }
            let input: Input = body(req)?;
            let request =
                uploads::SignRequest::parse(&input.method, input.upload_id, input.part_number)?;
            let signed =
                uploads::sign_request(app, &caller, &input.key, request, input.expires_in).await?;
            json(StatusCode::OK, &signed)
        }
        Route::GetPost => {
            let caller = caller?;
            let post = ops::get_post(app, &caller, post_id(req)?).await?;
            json(StatusCode::OK, &post)
        }
        Route::AddComment => {
            let caller = caller?;
            #[derive(serde::Deserialize)]
            struct Input {
                content: String,
            }
            let post = post_id(req)?;
            let input: Input = body(req)?;
            let content = CommentText::parse(&input.content)?;
            let key = idempotency_key(req)?;
            idempotent(app, &caller, req, key, async |key| {
                let comment = ops::add_comment(app, &caller, post, content, key).await?;
                json(StatusCode::CREATED, &comment)
            })
            .await
        }
        Route::ListComments => {
            let caller = caller?;
            let post = post_id(req)?;
            let limit = Limit::parse(query(req, "limit"))?;
            // Decoded before the post is looked up: a bad cursor is a 400
            // whatever the post.
            let after = query(req, "cursor")
                .map(|c| app.cursors.decode_comments(post, c))
                .transpose()?;
            let page = ops::list_comments(app, &caller, post, after, limit).await?;
            json(StatusCode::OK, &page)
        }
        Route::DeleteComment => {
            let caller = caller?;
            let post = post_id(req)?;
            let comment = path(req, "comment_id")
                .and_then(CommentId::parse)
                .ok_or(Error::NotFound("no such comment"))?;
            ops::delete_comment(app, &caller, post, comment).await?;
            Ok(empty(StatusCode::NO_CONTENT))
        }
        Route::EventsTicket => {
            // No body: anything sent is ignored, as for `complete`.
            let caller = caller?;
            json(StatusCode::CREATED, &ops::events_ticket(app, &caller))
        }
    }
}

/// Runs a create under the request's `Idempotency-Key`, if it has one (the
/// convention of Stripe and of draft-ietf-httpapi-idempotency-key-header):
/// the first request with a key runs and its answer is stored with what it
/// created; a repeat with the same route, path and body gets that answer
/// (and creates nothing); another request with the key is a 422; a repeat
/// while the first still runs is a 409. A request that fails gives its key
/// back, so its retry runs again.
async fn idempotent<S: Posts, O: ObjectStore>(
    app: &App<S, O>,
    caller: &UserId,
    req: &Request,
    key: Option<IdempotencyKey>,
    create: impl AsyncFnOnce(Option<&IdempotencyKey>) -> Result<Response<Body>, Error>,
) -> Result<Response<Body>, Error> {
    // What makes two requests "the same": route, path and body.
    let hash: [u8; 32] = {
        use sha2::Digest;
        let mut h = sha2::Sha256::new();
        h.update(route_key(req).unwrap_or_default().as_bytes());
        h.update(b"\n");
        h.update(req.uri().path().as_bytes());
        h.update(b"\n");
        h.update(req.body().as_ref());
        h.finalize().into()
    };
    match ops::idempotently(app, caller, key, &hash, create).await? {
        ops::Created::New(resp) => Ok(resp),
        ops::Created::Replayed { status, body } => {
            let mut resp = Response::new(Body::Text(body));
            *resp.status_mut() = StatusCode::from_u16(status).map_err(Error::internal)?;
            resp.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("application/json"),
            );
            resp.headers_mut().insert(
                "idempotent-replayed",
                http::HeaderValue::from_static("true"),
            );
            Ok(resp)
        }
    }
}

/// The request's `Idempotency-Key` header, if any.
fn idempotency_key(req: &Request) -> Result<Option<IdempotencyKey>, Error> {
    req.headers()
        .get("idempotency-key")
        .map(|h| {
            IdempotencyKey::parse(h.to_str().map_err(|_| {
                Error::InvalidRequest("Idempotency-Key must be printable ASCII".into())
            })?)
        })
        .transpose()
}

/// An optional field that, when present, must not be `null`.
fn present<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    T::deserialize(d).map(Some)
}

/// `"GET /posts/{id}"`: the route API Gateway matched.
fn route_key(req: &Request) -> Option<String> {
    match req.request_context_ref()? {
        RequestContext::ApiGatewayV2(ctx) => ctx.route_key.clone(),
        #[allow(unreachable_patterns)]
        _ => None,
    }
}

/// The caller's `sub`, as the JWT authorizer verified it. Nothing the client
/// sends in headers, query or body is trusted for identity.
fn caller(req: &Request) -> Result<UserId, Error> {
    let sub = req
        .request_context_ref()
        .and_then(|c| c.authorizer())
        .and_then(|a| a.jwt.as_ref())
        .and_then(|jwt| jwt.claims.get("sub"))
        .ok_or(Error::Unauthorized)?;
    UserId::parse(sub).ok_or(Error::Unauthorized)
}

fn path<'a>(req: &'a Request, name: &str) -> Option<&'a str> {
    req.path_parameters_ref().and_then(|p| p.first(name))
}

fn post_id(req: &Request) -> Result<PostId, Error> {
    let id = path(req, "id")
        .and_then(PostId::parse)
        .ok_or(Error::NotFound("no such post"))?;
    tracing::Span::current().record("post_id", tracing::field::display(id));
    Ok(id)
}

/// API Gateway's id of the request (`requestContext.requestId`).
fn gateway_request_id(req: &Request) -> Option<String> {
    match req.request_context_ref()? {
        RequestContext::ApiGatewayV2(ctx) => ctx.request_id.clone(),
        #[allow(unreachable_patterns)]
        _ => None,
    }
}

fn query<'a>(req: &'a Request, name: &str) -> Option<&'a str> {
    req.query_string_parameters_ref()
        .and_then(|q| q.first(name))
}

fn body<T: DeserializeOwned>(req: &Request) -> Result<T, Error> {
    let bytes: &[u8] = req.body().as_ref();
    if bytes.len() > MAX_BODY_BYTES {
        return Err(Error::InvalidRequest(format!(
            "request body is larger than {MAX_BODY_BYTES} bytes"
        )));
    }
    // An object, not anything serde could read as one (`[]` fills a
    // struct's fields in order).
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(Error::InvalidRequest(
            "request body must be a JSON object".into(),
        ));
    }
    serde_json::from_slice(bytes).map_err(|e| {
        // serde_json's messages name the field and the expected type, and
        // never echo more than a token of the input.
        Error::InvalidRequest(format!("invalid JSON body: {e}"))
    })
}

fn json<T: Serialize>(status: StatusCode, value: &T) -> Result<Response<Body>, Error> {
    let body = serde_json::to_string(value).map_err(Error::internal)?;
    Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Body::Text(body))
        .map_err(Error::internal)
}

fn empty(status: StatusCode) -> Response<Body> {
    let mut resp = Response::new(Body::Empty);
    *resp.status_mut() = status;
    resp
}

/// `{"error": {"code", "message"}}` with the error's status, and
/// `Retry-After` on the answers that invite a retry (429, 503).
pub fn error_response(e: &Error) -> Response<Body> {
    let mut body =
        serde_json::json!({ "error": { "code": e.code(), "message": e.public_message() } });
    if let Some(reason) = e.reason() {
        body["error"]["reason"] = reason.into();
    }
    let mut resp = Response::new(Body::Text(body.to_string()));
    *resp.status_mut() = e.status();
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    if let Some(secs) = e.retry_after_secs() {
        resp.headers_mut()
            .insert(http::header::RETRY_AFTER, http::HeaderValue::from(secs));
    }
    resp
}

impl App<crate::store::MySqlStore, crate::objects::S3Objects> {
    /// The deployed wiring: the MySQL pool from the configuration, and the
    /// S3 client the caller built once per process with `credentials` (its
    /// SDK configuration's provider: image URLs are signed with them).
    pub fn from_config(
        cfg: &crate::config::ApiConfig,
        s3: aws_sdk_s3::Client,
        credentials: Option<aws_sdk_s3::config::SharedCredentialsProvider>,
    ) -> Self {
        App {
            store: crate::store::MySqlStore::connect(&cfg.db, cfg.db_pool_max),
            objects: crate::objects::S3Objects::new(
                // The client as built (interceptors, HTTP client), with the
                // API's shorter budget.
                aws_sdk_s3::Client::from_conf(
                    s3.config()
                        .to_builder()
                        .timeout_config(crate::config::api_s3_timeouts())
                        .build(),
                ),
                cfg.bucket.clone(),
                cfg.image_base_url.clone(),
                std::time::Duration::from_secs(cfg.presign_ttl_secs),
            )
            .signing_with(credentials),
            cursors: CursorCodec::new(cfg.cursor_secret.expose().as_bytes()),
            events: Events {
                url: cfg.events_url.clone(),
                tickets: crate::ticket::Tickets::from_cursor_secret(
                    cfg.cursor_secret.expose().as_bytes(),
                ),
            },
            limits: Limits {
                upload_ttl: std::time::Duration::from_secs(cfg.upload_ttl_secs),
                max_open_uploads: cfg.max_open_uploads,
            },
        }
    }
}
