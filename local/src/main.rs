//! `imagegram-local`: the local stack's command line.
//!
//! ```text
//! imagegram-local serve            create the resources of template.yaml in moto,
//!                                  migrate, run the pipeline, serve the API on :3000
//! imagegram-local token SUB [TTL]  print a dev JWT for SUB (TTL seconds, default 86400)
//! imagegram-local migrate          apply pending migrations (the database of
//!                                  DATABASE_SECRET_ARN, as the functions read it)
//! imagegram-local iam-report LOG   compare the AWS calls logged (IMAGEGRAM_IAM_LOG)
//!                                  with each function's policy; fail on unused grants
//! imagegram-local grants           list template.yaml's grants, one per line
//! imagegram-local template-without GRANT
//!                                  print template.yaml without that one grant
//! ```

use std::sync::Arc;
use std::time::Duration;

use imagegram::config::{DbConfig, Env};
use imagegram::store::{MySqlStore, migrate};
use imagegram_local::auth::{self, DevAuthorizer};
use imagegram_local::gateway::Gateway;
use imagegram_local::grants;
use imagegram_local::stack::{self, Database, Spec, TemplateSource};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

const USAGE: &str = "usage: imagegram-local serve | token SUB [TTL_SECS] | migrate | \
                     events-fixture | iam-report LOG | grants | template-without GRANT";

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
            let sdk = imagegram::config::aws_sdk().await;
            let secrets = aws_sdk_secretsmanager::Client::new(&sdk);
            let db = DbConfig::load(&Env::from_process(), &secrets).await?;
            migrate(&MySqlStore::connect(&db, 1).pool()).await?;
            eprintln!("migrations applied");
            Ok(())
        }
        // The sample events' post and comment (scripts/sam-local), in the
        // database the environment names, by the store's own operations.
        ["events-fixture"] => {
            let sdk = imagegram::config::aws_sdk().await;
            let secrets = aws_sdk_secretsmanager::Client::new(&sdk);
            let db = DbConfig::load(&Env::from_process(), &secrets).await?;
            imagegram_local::fixtures::events(&MySqlStore::connect(&db, 1)).await?;
            eprintln!("the events' fixture is in place");
            Ok(())
        }
        ["iam-report", log] => imagegram_local::report::run(
            &imagegram_local::template::default_path(),
            std::path::Path::new(log),
        ),
        ["grants"] => {
            let text = std::fs::read_to_string(imagegram_local::template::default_path())?;
            for g in grants::grants(&text)? {
                println!("{}", g.id());
            }
            Ok(())
        }
        ["template-without", id] => {
            let text = std::fs::read_to_string(imagegram_local::template::default_path())?;
            print!("{}", grants::without(&text, &grants::Grant::parse(id)?)?);
            Ok(())
        }
        _ => Err(USAGE.into()),
    }
}

fn token(sub: &str, ttl: &str) -> Result<(), BoxError> {
    let ttl: u64 = ttl
        .parse()
        .map_err(|_| "TTL_SECS must be a number of seconds")?;
    let secret = Env::from_process()
        .optional("IMAGEGRAM_DEV_JWT_SECRET")
        .unwrap_or_else(|| auth::DEFAULT_SECRET.into());
    println!("{}", auth::mint(&secret, sub, Some(ttl)));
    Ok(())
}

/// Log lines as the functions write them (`RUST_LOG` filters), to the
/// gateway's log; the same EMF metric lines, flushed every second.
fn telemetry() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .init();
    let metrics = imagegram::metrics::init("imagegram-local");
    tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(1));
        loop {
            every.tick().await;
            imagegram::metrics::flush(metrics);
        }
    });
}

async fn serve() -> Result<(), BoxError> {
    telemetry();
    let process = Env::from_process();
    let var = |name: &str, default: &str| process.optional(name).unwrap_or_else(|| default.into());
    // The functions' own settings come from template.yaml; these are the
    // ones a developer may change locally.
    let mut env = vec![
        ("DATABASE_TLS".to_owned(), "false".to_owned()),
        // One process serves every request at once, not one per container.
        ("DB_POOL_MAX".to_owned(), var("DB_POOL_MAX", "32")),
    ];
    for name in [
        "PRESIGN_TTL_SECS",
        "UPLOAD_TTL_SECS",
        "MAX_OPEN_UPLOADS",
        "IMAGE_BASE_URL",
        "DB_TIMEOUT_MS",
        "SWEEP_PROCESSING_AFTER_SECS",
        "SWEEP_MAX_ATTEMPTS",
    ] {
        if let Some(v) = process.optional(name) {
            env.push((name.to_owned(), v));
        }
    }
    // Bound first: the functions' notification endpoints name it.
    let addr = var("IMAGEGRAM_API_ADDR", "127.0.0.1:3000");
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    env.extend(stack::events_env(listener.local_addr()?));
    let spec = Spec {
        name: var("QUEUE_PREFIX", "imagegram-local"),
        bucket: var("BUCKET", "imagegram-local"),
        database: Database {
            host: var("IMAGEGRAM_DB_HOST", "127.0.0.1"),
            port: var("IMAGEGRAM_DB_PORT", "3306").parse()?,
            user: var("IMAGEGRAM_DB_USER", "imagegram"),
            password: var("IMAGEGRAM_DB_PASSWORD", "imagegram"),
            name: var("IMAGEGRAM_DB_NAME", "imagegram"),
            // scripts/lib.sh makes this user, as RDS makes its master.
            master_user: var("IMAGEGRAM_DB_MASTER_USER", "imagegram_master"),
            master_password: var("IMAGEGRAM_DB_MASTER_PASSWORD", "imagegram-master"),
        },
        template: TemplateSource::Path(imagegram_local::template::default_path()),
        env,
        visibility_secs: 60,
        poll_wait: Duration::from_secs(10),
        iam_log: process.optional("IMAGEGRAM_IAM_LOG").map(Into::into),
        iam_by: None,
    };
    let sdk = imagegram::config::aws_sdk().await;
    let running = stack::build(spec, &sdk).await?.run_pipeline();
    // Each function's variables, resolved for this stack, in the shape
    // `sam local invoke --env-vars` reads; the cold-start benchmark uses it
    // too.
    if let Some(path) = process.optional("IMAGEGRAM_ENV_FILE") {
        let by_function: serde_json::Map<String, serde_json::Value> = running
            .function_env
            .iter()
            .map(|(f, env)| (f.clone(), serde_json::json!(env.vars())))
            .collect();
        std::fs::write(&path, serde_json::to_string_pretty(&by_function)?)?;
    }
    tracing::info!("API listening on http://{}", listener.local_addr()?);
    tracing::info!("notifications on ws://{}/events", listener.local_addr()?);
    let authorizer = DevAuthorizer::new(
        &process
            .optional("IMAGEGRAM_DEV_JWT_SECRET")
            .unwrap_or_else(|| auth::DEFAULT_SECRET.into()),
    );
    // The web client on its own origin, as in production (CORS is real).
    if let Some(web) = process.optional("IMAGEGRAM_WEB_ADDR") {
        let site = imagegram_local::web::Site {
            root: process
                .optional("IMAGEGRAM_WEB_ROOT")
                .map(Into::into)
                .unwrap_or_else(|| concat!(env!("CARGO_MANIFEST_DIR"), "/../web").into()),
            api: format!("http://{}", listener.local_addr()?),
            dev_secret: process
                .optional("IMAGEGRAM_DEV_JWT_SECRET")
                .unwrap_or_else(|| auth::DEFAULT_SECRET.into()),
        };
        let web = tokio::net::TcpListener::bind(&web).await?;
        tracing::info!("web client on http://{}", web.local_addr()?);
        tokio::spawn(Arc::new(site).serve(web));
    }
    let cors = running.cors.clone();
    let hub = imagegram_local::websocket::Hub::for_events(running.events, Default::default());
    let mut gateway = Gateway::new(running.app, authorizer)
        .with_cors(cors)
        .with_events(hub);
    if let Some(page) = process.optional("IMAGEGRAM_DOCS") {
        gateway = gateway.with_docs(page.into());
    }
    Arc::new(gateway).serve(listener).await?;
    Ok(())
}
