//! The local stack: everything API Gateway, the JWT authorizer and Lambda's
//! SQS event source mappings do in AWS, done on this machine so the deployed
//! handler code runs unchanged. Dev-only; never deployed.
//!
//! - [`gateway`]: HTTP on 127.0.0.1:3000 -> API Gateway HTTP API v2 events ->
//!   `imagegram::api::handle`.
//! - [`auth`]: the dev JWT authorizer (HS256) and token minting.
//! - [`bootstrap`]: creates the bucket (CORS rule, notifications) and the
//!   queues through the SDK, since moto's CloudFormation skips those settings.
//! - [`poller`]: Lambda's SQS event source mapping.
//! - [`pipeline`]: the converter and finalizer behind their pollers.

pub mod auth;
pub mod bootstrap;
pub mod gateway;
pub mod pipeline;
pub mod poller;
