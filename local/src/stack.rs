//! The whole local stack in one place, for `imagegram-local serve` and the
//! integration tests alike: the resources of `template.yaml` made in moto
//! (bucket with the template's CORS rule, queues, notification, secrets),
//! each function built the way its Lambda `main` builds it (configuration
//! from the template's `Environment`, read by the same loaders, secrets
//! from Secrets Manager) with AWS clients that the IAM guard holds to that
//! function's template policy, and the pipeline's pollers running.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use imagegram::api::App;
use imagegram::config::{
    ApiConfig, ConverterConfig, Env, EventsConfig, FinalizerConfig, SweeperConfig,
};
use imagegram::events::Events;
use imagegram::notify::{Connections, Notifier};
use imagegram::objects::S3Objects;
use imagegram::pipeline::{Converter, Finalizer, Sweeper};
use imagegram::queue::SqsQueue;
use imagegram::schema::{self, SchemaConfig};
use imagegram::store::MySqlStore;

use crate::bootstrap::{self, Queues};
use crate::guard::{Guard, Recorder, guarded_http_client};
use crate::pipeline::{Function, Pipeline};
use crate::template::{BoxError, Physical, Stack, Template};

/// The functions of the template that the local stack runs.
pub const FUNCTIONS: &[&str] = &[
    "ApiFunction",
    "ConverterFunction",
    "FinalizerFunction",
    "SweeperFunction",
    // The deploy's schema step (CloudFormation's custom resource in AWS):
    // the stack runs it once as it starts, before anything uses the database.
    "SchemaFunction",
    // The notifications WebSocket API's handlers, which the local gateway
    // runs at /events.
    "EventsFunction",
];

/// The WebSocket API's id locally: what `!Ref EventsApi` gives, and the
/// API the IAM guard names in `execute-api` ARNs.
pub const EVENTS_API_ID: &str = "localevents";

/// The variables that point a stack's functions at a local gateway's
/// notifications endpoint (`ws://addr/events` for tickets, the management
/// API at `http://addr/events`), over the template's AWS URLs, as
/// `AWS_ENDPOINT_URL` points the SDK at moto.
pub fn events_env(gateway: std::net::SocketAddr) -> Vec<(String, String)> {
    vec![
        ("EVENTS_URL".into(), format!("ws://{gateway}/events")),
        ("EVENTS_ENDPOINT".into(), format!("http://{gateway}/events")),
    ]
}

/// moto's account.
pub const ACCOUNT: &str = "123456789012";

/// The MySQL server and database the stack uses.
#[derive(Clone, Debug)]
pub struct Database {
    pub host: String,
    pub port: u16,
    /// The functions' user (the template's DatabaseAppSecret); the schema
    /// step creates it if missing, with rows-only privileges.
    pub user: String,
    pub password: String,
    pub name: String,
    /// The master user (the template's DatabaseSecretArn): only the schema
    /// step logs in with it.
    pub master_user: String,
    pub master_password: String,
}

/// What differs between one local stack and another.
#[derive(Clone, Debug)]
pub struct Spec {
    /// Names the stack: its queues (`<name>-conversion`, ...) and secrets
    /// (`<name>/database`, ...).
    pub name: String,
    pub bucket: String,
    pub database: Database,
    /// The template to read (its text may be changed by a test).
    pub template: TemplateSource,
    /// Variables set over what the template declares for every function
    /// (DATABASE_TLS=false locally, a bigger pool, shorter TTLs in tests).
    pub env: Vec<(String, String)>,
    /// The queues' visibility timeout (seconds): short in tests, so retries
    /// take seconds.
    pub visibility_secs: u32,
    /// Long-poll wait of the pollers.
    pub poll_wait: Duration,
    /// Where the IAM guard appends each call as a JSON line, for
    /// `imagegram-local iam-report`.
    pub iam_log: Option<PathBuf>,
    /// Who runs this stack (a test's name), written with each logged call.
    pub iam_by: Option<String>,
}

#[derive(Clone, Debug)]
pub enum TemplateSource {
    Path(PathBuf),
    Text(String),
}

impl TemplateSource {
    pub fn text(&self) -> Result<String, BoxError> {
        match self {
            TemplateSource::Path(p) => std::fs::read_to_string(p)
                .map_err(|e| format!("cannot read {}: {e}", p.display()).into()),
            TemplateSource::Text(t) => Ok(t.clone()),
        }
    }
}

/// A started stack: the API (for a gateway to serve) and what tests look at.
pub struct Running {
    pub app: App<MySqlStore, S3Objects>,
    pub queues: Queues,
    pub recorder: Recorder,
    /// The environment each function was configured from.
    pub function_env: Vec<(String, Env)>,
    /// The HTTP API's CORS configuration, from the template.
    pub cors: crate::cors::Cors,
    /// The pollers, once started.
    pub pipeline: Option<Arc<Pipeline<MySqlStore>>>,
    /// The schema function's Secrets Manager client, held to its policy, to
    /// run the step again as CloudFormation would (its variables are in
    /// `function_env`).
    pub schema_secrets: aws_sdk_secretsmanager::Client,
    /// The sweeper the schedule runs, once started (a test may run it too).
    pub sweeper: Option<Arc<imagegram::pipeline::sweeper::Deployed>>,
    /// The WebSocket API's handlers, for the gateway's `/events`.
    pub events: Arc<Events<MySqlStore>>,
}

/// The parts of a started stack before its pipeline runs, for a test that
/// wants to change the converter first.
pub struct Parts {
    pub running: Running,
    pub converter: Converter<S3Objects, SqsQueue>,
    pub finalizer: imagegram::pipeline::finalizer::Deployed,
    pub sweeper: Arc<imagegram::pipeline::sweeper::Deployed>,
    /// How often the template's schedule runs the sweeper.
    pub sweep_every: Duration,
    spec: Spec,
    admin_sqs: aws_sdk_sqs::Client,
    region: String,
}

/// Creates the resources and builds the functions. The pollers start with
/// [`Parts::run_pipeline`].
pub async fn build(spec: Spec, sdk: &aws_config::SdkConfig) -> Result<Parts, BoxError> {
    // The deployer's clients (CloudFormation's, in AWS): unguarded.
    let admin_s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(sdk)
            .force_path_style(true)
            .build(),
    );
    // The pollers' client: a long poll waits up to `poll_wait`, longer than
    // the functions' operation timeouts allow (Lambda's event source
    // mappings poll outside the functions in AWS).
    let admin_sqs = aws_sdk_sqs::Client::from_conf(
        aws_sdk_sqs::config::Builder::from(sdk)
            .timeout_config(
                aws_sdk_sqs::config::timeout::TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(1))
                    .read_timeout(spec.poll_wait + Duration::from_secs(5))
                    .operation_attempt_timeout(spec.poll_wait + Duration::from_secs(5))
                    .operation_timeout(spec.poll_wait + Duration::from_secs(10))
                    .build(),
            )
            .build(),
    );
    let admin_secrets = aws_sdk_secretsmanager::Client::new(sdk);
    let region = sdk
        .region()
        .map(|r| r.to_string())
        .unwrap_or_else(|| "us-east-1".into());

    let text = spec.template.text()?;
    let queues = again(|| bootstrap::queues(&admin_sqs, &spec.name, spec.visibility_secs)).await?;
    let db = &spec.database;
    // The application user's secret, as the template generates it, and the
    // master's, as RDS manages it (with where the server is).
    let (db_name, db_value) = (
        format!("{}/database", spec.name),
        serde_json::json!({
            "username": db.user, "password": db.password,
            "host": db.host, "port": db.port, "dbname": db.name,
        })
        .to_string(),
    );
    let db_secret = again(|| bootstrap::secret(&admin_secrets, &db_name, &db_value, false)).await?;
    let (master_name, master_value) = (
        format!("{}/master", spec.name),
        serde_json::json!({
            "username": db.master_user, "password": db.master_password,
            "host": db.host, "port": db.port,
        })
        .to_string(),
    );
    let master_secret =
        again(|| bootstrap::secret(&admin_secrets, &master_name, &master_value, false)).await?;
    let (key_name, key_value) = (format!("{}/cursor-key", spec.name), random_key());
    let cursor_secret =
        again(|| bootstrap::secret(&admin_secrets, &key_name, &key_value, true)).await?;
    let mut stack = Stack::new(&spec.name, ACCOUNT, &region)
        .resource("ImagesBucket", Physical::bucket(&spec.bucket))
        .resource("CursorSecret", Physical::secret(&cursor_secret))
        .resource("DatabaseAppSecret", Physical::secret(&db_secret))
        .resource(
            "EventsApi",
            Physical {
                reference: EVENTS_API_ID.into(),
                ..Physical::default()
            },
        )
        // No CloudFront locally: images are served by presigned GETs, and
        // the API's policy is the one the template gives it without a CDN.
        .parameter("EnableCdn", "false")
        .parameter("DatabaseSecretArn", &master_secret)
        .parameter("DatabaseHost", &db.host)
        .parameter("DatabaseName", &db.name);
    for id in [
        "ConversionQueue",
        "ConversionDeadLetterQueue",
        "ResultsQueue",
        "ResultsDeadLetterQueue",
    ] {
        let q = queues.by_logical_id(id).expect("known queue");
        stack = stack.resource(id, Physical::queue(&q.url, &q.arn));
    }
    let template = Template::parse(&text, stack)?;

    bootstrap::bucket(&admin_s3, &spec.bucket, &template).await?;
    bootstrap::notifications(&admin_s3, &spec.bucket, &queues.conversion.arn).await?;

    let recorder = Recorder::new(spec.iam_log.clone()).by(spec.iam_by.clone());
    let mut function_env = Vec::new();
    let mut clients = Vec::new();
    for function in FUNCTIONS {
        let env = function_environment(&template, function, &spec.env)?;
        let guard = Guard::new(
            function,
            template.function_policy(function)?,
            &region,
            recorder.clone(),
        );
        function_env.push((function.to_string(), env));
        clients.push(Clients::new(sdk, guard));
    }
    let env = |i: usize| &function_env[i].1;

    // The schema step first, as the template orders it: the database, its
    // migrations, the functions' user.
    let step = again(|| SchemaConfig::load(env(4), &clients[4].secrets)).await?;
    schema::apply(&step).await?;
    let api = again(|| ApiConfig::load(env(0), &clients[0].secrets)).await?;
    let app = App::from_config(&api, clients[0].s3.clone(), sdk.credentials_provider());
    let converter = Converter::from_config(
        &ConverterConfig::load(env(1))?,
        clients[1].s3.clone(),
        clients[1].sqs.clone(),
    );
    let sweep = again(|| SweeperConfig::load(env(3), &clients[3].secrets)).await?;
    let sweeper = Arc::new(Sweeper::from_config(
        &sweep,
        clients[3].s3.clone(),
        clients[3].sqs.clone(),
        sdk.credentials_provider(),
        Connections::from_builder(clients[3].connections.clone(), &sweep.notify.endpoint),
    ));
    let sweep_every = schedule_rate(&template, "SweeperFunction")?;
    let fin = again(|| FinalizerConfig::load(env(2), &clients[2].secrets)).await?;
    let store = MySqlStore::connect(&fin.db, fin.db_pool_max);
    let finalizer = Finalizer {
        notify: Notifier::from_config(
            &fin.notify,
            store.clone(),
            clients[2].s3.clone(),
            sdk.credentials_provider(),
            Connections::from_builder(clients[2].connections.clone(), &fin.notify.endpoint),
        ),
        store,
    };
    let events = Arc::new(Events::from_config(
        &again(|| EventsConfig::load(env(5), &clients[5].secrets)).await?,
    ));
    Ok(Parts {
        running: Running {
            app,
            queues,
            recorder,
            function_env,
            schema_secrets: clients[4].secrets.clone(),
            cors: crate::cors::Cors::from_template(&template)?,
            pipeline: None,
            sweeper: None,
            events,
        },
        converter,
        finalizer,
        sweeper,
        sweep_every,
        spec,
        admin_sqs,
        region,
    })
}

impl Parts {
    /// Starts the pollers that play the template's event source mappings,
    /// and the sweeper on the template's schedule.
    pub fn run_pipeline(self) -> Running {
        let (sweeper, every) = (Arc::clone(&self.sweeper), self.sweep_every);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.tick().await;
            loop {
                tick.tick().await;
                if let Err(e) = sweeper.run().await {
                    tracing::warn!(error = %e, "sweep failed; the next one retries");
                }
            }
        });
        let pipeline = Arc::new(Pipeline::new(
            self.admin_sqs,
            self.region,
            &self.running.queues,
            self.converter,
            self.finalizer,
            self.spec.poll_wait,
        ));
        pipeline.start(Function::Converter);
        pipeline.start(Function::Finalizer);
        Running {
            pipeline: Some(pipeline),
            sweeper: Some(self.sweeper),
            ..self.running
        }
    }
}

/// `step` up to five times: moto 5.1.22 races under concurrent calls
/// (CreateQueue with a redrive policy, GetSecretValue: a 500 "dictionary
/// changed size during iteration"), which many stacks starting at once
/// meet. CloudFormation retries its own calls too; in Lambda a failed
/// configuration load is retried by the next request.
async fn again<T, E, F, Fut>(step: F) -> Result<T, E>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
    E: std::fmt::Display,
{
    let mut attempt = 1;
    loop {
        match step().await {
            Err(e) if attempt < 5 => {
                tracing::warn!(error = %e, attempt, "local stack set-up failed; again");
                tokio::time::sleep(Duration::from_millis(100 * attempt)).await;
                attempt += 1;
            }
            r => return r,
        }
    }
}

/// The clients of one function, held to its policy.
struct Clients {
    s3: aws_sdk_s3::Client,
    sqs: aws_sdk_sqs::Client,
    secrets: aws_sdk_secretsmanager::Client,
    /// The management API's, without its endpoint (the function's
    /// configuration names it).
    connections: aws_sdk_apigatewaymanagement::config::Builder,
}

impl Clients {
    fn new(sdk: &aws_config::SdkConfig, guard: Guard) -> Self {
        let http = guarded_http_client();
        Clients {
            s3: aws_sdk_s3::Client::from_conf(
                aws_sdk_s3::config::Builder::from(sdk)
                    // The guard reads bucket and key from the path.
                    .force_path_style(true)
                    .http_client(http.clone())
                    .interceptor(guard.clone())
                    .build(),
            ),
            sqs: aws_sdk_sqs::Client::from_conf(
                aws_sdk_sqs::config::Builder::from(sdk)
                    .http_client(http.clone())
                    .interceptor(guard.clone())
                    .build(),
            ),
            secrets: aws_sdk_secretsmanager::Client::from_conf(
                aws_sdk_secretsmanager::config::Builder::from(sdk)
                    .http_client(http.clone())
                    .interceptor(guard.clone())
                    .build(),
            ),
            connections: aws_sdk_apigatewaymanagement::config::Builder::from(sdk)
                .http_client(http)
                .interceptor(guard),
        }
    }
}

/// A function's variables as the template declares them (`Globals`, then
/// the function's own), resolved for this stack, then `overrides`.
pub fn function_environment(
    template: &Template,
    function: &str,
    overrides: &[(String, String)],
) -> Result<Env, BoxError> {
    let mut env = Env::default();
    for vars in [
        &template.doc()["Globals"]["Function"]["Environment"]["Variables"],
        &template.properties(function)?["Environment"]["Variables"],
    ] {
        if vars.is_null() {
            continue;
        }
        let crate::template::Resolved::Map(m) = template.resolve(vars)? else {
            return Err(format!("{function}: Environment.Variables is not a mapping").into());
        };
        for (k, v) in m {
            let value = match v {
                crate::template::Resolved::Bool(b) => b.to_string(),
                other => other
                    .as_str()
                    .ok_or_else(|| format!("{function}: {k} is not a string"))?
                    .to_owned(),
            };
            env = env.with(&k, value);
        }
    }
    for (k, v) in overrides {
        env = env.with(k, v.clone());
    }
    Ok(env)
}

/// The period of a function's `ScheduleV2` event, `rate(N minutes)` (or
/// seconds, hours): the local stack runs it as often.
pub fn schedule_rate(template: &Template, function: &str) -> Result<Duration, BoxError> {
    let events = template.properties(function)?["Events"]
        .as_mapping()
        .ok_or_else(|| format!("{function} has no Events"))?;
    for (_, ev) in events {
        if ev["Type"].as_str() != Some("ScheduleV2") {
            continue;
        }
        let expr = ev["Properties"]["ScheduleExpression"]
            .as_str()
            .ok_or("ScheduleExpression is not a string")?;
        let inner = expr
            .strip_prefix("rate(")
            .and_then(|e| e.strip_suffix(')'))
            .ok_or_else(|| format!("{function}: only rate(...) schedules run locally: {expr}"))?;
        let (n, unit) = inner.split_once(' ').ok_or("rate(N unit)")?;
        let n: u64 = n.parse()?;
        let secs = match unit.trim_end_matches('s') {
            "minute" => 60,
            "hour" => 3600,
            "day" => 86_400,
            other => return Err(format!("rate unit {other}").into()),
        };
        return Ok(Duration::from_secs(n * secs));
    }
    Err(format!("{function} has no ScheduleV2 event").into())
}

/// 48 random characters for the cursor key, as the template's
/// `GenerateSecretString` makes in AWS.
fn random_key() -> String {
    let mut s = uuid::Uuid::new_v4().simple().to_string();
    s.push_str(&uuid::Uuid::new_v4().simple().to_string()[..16]);
    s
}
