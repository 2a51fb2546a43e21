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
//! - [`ticket`]: the signed, single-use tickets that open a notifications
//!   connection; [`events`]: the WebSocket API's handlers (`$connect`,
//!   `$disconnect`, `$default`); [`notify`]: telling a post's author, from
//!   the finalizer and the sweeper, through API Gateway's `@connections`.
//! - [`store`]: the database capability ([`store::Posts`], [`store::Outcomes`], [`store::Sweeps`]) and its MySQL
//!   adapter; all SQL lives in [`store::mysql`]. Schema: `shared/migrations`.
//! - [`objects`]: the S3 adapter: the API's object-store capability
//!   ([`objects::ObjectStore`]) and the converter's (originals, converted
//!   images).
//! - [`queue`]: the converter's results capability on SQS.
//! - [`schema`]: the deploy's database step (migrations, the application
//!   user), a CloudFormation custom resource.
//! - [`config`]: configuration read once from the environment.
//! - [`secrets`]: the secrets capability (database credentials, cursor key)
//!   and its Secrets Manager adapter.
//! - [`metrics`]: what the functions measure, in CloudWatch's Embedded
//!   Metric Format.
//! - [`error`]: the crate's one error type and what each variant means for an
//!   HTTP client.
//!
//! Each function enables only the capabilities it uses (cargo features
//! `api`, `converter`, `finalizer`; see `Cargo.toml`), so the API links no
//! image codec and the converter no MySQL driver. The arrows run one way:
//! handlers ([`api::handle`], the pipeline's `handle`s) -> operations ->
//! capabilities (traits) <- adapters.

#[cfg(feature = "api")]
pub mod api;
pub mod config;
#[cfg(feature = "api")]
pub mod cursor;
pub mod domain;
pub mod error;
#[cfg(feature = "events")]
pub mod events;
pub mod metrics;
#[cfg(feature = "notify")]
pub mod notify;
#[cfg(feature = "s3")]
pub mod objects;
#[cfg(feature = "pipeline")]
pub mod pipeline;
#[cfg(feature = "s3")]
mod presign;
#[cfg(feature = "sqs")]
pub mod queue;
#[cfg(feature = "migrator")]
pub mod schema;
pub mod secrets;
#[cfg(feature = "db")]
pub mod store;
#[cfg(feature = "tickets")]
mod tag;
#[cfg(feature = "tickets")]
pub mod ticket;

pub use error::Error;
