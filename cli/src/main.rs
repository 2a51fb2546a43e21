//! `imagegram`: the Imagegram API from a terminal. Posts photos through
//! resumable multipart uploads straight to S3 (parts in parallel, retried
//! with backoff, re-signed when their URLs expire, checked with
//! Content-MD5, resumed after a crash by running the same command again),
//! reads the feed, comments.
//!
//! Configuration: `--api`/`--token`, or `IMAGEGRAM_API`/`IMAGEGRAM_TOKEN`,
//! or `api`/`token` in `$XDG_CONFIG_HOME/imagegram/config.json`.

mod api;
mod events;
mod state;
mod upload;

use imagegram_formats::ImageFormat;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::OnceLock;

use clap::{Parser, Subcommand};
use serde_json::{Value, json};

#[derive(Parser)]
#[command(
    name = "imagegram",
    version,
    about = "Post photos to Imagegram, read the feed, comment"
)]
struct Cli {
    /// API base URL (or IMAGEGRAM_API, or "api" in the config file).
    #[arg(long, global = true, env = "IMAGEGRAM_API", hide_env_values = true)]
    api: Option<String>,
    /// Bearer token (or IMAGEGRAM_TOKEN, or "token" in the config file).
    #[arg(long, global = true, env = "IMAGEGRAM_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Print JSON for scripts: the command's result as the API gives it.
    #[arg(long, global = true)]
    json: bool,
    /// Say what is retried and why.
    #[arg(long, short, global = true)]
    verbose: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Post an image: upload it (resumable), then wait until it is
    /// published. Run it again after an interruption to finish the upload.
    Post {
        file: PathBuf,
        #[arg(long, default_value = "")]
        caption: String,
        /// Parts uploaded at once.
        #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=32))]
        parallel: u16,
        /// Return once the upload is complete, without waiting for the
        /// conversion.
        #[arg(long)]
        no_wait: bool,
        /// Seconds a part may make no progress before it is cancelled and
        /// sent again.
        #[arg(long, default_value_t = 20.0, value_parser = stall_secs)]
        stall_timeout: f64,
    },
    /// The feed: published posts by comment count, newest first.
    Feed {
        #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u16).range(1..=100))]
        limit: u16,
        /// Every page, not just the first.
        #[arg(long)]
        all: bool,
    },
    /// One post.
    Show { post: String },
    /// Comment on a post.
    Comment { post: String, text: String },
    /// A post's comments, newest first.
    Comments {
        post: String,
        #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u16).range(1..=100))]
        limit: u16,
        #[arg(long)]
        all: bool,
    },
    /// Delete a comment of yours.
    Uncomment { post: String, comment: String },
    /// Uploads started on this machine and not finished.
    Uploads,
    /// Abort the upload of a post (the post is gone).
    Abort { post: String },
}

/// Why a command failed, and its exit code: 2 for usage, 1 otherwise.
#[derive(Debug)]
pub struct Failure {
    message: String,
    code: u8,
}

impl Failure {
    pub fn usage(message: impl Into<String>) -> Self {
        Failure {
            message: message.into(),
            code: 2,
        }
    }

    pub fn unexpected(message: impl Into<String>) -> Self {
        Failure {
            message: message.into(),
            code: 1,
        }
    }

    pub fn network(api: &str, e: reqwest::Error) -> Self {
        Failure::network_msg(format!("cannot reach the API at {api}: {e}"))
    }

    pub fn network_msg(message: String) -> Self {
        Failure { message, code: 1 }
    }

    /// The API's error body as one line a person can act on.
    pub fn api(status: u16, body: &Value) -> Self {
        let code = body["error"]["code"].as_str().unwrap_or("");
        let message = body["error"]["message"]
            .as_str()
            .or_else(|| body["message"].as_str())
            .map(str::to_owned)
            .unwrap_or_else(|| body.to_string());
        let hint: String = match status {
            401 => "; set IMAGEGRAM_TOKEN (or --token) to a token the API accepts (locally: \
                    target/release/imagegram-local token YOUR_NAME)"
                .into(),
            413 => "; images may be at most 100 MiB".into(),
            415 => format!("; only {} images are accepted", ImageFormat::names()),
            429 => "; wait, or finish or abort an upload (imagegram uploads, imagegram abort POST)"
                .into(),
            503 => "; the service is briefly unavailable, try again shortly".into(),
            _ => String::new(),
        };
        Failure::unexpected(format!("{status} {code}: {message}{hint}"))
    }

    /// What went wrong, for a person.
    pub fn message(&self) -> &str {
        &self.message
    }

    pub fn context(mut self, what: &str) -> Self {
        self.message = format!("{}: {what}", self.message);
        self
    }
}

static VERBOSE: OnceLock<bool> = OnceLock::new();

pub fn verbose(line: &str) {
    if *VERBOSE.get().unwrap_or(&false) {
        eprintln!("imagegram: {line}");
    }
}

pub fn info(line: &str) {
    eprintln!("imagegram: {line}");
}

pub fn human_bytes(n: u64) -> String {
    if n >= 1 << 20 {
        format!("{:.1} MiB", n as f64 / f64::from(1 << 20))
    } else {
        format!("{:.1} KiB", n as f64 / 1024.0)
    }
}

/// The one HTTP client: rustls with aws-lc-rs.
pub fn http() -> &'static reqwest::Client {
    static HTTP: OnceLock<reqwest::Client> = OnceLock::new();
    HTTP.get_or_init(|| {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        reqwest::Client::builder()
            .connect_timeout(std::time::Duration::from_secs(10))
            .build()
            .expect("HTTP client")
    })
}

fn config_file() -> Value {
    let Some(dirs) = directories::ProjectDirs::from("", "", "imagegram") else {
        return Value::Null;
    };
    std::fs::read(dirs.config_dir().join("config.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or(Value::Null)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let _ = VERBOSE.set(cli.verbose);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("imagegram: {}", f.message);
            ExitCode::from(f.code)
        }
    }
}

async fn run(cli: Cli) -> Result<(), Failure> {
    let config = config_file();
    let api_url = cli
        .api
        .clone()
        .or_else(|| config["api"].as_str().map(str::to_owned))
        .ok_or_else(|| {
            Failure::usage("no API: set IMAGEGRAM_API (locally http://127.0.0.1:3000) or --api")
        })?;
    let token = cli
        .token
        .clone()
        .or_else(|| config["token"].as_str().map(str::to_owned))
        .ok_or_else(|| {
            Failure::usage(
                "no token: set IMAGEGRAM_TOKEN or --token (locally: \
                 target/release/imagegram-local token YOUR_NAME)",
            )
        })?;
    let api = api::Api::new(&api_url, &token, http().clone());
    let json_out = cli.json;
    let out = |v: &Value, human: String| {
        if json_out {
            println!("{v}");
        } else {
            println!("{human}");
        }
    };
    use reqwest::Method;
    match cli.command {
        Command::Post {
            file,
            caption,
            parallel,
            no_wait,
            stall_timeout,
        } => {
            let post = upload::post(
                &api,
                &file,
                &upload::Options {
                    caption,
                    parallel: usize::from(parallel),
                    wait: !no_wait,
                    progress: std::io::stderr().is_terminal() && !json_out,
                    stall: std::time::Duration::from_secs_f64(stall_timeout),
                },
            )
            .await?;
            let human = match post["status"].as_str() {
                Some("published") => {
                    format!("published: {}", post["image_url"].as_str().unwrap_or(""))
                }
                Some("failed") => format!(
                    "failed: {}",
                    post["failure_reason"].as_str().unwrap_or("no reason given")
                ),
                _ => format!(
                    "{} {}",
                    post["id"].as_str().unwrap_or(""),
                    post["status"].as_str().unwrap_or("")
                ),
            };
            out(&post, human);
            if post["status"] == "failed" {
                return Err(Failure::unexpected("the image was not published"));
            }
        }
        Command::Feed { limit, all } => {
            let posts = pages(&api, "/posts", limit, all, "posts").await?;
            let human = posts.iter().map(post_line).collect::<Vec<_>>().join("\n");
            out(&json!(posts), human);
        }
        Command::Show { post } => {
            let p = api
                .expect(Method::GET, &format!("/posts/{post}"), None, None)
                .await?;
            let mut human = post_line(&p);
            for c in p["last_comments"].as_array().into_iter().flatten() {
                human.push_str(&format!("\n  {}", comment_line(c)));
            }
            out(&p, human);
        }
        Command::Comment { post, text } => {
            let key = uuid::Uuid::new_v4().to_string();
            let c = api
                .expect(
                    Method::POST,
                    &format!("/posts/{post}/comments"),
                    Some(&json!({ "content": text })),
                    Some(&key),
                )
                .await?;
            out(&c, comment_line(&c));
        }
        Command::Comments { post, limit, all } => {
            let comments = pages(
                &api,
                &format!("/posts/{post}/comments"),
                limit,
                all,
                "comments",
            )
            .await?;
            let human = comments
                .iter()
                .map(comment_line)
                .collect::<Vec<_>>()
                .join("\n");
            out(&json!(comments), human);
        }
        Command::Uncomment { post, comment } => {
            api.expect(
                Method::DELETE,
                &format!("/posts/{post}/comments/{comment}"),
                None,
                None,
            )
            .await?;
            out(&json!({ "deleted": comment }), format!("deleted {comment}"));
        }
        Command::Uploads => {
            let all = state::UploadState::all()?;
            let human = if all.is_empty() {
                "no unfinished uploads".to_owned()
            } else {
                all.iter()
                    .map(|s| {
                        format!(
                            "{}  {}  {}  {}",
                            s.post_id.as_deref().unwrap_or("(not created)"),
                            human_bytes(s.file.size),
                            s.file.path.display(),
                            s.api
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            };
            out(&json!(all), human);
        }
        Command::Abort { post } => {
            api.expect(Method::DELETE, &format!("/posts/{post}/upload"), None, None)
                .await?;
            for s in state::UploadState::all()? {
                if s.post_id.as_deref() == Some(post.as_str()) {
                    s.remove();
                }
            }
            out(&json!({ "aborted": post }), format!("aborted {post}"));
        }
    }
    Ok(())
}

/// Items of one page, or of every page (`next_cursor`).
async fn pages(
    api: &api::Api,
    path: &str,
    limit: u16,
    all: bool,
    field: &str,
) -> Result<Vec<Value>, Failure> {
    let mut items = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut url = format!("{path}?limit={limit}");
        if let Some(c) = &cursor {
            url.push_str("&cursor=");
            url.push_str(c);
        }
        let page = api.expect(reqwest::Method::GET, &url, None, None).await?;
        items.extend(page[field].as_array().cloned().unwrap_or_default());
        cursor = page["next_cursor"].as_str().map(str::to_owned);
        if !all || cursor.is_none() {
            return Ok(items);
        }
    }
}

fn post_line(p: &Value) -> String {
    format!(
        "{}  {:>5} comments  {:<10} {}  {}",
        p["id"].as_str().unwrap_or(""),
        p["comment_count"],
        p["status"].as_str().unwrap_or(""),
        p["caption"].as_str().unwrap_or(""),
        p["image_url"].as_str().unwrap_or("")
    )
}

fn comment_line(c: &Value) -> String {
    format!(
        "{}  {}: {}",
        c["id"].as_str().unwrap_or(""),
        c["author"].as_str().unwrap_or(""),
        c["content"].as_str().unwrap_or("")
    )
}

fn stall_secs(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if (0.1..=3600.0).contains(&v) => Ok(v),
        _ => Err("a number of seconds from 0.1 to 3600".into()),
    }
}
