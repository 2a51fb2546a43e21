//! `imagegram-local`: the local stack's command line.
//!
//! ```text
//! imagegram-local serve            migrate, create bucket and queues, run the
//!                                  pipeline and serve the API on :3000
//! imagegram-local token SUB [TTL]  print a dev JWT for SUB (TTL seconds, default 86400)
//! imagegram-local migrate          apply pending migrations to DATABASE_URL
//! ```

use std::sync::Arc;

use imagegram::api::App;
use imagegram::config::{ApiConfig, ConverterConfig, optional};
use imagegram::pipeline::{Converter, Finalizer};
use imagegram::store::migrate;
use imagegram_local::auth::{self, DevAuthorizer};
use imagegram_local::{bootstrap, gateway::Gateway, pipeline};
use std::time::Duration;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

const USAGE: &str = "usage: imagegram-local serve | token SUB [TTL_SECS] | migrate";

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["serve"] => serve().await,
        ["token", sub] => token(sub, "86400"),
        ["token", sub, ttl] => token(sub, ttl),
        ["migrate"] => {
            let cfg = ApiConfig::from_env()?;
            let store = imagegram::store::MySqlStore::connect(cfg.database_url.expose(), 1)?;
            migrate(store.pool()).await?;
            eprintln!("migrations applied");
            Ok(())
        }
        _ => Err(USAGE.into()),
    }
}

fn token(sub: &str, ttl: &str) -> Result<(), BoxError> {
    let ttl: u64 = ttl
        .parse()
        .map_err(|_| "TTL_SECS must be a number of seconds")?;
    let secret =
        optional("IMAGEGRAM_DEV_JWT_SECRET").unwrap_or_else(|| auth::DEFAULT_SECRET.into());
    println!("{}", auth::mint(&secret, sub, Some(ttl)));
    Ok(())
}

async fn serve() -> Result<(), BoxError> {
    imagegram::telemetry::init();
    let cfg = ApiConfig::from_env()?;
    let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let app = App::from_config(&cfg, &sdk)?;
    migrate(app.store.pool()).await?;
    let s3 = app.objects.client().clone();
    bootstrap::bucket(&s3, &cfg.bucket).await?;

    // The pipeline: queues, the bucket's notification, and the pollers.
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let region = sdk
        .region()
        .map(|r| r.to_string())
        .unwrap_or_else(|| "us-east-1".into());
    let prefix = optional("QUEUE_PREFIX").unwrap_or_else(|| "imagegram-local".into());
    let queues = bootstrap::queues(&sqs, &prefix, 60).await?;
    bootstrap::notifications(&s3, &cfg.bucket, &queues.conversion.arn).await?;
    let converter = Converter::from_config(
        &ConverterConfig {
            bucket: cfg.bucket.clone(),
            results_queue_url: queues.results.url.clone(),
        },
        &sdk,
    );
    let finalizer = Finalizer {
        store: app.store.clone(),
    };
    pipeline::spawn(
        sqs,
        region,
        &queues,
        converter,
        finalizer,
        Duration::from_secs(10),
    );
    let addr = optional("IMAGEGRAM_API_ADDR").unwrap_or_else(|| "127.0.0.1:3000".into());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    tracing::info!("API listening on http://{}", listener.local_addr()?);
    Arc::new(Gateway::new(app, DevAuthorizer::from_env()))
        .serve(listener)
        .await?;
    Ok(())
}
