//! The local stack: everything API Gateway, the JWT authorizer, IAM and
//! Lambda's SQS event source mappings do in AWS, done on this machine so the
//! deployed handler code runs unchanged. Dev-only; never deployed.
//!
//! - [`stack`]: builds the whole stack from `template.yaml`: resources in
//!   moto, each function configured and permitted as the template says.
//! - [`template`]: reads `template.yaml` (parameters, conditions,
//!   intrinsics) for a stack of local resources.
//! - [`iam`]: evaluates the functions' identity policies.
//! - [`grants`]: the template's grants one by one, and the template without
//!   any one of them (`scripts/check-grants`).
//! - [`guard`]: holds every AWS call of a function to its policy.
//! - [`gateway`]: HTTP on 127.0.0.1:3000 -> API Gateway HTTP API v2 events ->
//!   `imagegram::api::handle`; CORS from the template ([`cors`]).
//! - [`web`]: the web client's own origin on 127.0.0.1:8080.
//! - [`auth`]: the dev JWT authorizer (HS256) and token minting.
//! - [`bootstrap`]: creates the bucket (the template's CORS rule,
//!   notifications), the queues and the secrets through the SDK, since
//!   moto's CloudFormation skips those settings.
//! - [`poller`]: Lambda's SQS event source mapping.
//! - [`pipeline`]: the converter and finalizer behind their pollers.

pub mod auth;
pub mod bootstrap;
pub mod cors;
pub mod fixtures;
pub mod gateway;
pub mod grants;
pub mod guard;
pub mod iam;
pub mod pipeline;
pub mod poller;
pub mod report;
pub mod stack;
pub mod template;
pub mod web;
pub mod websocket;
