//! Imagegram: a photo-posting backend on AWS serverless.
//!
//! # Layout
//!
//! A request or message crosses these modules, outermost first:
//!
//! - [`api`]: the HTTP API. [`api::handle`] takes the `lambda_http` request that
//!   API Gateway (or the local gateway) built, finds the route by its route
//!   key, parses the input into domain values, calls one operation in
//!   [`api::ops`] (posts, feed, comments) or [`api::uploads`] (multipart
//!   uploads of originals) and maps the result (or the [`Error`]) to a
//!   response.
//! - [`pipeline`]: what happens after an upload completes: the converter
//!   (S3 event -> 600x600 JPEG, [`pipeline::convert`] is the pure part) and
//!   the finalizer (result -> post record).
//! - [`domain`]: typed values (`PostId`, `Caption`, `CommentText`, ...) that
//!   can only be built by parsing, so everything past the handler is valid.
//! - [`cursor`]: opaque, signed pagination cursors.
//! - [`store`]: the database capability ([`store::Store`]) and its MySQL
//!   adapter; all SQL lives in [`store::mysql`]. Schema: `shared/migrations`.
//! - [`objects`]: the object-store capability and its S3 adapter.
//! - [`config`]: configuration read once from the environment.
//! - [`secrets`]: the secrets capability (database credentials, cursor key)
//!   and its Secrets Manager adapter.
//! - [`telemetry`]: tracing set up once per process.
//! - [`error`]: the crate's one error type and what each variant means for an
//!   HTTP client.

pub mod api;
pub mod config;
pub mod cursor;
pub mod domain;
pub mod error;
pub mod objects;
pub mod pipeline;
pub mod secrets;
pub mod store;
pub mod telemetry;

pub use error::Error;
