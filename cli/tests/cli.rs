//! The `imagegram` command line against the real local stack (MariaDB,
//! moto, the gateway), through the tests' fault proxy where the network
//! misbehaves: what "survives a bad network and resumes after a crash"
//! means, each with a test.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use imagegram_tests::faults::{Fault, FaultProxy};
use imagegram_tests::images::{bands, encode_rgb, noise_png};
use imagegram_tests::{TestApp, sdk_config_for, spawn_app, spawn_app_with, token};
use md5::Digest;
use serde_json::Value;

/// A stack whose S3 (presigned URLs included) is behind a fault proxy.
async fn app_behind_proxy() -> (TestApp, FaultProxy) {
    let proxy = FaultProxy::start(imagegram_tests::moto_addr()).await;
    let app = spawn_app_with(
        |_| {},
        sdk_config_for(&format!("http://{}", proxy.addr)).await,
    )
    .await;
    (app, proxy)
}

struct Cli {
    api: String,
    state: tempdir::Dir,
}

mod tempdir {
    /// A directory of the test's own, removed at the end.
    pub struct Dir(pub std::path::PathBuf);

    impl Dir {
        pub fn new() -> Self {
            let d = std::env::temp_dir().join(format!("imagegram-cli-{}", uuid::Uuid::new_v4()));
            std::fs::create_dir_all(&d).unwrap();
            Dir(d)
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

impl Cli {
    fn for_app(app: &TestApp) -> Self {
        Cli {
            api: app.base.clone(),
            state: tempdir::Dir::new(),
        }
    }

    fn command(&self, user: &str, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_imagegram"));
        c.args(args)
            .env("IMAGEGRAM_API", &self.api)
            .env("IMAGEGRAM_TOKEN", token(user))
            .env("IMAGEGRAM_STATE_DIR", &self.state.0)
            .env("XDG_CONFIG_HOME", &self.state.0)
            .stdin(Stdio::null());
        c
    }

    async fn run(&self, user: &str, args: &[&str]) -> Output {
        let mut c = self.command(user, args);
        tokio::task::spawn_blocking(move || c.output().unwrap())
            .await
            .unwrap()
    }

    fn file(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let p = self.state.0.join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    }
}

/// A child process killed when the test lets go of it, panicking or not.
struct Child(std::process::Child);

impl Child {
    fn kill(&mut self) {
        let _ = self.0.kill(); // SIGKILL
        let _ = self.0.wait();
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        self.kill();
    }
}

fn stdout_json(o: &Output) -> Value {
    let text = String::from_utf8_lossy(&o.stdout);
    let last = text
        .lines()
        .last()
        .unwrap_or_else(|| panic!("no output; stderr: {}", String::from_utf8_lossy(&o.stderr)));
    serde_json::from_str(last).unwrap_or_else(|_| panic!("not JSON: {last}"))
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The summary line's counts: (sent, total, skipped, retries, re-signed).
fn summary(o: &Output) -> (u64, u64, u64, u64, u64) {
    let err = stderr(o);
    let line = err
        .lines()
        .find(|l| l.contains(" parts sent, "))
        .unwrap_or_else(|| panic!("no summary in: {err}"));
    // "uploaded X MiB in Y s: A of B parts sent, C already in S3, D
    // retries, E re-signed": the first number of each clause after ": ".
    let counts = line.rsplit_once(": ").map_or("", |(_, c)| c);
    let nums: Vec<u64> = counts
        .split([' ', ','])
        .filter_map(|w| w.parse().ok())
        .collect();
    assert_eq!(nums.len(), 5, "not a summary: {line}");
    (nums[0], nums[1], nums[2], nums[3], nums[4])
}

async fn original_md5(app: &TestApp, post: &str) -> String {
    let got = app
        .s3
        .get_object()
        .bucket(&app.bucket)
        .key(format!("originals/{post}"))
        .send()
        .await
        .unwrap();
    let bytes = got.body.collect().await.unwrap().into_bytes();
    format!("{:x}", md5::Md5::digest(&bytes))
}

fn md5_of(bytes: &[u8]) -> String {
    format!("{:x}", md5::Md5::digest(bytes))
}

#[tokio::test]
async fn post_uploads_in_parallel_parts_and_prints_the_published_post() {
    let app = spawn_app().await;
    let cli = Cli::for_app(&app);
    let bytes = noise_png(2600, 1400);
    assert!(bytes.len() > 10 << 20, "three parts at least");
    let file = cli.file("photo.png", &bytes);
    let o = cli
        .run(
            "alice",
            &["post", file.to_str().unwrap(), "--caption", "hi", "--json"],
        )
        .await;
    assert!(o.status.success(), "{}", stderr(&o));
    let post = stdout_json(&o);
    assert_eq!(post["status"], "published");
    assert_eq!(post["caption"], "hi");
    let img = app.fetch_image(&post).await;
    assert_eq!(img.dimensions(), (600, 600));
    // --json carries the post's placeholder.
    imagegram_tests::images::assert_thumbhash_of(
        post["thumbhash"].as_str().expect("thumbhash in --json"),
        &img,
    );
    let id = post["id"].as_str().unwrap();
    assert_eq!(original_md5(&app, id).await, md5_of(&bytes));
    let (sent, total, skipped, _, _) = summary(&o);
    assert_eq!((sent, skipped), (total, 0));
    // Human output: the image URL.
    let o = cli.run("alice", &["show", id]).await;
    assert!(String::from_utf8_lossy(&o.stdout).contains(id));
    // Nothing left to resume.
    let o = cli.run("alice", &["uploads"]).await;
    assert!(String::from_utf8_lossy(&o.stdout).contains("no unfinished uploads"));
}

#[tokio::test]
async fn failed_parts_are_retried_and_the_object_is_byte_identical() {
    let (app, proxy) = app_behind_proxy().await;
    let cli = Cli::for_app(&app);
    let bytes = noise_png(2600, 1400);
    let file = cli.file("photo.png", &bytes);
    // The first part PUT reaches S3 and its answer is lost; from then on S3
    // resets every connection for 1.5 s.
    // (The stack's set-up made PUTs of its own through the proxy: the
    // bucket, its rules.)
    let before = proxy.count("PUT ");
    proxy.set(Fault::GoneAfter("PUT "));
    let flip = {
        let proxy = proxy.clone();
        tokio::spawn(async move {
            while proxy.count("PUT ") == before {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            tokio::time::sleep(Duration::from_millis(1500)).await;
            proxy.set(Fault::Pass);
        })
    };
    let started = Instant::now();
    let o = cli
        .run(
            "alice",
            &["post", file.to_str().unwrap(), "--json", "--no-wait", "-v"],
        )
        .await;
    flip.await.unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let (sent, total, _, retries, _) = summary(&o);
    println!(
        "S3 gone for 1.5 s: {sent}/{total} parts, {retries} retries, {:.1} s",
        started.elapsed().as_secs_f64()
    );
    assert!(retries > 0, "{}", stderr(&o));
    let id = stdout_json(&o)["id"].as_str().unwrap().to_owned();
    assert_eq!(original_md5(&app, &id).await, md5_of(&bytes));
}

#[tokio::test]
async fn a_stalled_part_is_cancelled_and_sent_again() {
    let (app, proxy) = app_behind_proxy().await;
    let cli = Cli::for_app(&app);
    let bytes = noise_png(1600, 1200);
    let file = cli.file("photo.png", &bytes);
    // Once the first part PUT starts, S3 stops answering (no byte moves
    // either way) for 4 s, then comes back.
    let part_puts = format!("PUT /{}/originals/", app.bucket);
    let hang = {
        let (proxy, part_puts) = (proxy.clone(), part_puts.clone());
        tokio::spawn(async move {
            while proxy.count(&part_puts) == 0 {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            proxy.set(Fault::Blackhole);
            tokio::time::sleep(Duration::from_secs(4)).await;
            proxy.set(Fault::Pass);
        })
    };
    let started = Instant::now();
    let o = cli
        .run(
            "alice",
            &[
                "post",
                file.to_str().unwrap(),
                "--json",
                "--no-wait",
                "--stall-timeout",
                "1",
                "-v",
            ],
        )
        .await;
    hang.await.unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let (sent, total, _, retries, _) = summary(&o);
    println!(
        "S3 hung for 4 s: {sent}/{total} parts, {retries} retries, {:.1} s",
        started.elapsed().as_secs_f64()
    );
    assert!(retries > 0, "{}", stderr(&o));
    assert!(
        stderr(&o).contains("no progress for 1.0 s"),
        "{}",
        stderr(&o)
    );
    let id = stdout_json(&o)["id"].as_str().unwrap().to_owned();
    assert_eq!(original_md5(&app, &id).await, md5_of(&bytes));
}

#[tokio::test]
async fn expired_urls_are_signed_again_and_the_upload_carries_on() {
    let (app, proxy) = app_behind_proxy().await;
    let cli = Cli::for_app(&app);
    let bytes = noise_png(1600, 1200);
    let file = cli.file("photo.png", &bytes);
    // S3 answers "Request has expired" to the first PUTs (moto never
    // checks expiry; the proxy answers as S3 would): every PUT whose
    // request line arrives before the flip, which waits for the first (a
    // fixed delay could end before a slow machine's first PUT).
    let before = proxy.count("PUT ");
    proxy.set(Fault::ExpiredFor("PUT "));
    let flip = {
        let proxy = proxy.clone();
        tokio::spawn(async move {
            while proxy.count("PUT ") == before {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            proxy.set(Fault::Pass);
        })
    };
    let o = cli
        .run(
            "alice",
            &["post", file.to_str().unwrap(), "--json", "--no-wait"],
        )
        .await;
    flip.await.unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let (_, _, _, _, resigned) = summary(&o);
    assert!(resigned > 0, "{}", stderr(&o));
    let id = stdout_json(&o)["id"].as_str().unwrap().to_owned();
    assert_eq!(original_md5(&app, &id).await, md5_of(&bytes));
}

/// The upload's post id, once the CLI has saved it.
fn post_of(state: &Path) -> Option<String> {
    for e in std::fs::read_dir(state.join("uploads")).ok()? {
        let e = e.ok()?;
        if e.path().extension().is_some_and(|x| x == "json") {
            let v: Value = serde_json::from_slice(&std::fs::read(e.path()).ok()?).ok()?;
            if let Some(id) = v["post_id"].as_str() {
                return Some(id.to_owned());
            }
        }
    }
    None
}

#[tokio::test]
async fn killed_halfway_it_resumes_and_sends_only_the_missing_parts() {
    let (app, proxy) = app_behind_proxy().await;
    let cli = Cli::for_app(&app);
    // Five parts, one at a time over a slow link.
    let bytes = noise_png(3000, 2000);
    let file = cli.file("photo.png", &bytes);
    let parts = bytes.len().div_ceil(5 << 20);
    assert!(parts >= 4, "{parts} parts");
    proxy.set(Fault::Latency(Duration::from_millis(15)));
    let mut child = Child(
        cli.command(
            "alice",
            &[
                "post",
                file.to_str().unwrap(),
                "--parallel",
                "1",
                "--no-wait",
            ],
        )
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap(),
    );
    // Kill -9 once S3 holds about half the parts.
    let deadline = Instant::now() + Duration::from_secs(120);
    let held = loop {
        assert!(Instant::now() < deadline, "the upload did not get halfway");
        if let Some(id) = post_of(&cli.state.0) {
            let r = app.get(&format!("/posts/{id}/upload"), "alice").await;
            let n = r.body["uploaded_parts"].as_array().map_or(0, Vec::len);
            if n >= parts / 2 {
                child.kill();
                break n;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let id = post_of(&cli.state.0).unwrap();
    // S3 may have finished the part in flight when the process died.
    let held = app.get(&format!("/posts/{id}/upload"), "alice").await.body["uploaded_parts"]
        .as_array()
        .map_or(held, Vec::len);
    proxy.set(Fault::Pass);
    // Part PUTs only: the converter's PutObject goes through the proxy too.
    let part_puts = format!("PUT /{}/originals/", app.bucket);
    let puts_before = proxy.count(&part_puts);
    let o = cli
        .run("alice", &["post", file.to_str().unwrap(), "--json"])
        .await;
    assert!(o.status.success(), "{}", stderr(&o));
    let puts = proxy.count(&part_puts) - puts_before;
    let (sent, total, skipped, _, _) = summary(&o);
    println!(
        "killed with {held} of {parts} parts in S3; the second run sent {puts} PUTs \
         ({sent} parts, {skipped} skipped)"
    );
    assert_eq!(total as usize, parts);
    // The part in flight at the kill may still land after the count above
    // (its bytes were in the kernel's buffers, on their way): S3 then
    // holds one more, which is skipped too.
    assert!(
        (held..=held + 1).contains(&(skipped as usize)),
        "{skipped} skipped of {held} held"
    );
    assert_eq!(puts, parts - skipped as usize, "only the missing parts");
    let post = stdout_json(&o);
    assert_eq!(post["id"], id.as_str(), "the same post, not a second one");
    assert_eq!(post["status"], "published");
    assert_eq!(original_md5(&app, &id).await, md5_of(&bytes));
}

#[tokio::test]
async fn a_part_corrupted_in_s3_is_sent_again_on_resume() {
    let app = spawn_app().await;
    let cli = Cli::for_app(&app);
    let bytes = noise_png(2600, 1400);
    let file = cli.file("photo.png", &bytes);
    // A first run that created the post, then "crashed"; part 1 of other
    // bytes is in S3 (as a corrupted upload would have left it).
    let created = app.create_post("alice", "image/png", bytes.len()).await;
    let id = created["post"]["id"].as_str().unwrap().to_owned();
    let url = created["upload"]["parts"][0]["url"].as_str().unwrap();
    app.put_part(url, vec![0u8; 5 << 20]).await;
    write_state(&cli, &app, &file, &id, &created);
    let o = cli
        .run("alice", &["post", file.to_str().unwrap(), "--json"])
        .await;
    assert!(o.status.success(), "{}", stderr(&o));
    let (sent, total, skipped, _, _) = summary(&o);
    assert_eq!((sent, skipped), (total, 0), "part 1 did not match the file");
    assert_eq!(stdout_json(&o)["status"], "published");
    assert_eq!(original_md5(&app, &id).await, md5_of(&bytes));
}

/// The state file a first run of `imagegram post` would have left.
fn write_state(cli: &Cli, app: &TestApp, file: &Path, id: &str, created: &Value) {
    // The identity as the CLI computes it: path, size, mtime, head hash.
    let path = file.canonicalize().unwrap();
    let meta = std::fs::metadata(&path).unwrap();
    let mtime_ns = meta
        .modified()
        .unwrap()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let bytes = std::fs::read(&path).unwrap();
    let head = &bytes[..bytes.len().min(1 << 20)];
    use sha2::Digest as _;
    let head_sha256: String = sha2::Sha256::digest(head)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let state = serde_json::json!({
        "api": app.base, "caption": "", "content_type": "image/png",
        "idempotency_key": "k-1", "post_id": id,
        "part_size": created["upload"]["part_size"], "part_count": created["upload"]["part_count"],
        "file": { "path": path, "size": meta.len(), "mtime_ns": mtime_ns, "head_sha256": head_sha256 },
    });
    let dir = cli.state.0.join("uploads");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("first-run.json"), state.to_string()).unwrap();
}

#[tokio::test]
async fn a_retried_create_never_makes_a_second_post() {
    let app = spawn_app().await;
    // The API behind a proxy that loses the answer to the first POST /posts.
    let target: std::net::SocketAddr = app.base.trim_start_matches("http://").parse().unwrap();
    let proxy = FaultProxy::start(target).await;
    let mut cli = Cli::for_app(&app);
    cli.api = format!("http://{}", proxy.addr);
    let bytes = encode_rgb(&bands(64, 64, &[[1, 2, 3]]), image::ImageFormat::Png);
    let file = cli.file("small.png", &bytes);
    proxy.set(Fault::LoseAnswersTo("POST /posts "));
    let flip = {
        let proxy = proxy.clone();
        tokio::spawn(async move {
            while proxy.count("POST /posts ") == 0 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            proxy.set(Fault::Pass);
        })
    };
    let o = cli
        .run("alice", &["post", file.to_str().unwrap(), "--json", "-v"])
        .await;
    flip.await.unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(proxy.count("POST /posts ") >= 2, "the create was retried");
    let mut conn = app.direct_db.get_conn().await.unwrap();
    use mysql_async::prelude::*;
    let posts: u64 = conn
        .query_first("SELECT COUNT(*) FROM posts WHERE author = 'alice'")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        posts, 1,
        "one post for one command, however often it was sent"
    );
}

#[tokio::test]
async fn errors_are_one_line_a_person_can_act_on() {
    let app = spawn_app().await;
    let cli = Cli::for_app(&app);
    let png = cli.file(
        "a.png",
        &encode_rgb(&bands(8, 8, &[[1, 1, 1]]), image::ImageFormat::Png),
    );

    let mut c = cli.command("alice", &["feed"]);
    c.env("IMAGEGRAM_TOKEN", "not-a-token");
    let o = tokio::task::spawn_blocking(move || c.output().unwrap())
        .await
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(e.contains("401") && e.contains("IMAGEGRAM_TOKEN"), "{e}");
    assert_eq!(e.lines().count(), 1, "{e}");

    let o = cli.run("alice", &["post", "/no/such/file.jpg"]).await;
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let o = cli
        .run("alice", &["post", png.to_str().unwrap(), "--bogus"])
        .await;
    assert_eq!(o.status.code(), Some(2));

    // Over 100 MiB (a sparse file): the API's 413, in words.
    let big = cli.state.0.join("big.jpg");
    let f = std::fs::File::create(&big).unwrap();
    f.set_len(101 << 20).unwrap();
    let o = cli.run("alice", &["post", big.to_str().unwrap()]).await;
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("100 MiB"), "{}", stderr(&o));

    // Not an image: uploaded, refused by the converter with its reason.
    let text = cli.file("notes.jpg", b"these are not pixels");
    let o = cli.run("alice", &["post", text.to_str().unwrap()]).await;
    assert_eq!(o.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("failed: the upload is not a PNG, JPEG or BMP"),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
}

#[tokio::test]
async fn feed_comments_and_abort_from_the_command_line() {
    let app = spawn_app().await;
    let cli = Cli::for_app(&app);
    let post = app
        .insert_post("bob", imagegram::domain::PostStatus::Published, 0)
        .await
        .to_string();
    let o = cli
        .run("alice", &["comment", &post, "nice", "--json"])
        .await;
    assert!(o.status.success(), "{}", stderr(&o));
    let comment = stdout_json(&o)["id"].as_str().unwrap().to_owned();
    let o = cli.run("alice", &["comments", &post, "--json"]).await;
    assert_eq!(stdout_json(&o)[0]["content"], "nice");
    let o = cli.run("alice", &["feed", "--all", "--json"]).await;
    assert_eq!(stdout_json(&o)[0]["comment_count"], 1);
    let o = cli.run("alice", &["uncomment", &post, &comment]).await;
    assert!(o.status.success(), "{}", stderr(&o));
    // Another user's comment: refused, in words.
    let theirs = app.comment(&post, "bob", "mine").await.body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let o = cli.run("alice", &["uncomment", &post, &theirs]).await;
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("403"));
    // An upload started and aborted.
    let created = app.create_post("alice", "image/png", 1000).await;
    let id = created["post"]["id"].as_str().unwrap();
    let o = cli.run("alice", &["abort", id]).await;
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(app.get(&format!("/posts/{id}"), "alice").await.status, 404);
}

#[tokio::test]
async fn post_learns_the_outcome_from_the_notifications_socket() {
    let app = spawn_app().await;
    let cli = Cli::for_app(&app);
    let file = cli.file(
        "p.jpg",
        &encode_rgb(&bands(300, 200, &[[9, 9, 200]]), image::ImageFormat::Jpeg),
    );
    let o = cli
        .run(
            "kim",
            &["post", file.to_str().unwrap(), "--json", "--verbose"],
        )
        .await;
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout_json(&o)["status"], "published");
    let err = stderr(&o);
    assert!(err.contains("notifications connection open"), "{err}");
    // Either the one read after `complete` already saw it (the pipeline is
    // fast here), or the socket told: never a poll.
    assert!(!err.contains("polling"), "{err}");
}

#[tokio::test]
async fn a_dropped_socket_is_opened_again_and_the_outcome_still_arrives() {
    use imagegram_local::pipeline::Function;
    let app = spawn_app().await;
    let cli = Cli::for_app(&app);
    let file = cli.file(
        "p.jpg",
        &encode_rgb(&bands(300, 200, &[[9, 200, 9]]), image::ImageFormat::Jpeg),
    );
    // Held in `processing` until the connection has dropped.
    app.pipeline.stop(Function::Converter);
    let mut c = cli.command("lee", &["post", file.to_str().unwrap(), "--json"]);
    c.stdout(Stdio::piped()).stderr(Stdio::piped());
    let child = c.spawn().unwrap();
    let hub = app.gateway.events().unwrap().clone();
    imagegram_tests::eventually("the CLI's socket is open", async || {
        hub.open_connections() == 1
    })
    .await;
    // Past `complete`: the post is processing.
    imagegram_tests::eventually("the post is processing", async || {
        use mysql_async::prelude::Queryable;
        let mut conn = app.direct_db.get_conn().await.unwrap();
        let n: Option<u64> = conn
            .query_first(
                "SELECT COUNT(*) FROM posts WHERE author = 'lee' AND status = 'processing'",
            )
            .await
            .unwrap();
        n == Some(1)
    })
    .await;
    hub.close_all();
    imagegram_tests::eventually("the CLI reconnects", async || hub.open_connections() == 1).await;
    app.pipeline.start(Function::Converter);
    let o = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout_json(&o)["status"], "published");
    let err = stderr(&o);
    assert!(err.contains("notifications connection dropped"), "{err}");
    assert!(!err.contains("polling"), "{err}");
}

#[tokio::test]
async fn without_a_socket_post_polls_and_says_so() {
    // The ticket names an endpoint nothing listens on.
    let app = imagegram_tests::spawn_app_spec(|spec| {
        spec.env
            .push(("EVENTS_URL".into(), "ws://127.0.0.1:9/events".into()));
    })
    .await;
    let cli = Cli::for_app(&app);
    let file = cli.file(
        "p.jpg",
        &encode_rgb(&bands(300, 200, &[[200, 9, 9]]), image::ImageFormat::Jpeg),
    );
    let o = cli
        .run("max", &["post", file.to_str().unwrap(), "--json"])
        .await;
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout_json(&o)["status"], "published");
    let err = stderr(&o);
    assert!(err.contains("notifications unavailable"), "{err}");
    assert!(err.contains("polling for the outcome instead"), "{err}");
}
