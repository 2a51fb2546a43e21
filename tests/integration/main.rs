//! Integration tests: the real gateway and handlers over the real MariaDB and
//! moto. One binary (one link) for all of them; each test has its own
//! database and bucket, so they run in parallel.

mod comments;
mod config;
mod cors;
mod events;
mod explain;
mod faults;
mod feed;
mod formats;
mod iam;
mod idempotency;
mod identity;
mod manifests;
mod metrics;
mod notify;
mod pipeline;
mod posts;
mod routes;
mod schema;
mod signing;
mod sweeper;
mod template;
mod uploads;
