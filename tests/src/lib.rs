//! Test harness: a fresh database and bucket per test, the real gateway on
//! port 0 in front of them, and helpers to call it. Needs the local MariaDB
//! and moto (scripts/test starts them); a test that cannot reach them fails.

use std::sync::Arc;
use std::time::Duration;

use imagegram::api::App;
use imagegram::config::DbConfig;
use imagegram::domain::{PostId, PostStatus};
use imagegram::objects::S3Objects;
use imagegram::store::{MySqlStore, migrate};
use imagegram_local::auth::{DevAuthorizer, mint};
use imagegram_local::gateway::Gateway;
use imagegram_local::guard::Recorder;
use imagegram_local::stack::{self, Database, Parts, Spec, TemplateSource};
use mysql_async::prelude::*;
use serde_json::Value;

pub mod faults;
pub mod images;
pub mod spec;

pub const JWT_SECRET: &str = "test-jwt-secret";

/// The local stack's database URL, as scripts/lib.sh exports it.
pub fn base_database_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "mysql://imagegram:imagegram@127.0.0.1:3306/imagegram".into())
}

fn unique(prefix: &str) -> String {
    format!(
        "{prefix}{}",
        &uuid::Uuid::now_v7().simple().to_string()[16..]
    )
}

/// The server, user and password of [`base_database_url`], for `name`.
fn database_named(name: &str) -> Database {
    let base = base_database_url();
    let rest = base
        .strip_prefix("mysql://")
        .expect("DATABASE_URL is mysql://");
    let (login, rest) = rest.split_once('@').expect("user:password@host");
    let (user, password) = login.split_once(':').expect("user:password");
    let hostport = rest.split('/').next().unwrap_or(rest);
    let (host, port) = hostport.split_once(':').unwrap_or((hostport, "3306"));
    Database {
        host: host.to_owned(),
        port: port.parse().expect("port"),
        user: user.to_owned(),
        password: password.to_owned(),
        name: name.to_owned(),
        // scripts/lib.sh makes this user, as RDS makes its master.
        master_user: "imagegram_master".to_owned(),
        master_password: "imagegram-master".to_owned(),
    }
}

pub fn db_config(d: &Database) -> DbConfig {
    DbConfig {
        host: d.host.clone(),
        port: d.port,
        user: d.user.clone(),
        password: imagegram::config::Secret::new(d.password.clone()),
        database: d.name.clone(),
        tls: false,
        timeout: Duration::from_secs(10),
        reload: None,
    }
}

/// The server's master user (scripts/lib.sh creates it, as RDS has one):
/// it may create users and grant what it has.
pub async fn master_pool() -> mysql_async::Pool {
    let d = database_named("mysql");
    let opts = mysql_async::OptsBuilder::default()
        .ip_or_hostname(d.host)
        .tcp_port(d.port)
        .user(Some(d.master_user))
        .pass(Some(d.master_password))
        .prefer_socket(false);
    mysql_async::Pool::new(opts)
}

/// A database of its own, created (not migrated).
pub async fn create_database() -> Database {
    let base = base_database_url();
    let server = base
        .rsplit_once('/')
        .expect("DATABASE_URL ends in /dbname")
        .0
        .to_owned();
    let name = unique("imagegram_t_");
    // TCP only: mysql_async otherwise moves to the unix socket the server
    // names, which on a machine running both servers may be the other's.
    let admin = mysql_async::Pool::new(format!("{server}?prefer_socket=false").as_str());
    let mut conn = admin.get_conn().await.unwrap_or_else(|e| {
        panic!("cannot reach MariaDB at {server} ({e}); run scripts/test, which starts it")
    });
    conn.query_drop(format!(
        "CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"
    ))
    .await
    .expect("create test database");
    drop(conn);
    admin.disconnect().await.ok();
    database_named(&name)
}

/// A database of its own, migrated.
pub async fn fresh_database() -> (Database, MySqlStore) {
    let db = create_database().await;
    let store = MySqlStore::connect(&db_config(&db), 16);
    migrate(&store.pool())
        .await
        .expect("migrations apply to a fresh database");
    (db, store)
}

/// moto's address: `AWS_ENDPOINT_URL` (scripts/lib.sh exports it), or its
/// default, so a bare `cargo test` reaches the same moto.
pub fn moto_endpoint() -> String {
    std::env::var("AWS_ENDPOINT_URL").unwrap_or_else(|_| "http://127.0.0.1:4566".into())
}

/// moto's address, for a fault proxy in front of it.
pub fn moto_addr() -> std::net::SocketAddr {
    moto_endpoint()
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .parse()
        .expect("AWS_ENDPOINT_URL is http://HOST:PORT")
}

/// The functions' SDK configuration (their timeouts and retries), for moto
/// at `endpoint`.
pub async fn sdk_config_for(endpoint: &str) -> aws_config::SdkConfig {
    let loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(aws_config::Region::new(
            std::env::var("AWS_REGION").unwrap_or_else(|_| "us-east-1".into()),
        ))
        .credentials_provider(aws_sdk_s3::config::Credentials::new(
            "local", "local", None, None, "tests",
        ));
    imagegram::config::aws_sdk_from(loader).await
}

pub async fn sdk_config() -> aws_config::SdkConfig {
    sdk_config_for(&moto_endpoint()).await
}

/// The template of this checkout.
pub fn template_text() -> String {
    std::fs::read_to_string(imagegram_local::template::default_path()).expect("template.yaml")
}

/// A stack of its own: a fresh database, and a bucket, queues and secrets
/// named after it, from this checkout's template; `custom` may change the
/// spec (the template's text, the functions' variables) first.
pub async fn build_stack(custom: impl FnOnce(&mut Spec)) -> (Parts, Spec) {
    build_stack_with(custom, sdk_config().await).await
}

/// [`build_stack`] with an SDK configuration of the test's (an endpoint
/// behind a fault proxy).
pub async fn build_stack_with(
    custom: impl FnOnce(&mut Spec),
    sdk: aws_config::SdkConfig,
) -> (Parts, Spec) {
    let name = unique("imagegram-t-");
    let mut spec = Spec {
        name: name.clone(),
        bucket: name,
        database: create_database().await,
        template: TemplateSource::Path(imagegram_local::template::default_path()),
        env: vec![
            ("DATABASE_TLS".into(), "false".into()),
            ("DB_POOL_MAX".into(), "16".into()),
        ],
        // A short visibility timeout: a failed message comes back in a
        // second, so the dead-letter path takes seconds, not minutes.
        visibility_secs: 1,
        poll_wait: Duration::from_secs(1),
        iam_log: None,
        // The test's own name: libtest runs each test on a thread so named.
        iam_by: std::thread::current().name().map(str::to_owned),
    };
    custom(&mut spec);
    // Calls of stacks run from the checked-in template go to the run's IAM
    // log (scripts/test reports on it); a test that changed the template
    // expects refusals.
    if matches!(spec.template, TemplateSource::Path(_)) {
        spec.iam_log = std::env::var_os("IMAGEGRAM_IAM_LOG")
            .filter(|p| !p.is_empty())
            .map(Into::into);
    }
    let parts = stack::build(spec.clone(), &sdk).await.unwrap_or_else(|e| {
        panic!(
            "cannot build the local stack ({e:?}); run scripts/test, which starts MariaDB and moto"
        )
    });
    (parts, spec)
}

/// The `(part_number, etag)`s ListParts shows for a multipart upload.
pub async fn listed_parts(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    upload_id: &str,
) -> Vec<(i32, String)> {
    let out = s3
        .list_parts()
        .bucket(bucket)
        .key(key)
        .upload_id(upload_id)
        .send()
        .await
        .unwrap();
    out.parts()
        .iter()
        .map(|p| (p.part_number().unwrap(), p.e_tag().unwrap().to_owned()))
        .collect()
}

/// A bucket of its own in moto (CORS rule from the template).
pub async fn fresh_bucket(s3: &aws_sdk_s3::Client) -> String {
    let bucket = unique("imagegram-t-");
    let mut stack = imagegram_local::template::Stack::new("t", stack::ACCOUNT, "us-east-1");
    stack.placeholders = true;
    let template =
        imagegram_local::template::Template::parse(&template_text(), stack).expect("template");
    imagegram_local::bootstrap::bucket(s3, &bucket, &template)
        .await
        .unwrap_or_else(|e| {
            panic!("cannot create a bucket in moto ({e}); run scripts/test, which starts it")
        });
    bucket
}

/// The real gateway and handlers on 127.0.0.1:0, over a stack of its own.
pub struct TestApp {
    pub base: String,
    pub sqs: aws_sdk_sqs::Client,
    pub queues: imagegram_local::bootstrap::Queues,
    pub http: reqwest::Client,
    pub db: mysql_async::Pool,
    pub database: Database,
    pub s3: aws_sdk_s3::Client,
    pub bucket: String,
    /// Every AWS call the functions made, with the policy's verdict.
    pub recorder: Recorder,
    pub gateway: Arc<Gateway<MySqlStore, S3Objects>>,
    /// The pollers, to stop and start a function's.
    pub pipeline: Arc<imagegram_local::pipeline::Pipeline<MySqlStore>>,
    /// The sweeper, to run it now.
    pub sweeper: Arc<imagegram::pipeline::sweeper::Deployed>,
    /// The database directly (never through a fault proxy), to look.
    pub direct_db: mysql_async::Pool,
    /// The schema function's variables and its Secrets Manager client (held
    /// to its policy), to run the deploy's step as CloudFormation would.
    pub schema_env: imagegram::config::Env,
    pub schema_secrets: aws_sdk_secretsmanager::Client,
}

pub async fn spawn_app() -> TestApp {
    spawn_app_spec(|_| {}).await
}

/// Like [`spawn_app`], with a chance to change the stack's spec.
pub async fn spawn_app_spec(custom: impl FnOnce(&mut Spec)) -> TestApp {
    spawn_app_with(custom, sdk_config().await).await
}

/// Like [`spawn_app_spec`], with the SDK configuration of the test's.
pub async fn spawn_app_with(custom: impl FnOnce(&mut Spec), sdk: aws_config::SdkConfig) -> TestApp {
    // Logs go to the test's captured output: shown for failing tests only.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_test_writer()
        .try_init();
    // Bound first: the functions' notification endpoints name it.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (parts, spec) = build_stack_with(
        |spec| {
            spec.env.extend(stack::events_env(addr));
            custom(spec)
        },
        sdk,
    )
    .await;
    let running = parts.run_pipeline();
    let sdk = sdk_config().await;
    let direct_db = {
        let mut d = spec.database.clone();
        let real = database_named(&d.name);
        (d.host, d.port) = (real.host, real.port);
        MySqlStore::connect(&db_config(&d), 4).pool().clone()
    };
    let s3 = aws_sdk_s3::Client::new(&sdk);
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let db = running.app.store.pool().clone();
    let base = format!("http://{addr}");
    let hub = imagegram_local::websocket::Hub::for_events(
        Arc::clone(&running.events),
        Default::default(),
    );
    let gateway = Arc::new(
        Gateway::new(running.app, DevAuthorizer::new(JWT_SECRET))
            .with_cors(running.cors.clone())
            .with_events(hub),
    );
    tokio::spawn(Arc::clone(&gateway).serve(listener));
    TestApp {
        base,
        sqs,
        queues: running.queues,
        http: {
            let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
            reqwest::Client::new()
        },
        db,
        database: spec.database,
        s3,
        bucket: spec.bucket,
        recorder: running.recorder,
        gateway,
        pipeline: running.pipeline.expect("started"),
        sweeper: running.sweeper.expect("started"),
        direct_db,
        schema_env: running
            .function_env
            .iter()
            .find(|(f, _)| f == "SchemaFunction")
            .expect("the schema function's variables")
            .1
            .clone(),
        schema_secrets: running.schema_secrets,
    }
}

impl TestApp {
    pub fn app(&self) -> &App<MySqlStore, S3Objects> {
        self.gateway.app()
    }
}

pub fn token(sub: &str) -> String {
    mint(JWT_SECRET, sub, Some(3600))
}

/// A response, read whole.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub body: Value,
    pub headers: reqwest::header::HeaderMap,
}

impl Reply {
    /// The error code of a contract error body; panics on any other shape.
    pub fn error_code(&self) -> &str {
        let msg = self.body["error"]["message"].as_str();
        assert!(
            msg.is_some_and(|m| !m.is_empty()),
            "error body without message: {}",
            self.body
        );
        self.body["error"]["code"]
            .as_str()
            .unwrap_or_else(|| panic!("not an error body: {}", self.body))
    }
}

impl TestApp {
    /// Calls the API; the answer is held to openapi.yaml.
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        user: Option<&str>,
        body: Option<&str>,
    ) -> Reply {
        let r = self.call_unchecked(method, path, user, body).await;
        check_against_spec(method, path, r.status, &r.body);
        r
    }

    /// Calls the API without holding the answer to openapi.yaml: for a
    /// stack broken on purpose (a grant removed), whose 500s no document
    /// declares.
    pub async fn call_unchecked(
        &self,
        method: &str,
        path: &str,
        user: Option<&str>,
        body: Option<&str>,
    ) -> Reply {
        let mut req = self
            .http
            .request(method.parse().unwrap(), format!("{}{path}", self.base))
            .timeout(Duration::from_secs(30));
        if let Some(u) = user {
            req = req.bearer_auth(token(u));
        }
        if let Some(b) = body {
            req = req
                .header("content-type", "application/json")
                .body(b.to_owned());
        }
        let resp = req.send().await.expect("gateway answers");
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = resp.text().await.unwrap();
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text)
                .unwrap_or_else(|_| panic!("{method} {path}: body is not JSON: {text}"))
        };
        Reply {
            status,
            body,
            headers,
        }
    }

    pub async fn get(&self, path: &str, user: &str) -> Reply {
        self.call("GET", path, Some(user), None).await
    }

    pub async fn comment(&self, post: &str, user: &str, content: &str) -> Reply {
        let body = serde_json::json!({ "content": content }).to_string();
        self.call(
            "POST",
            &format!("/posts/{post}/comments"),
            Some(user),
            Some(&body),
        )
        .await
    }

    /// A comment as a well-behaved client makes one under load: with an
    /// `Idempotency-Key`, and retried as `Retry-After` says after a 503 (the
    /// database's budget ran out while others held the post's lock) or a
    /// 409 (the first attempt still in progress), up to 20 times. So a test
    /// of concurrency counts what the contract promises (nothing
    /// acknowledged lost, nothing created twice), not how fast this machine
    /// is at the moment.
    pub async fn comment_as_client(&self, post: &str, user: &str, content: &str) -> Reply {
        let key = uuid::Uuid::new_v4().to_string();
        let body = serde_json::json!({ "content": content }).to_string();
        let path = format!("/posts/{post}/comments");
        for _ in 0..20 {
            let resp = self
                .http
                .post(format!("{}{path}", self.base))
                .timeout(Duration::from_secs(30))
                .bearer_auth(token(user))
                .header("content-type", "application/json")
                .header("idempotency-key", &key)
                .body(body.clone())
                .send()
                .await
                .expect("gateway answers");
            let status = resp.status().as_u16();
            let headers = resp.headers().clone();
            let body: Value = serde_json::from_str(&resp.text().await.unwrap()).unwrap();
            check_against_spec("POST", &path, status, &body);
            if status == 503 || status == 409 && body["error"]["reason"] == "in_progress" {
                let wait: u64 = headers
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok()?.parse().ok())
                    .unwrap_or(1);
                tokio::time::sleep(Duration::from_secs(wait.min(5))).await;
                continue;
            }
            return Reply {
                status,
                body,
                headers,
            };
        }
        panic!("{path}: still refused after 20 tries");
    }

    /// A post made by the store's own operations (`imagegram_local::fixtures`),
    /// as the API and the pipeline would leave it, with `comments` comments
    /// (by "commenter") once published.
    pub async fn insert_post(&self, author: &str, status: PostStatus, comments: u32) -> PostId {
        insert_post(&self.app().store, author, status, comments).await
    }
}

pub async fn insert_post(
    store: &MySqlStore,
    author: &str,
    status: PostStatus,
    comments: u32,
) -> PostId {
    let fixture = imagegram_local::fixtures::PostFixture::new(author, status);
    let caption = format!("caption of {}", fixture.id);
    let fixture = imagegram_local::fixtures::PostFixture {
        caption: &caption,
        ..fixture
    }
    .with_comments(comments, "commenter");
    imagegram_local::fixtures::post(store, &fixture)
        .await
        .unwrap()
}

impl TestApp {
    /// `POST /posts`; panics unless 201.
    pub async fn create_post(&self, user: &str, content_type: &str, size: usize) -> Value {
        let body = serde_json::json!({ "caption": "test", "content_type": content_type, "size_bytes": size });
        let r = self
            .call("POST", "/posts", Some(user), Some(&body.to_string()))
            .await;
        assert_eq!(r.status, 201, "{:?}", r.body);
        r.body
    }

    /// PUTs one part to its presigned URL with a plain HTTP client, as a
    /// browser would; returns the ETag S3 answered.
    pub async fn put_part(&self, url: &str, bytes: Vec<u8>) -> String {
        let resp = self
            .http
            .put(url)
            .body(bytes)
            .send()
            .await
            .expect("S3 answers");
        assert!(resp.status().is_success(), "PUT part: {}", resp.status());
        resp.headers()["etag"].to_str().unwrap().to_owned()
    }

    /// Uploads every part of `bytes` to the URLs of a `POST /posts` answer.
    pub async fn upload_all(&self, created: &Value, bytes: &[u8]) {
        let part_size = created["upload"]["part_size"].as_u64().unwrap() as usize;
        for part in created["upload"]["parts"].as_array().unwrap() {
            let n = part["part_number"].as_u64().unwrap() as usize;
            let chunk = bytes[(n - 1) * part_size..(n * part_size).min(bytes.len())].to_vec();
            self.put_part(part["url"].as_str().unwrap(), chunk).await;
        }
    }

    /// Creates a post, uploads `bytes` and completes: the whole client side.
    pub async fn post_image(&self, user: &str, content_type: &str, bytes: &[u8]) -> String {
        let created = self.create_post(user, content_type, bytes.len()).await;
        self.upload_all(&created, bytes).await;
        let id = created["post"]["id"].as_str().unwrap().to_owned();
        let r = self
            .call(
                "POST",
                &format!("/posts/{id}/upload/complete"),
                Some(user),
                None,
            )
            .await;
        assert_eq!(r.status, 202, "{:?}", r.body);
        assert_eq!(r.body["status"], "processing");
        id
    }

    /// Polls the post (as its author) until it is published or failed.
    pub async fn wait_until_final(&self, id: &str, user: &str) -> Value {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            let r = self.get(&format!("/posts/{id}"), user).await;
            assert_eq!(r.status, 200, "{:?}", r.body);
            if matches!(r.body["status"].as_str(), Some("published" | "failed")) {
                return r.body;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "post {id} still {} after 60 s",
                r.body["status"]
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Fetches a published post's image; asserts it is served as a JPEG.
    pub async fn fetch_image(&self, post: &Value) -> image::RgbImage {
        let url = post["image_url"]
            .as_str()
            .expect("published posts have an image URL");
        let resp = self.http.get(url).send().await.unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["content-type"], "image/jpeg");
        let bytes = resp.bytes().await.unwrap();
        assert_eq!(
            image::guess_format(&bytes).unwrap(),
            image::ImageFormat::Jpeg
        );
        image::load_from_memory(&bytes).unwrap().into_rgb8()
    }

    /// Multipart uploads still open in this app's bucket.
    pub async fn open_uploads(&self) -> usize {
        let out = self
            .s3
            .list_multipart_uploads()
            .bucket(&self.bucket)
            .send()
            .await
            .unwrap();
        out.uploads().len()
    }

    pub async fn object_exists(&self, key: &str) -> bool {
        self.s3
            .head_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .is_ok()
    }
}

/// Waits up to 30 s for `check` to hold.
pub async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !check().await {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

impl TestApp {
    /// Messages in a queue, visible or in flight.
    pub async fn queue_depth(&self, url: &str) -> u64 {
        use aws_sdk_sqs::types::QueueAttributeName as A;
        let attrs = self
            .sqs
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(A::ApproximateNumberOfMessages)
            .attribute_names(A::ApproximateNumberOfMessagesNotVisible)
            .send()
            .await
            .unwrap();
        let a = attrs.attributes().unwrap();
        a[&A::ApproximateNumberOfMessages].parse::<u64>().unwrap()
            + a[&A::ApproximateNumberOfMessagesNotVisible]
                .parse::<u64>()
                .unwrap()
    }

    /// Moves a post's upload deadline a second into the past.
    pub async fn expire_upload(&self, post: &str) {
        let id = PostId::parse(post).unwrap();
        let mut conn = self.direct_db.get_conn().await.unwrap();
        conn.exec_drop(
            "UPDATE posts SET upload_expires_at = NOW(3) - INTERVAL 1 SECOND WHERE id = ?",
            (id.as_bytes(),),
        )
        .await
        .unwrap();
    }

    /// The `(part_number, etag)`s S3 holds for a post's upload.
    pub async fn s3_parts(&self, post: &str) -> Vec<(i32, String)> {
        let upload = self.upload_id(post).await;
        listed_parts(
            &self.s3,
            &self.bucket,
            &format!("originals/{post}"),
            &upload,
        )
        .await
    }

    async fn upload_id(&self, post: &str) -> String {
        self.post_upload_id(post)
            .await
            .expect("the post has an open upload")
    }

    /// The multipart upload a post records, if any (the post must exist).
    pub async fn post_upload_id(&self, post: &str) -> Option<String> {
        let id = PostId::parse(post).unwrap();
        let mut conn = self.direct_db.get_conn().await.unwrap();
        conn.exec_first::<Option<String>, _, _>(
            "SELECT upload_id FROM posts WHERE id = ?",
            (id.as_bytes(),),
        )
        .await
        .unwrap()
        .expect("the post exists")
    }

    /// Completes a post's multipart upload in S3 directly, behind the API's
    /// back (as a `complete` whose answer was lost would have).
    pub async fn complete_in_s3(&self, post: &str, _created: &Value, parts: Vec<(i32, String)>) {
        use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
        let upload = self.upload_id(post).await;
        let done = CompletedMultipartUpload::builder()
            .set_parts(Some(
                parts
                    .into_iter()
                    .map(|(n, e)| CompletedPart::builder().part_number(n).e_tag(e).build())
                    .collect(),
            ))
            .build();
        self.s3
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(format!("originals/{post}"))
            .upload_id(upload)
            .multipart_upload(done)
            .send()
            .await
            .unwrap();
    }
}

/// Holds an answer of the API to `openapi.yaml`: the route the gateway
/// matched, the status declared, the body of that status's schema. Paths
/// that match no route (404 `no such route`) are the gateway's own.
pub fn check_against_spec(method: &str, path: &str, status: u16, body: &Value) {
    let path = path.split('?').next().unwrap_or(path);
    let route = imagegram::api::ROUTES
        .iter()
        .map(|k| imagegram_local::gateway::RoutePattern::parse(k))
        .find(|r| r.method == method && r.matches(path).is_some());
    if let Some(route) = route
        && let Err(e) = spec::spec().check(route.key, status, body)
    {
        panic!("{e}");
    }
}
