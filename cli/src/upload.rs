//! `imagegram post FILE`: the resumable upload.
//!
//! 1. The upload's state is saved before anything is created, with the
//!    idempotency key `POST /posts` will carry: a crash anywhere leaves
//!    enough to carry on, and a retried create never makes a second post.
//! 2. Parts go straight to S3, `parallel` at a time, each with
//!    `Content-MD5` (S3 refuses a part corrupted on the way). A failed PUT
//!    (reset, timeout, 5xx) is retried with backoff and jitter; a PUT with
//!    no progress for `--stall-timeout` is cancelled and retried; a 403 for an expired
//!    URL gets fresh URLs from the API.
//! 3. On a second run, the API says which parts S3 holds; each is checked
//!    against the file (its size, and its ETag, the part's MD5) before it
//!    is skipped.
//! 4. Complete (safe to retry), then wait for `published` or `failed`:
//!    told over the notifications WebSocket (`events.rs`), polling when
//!    it cannot be opened.

use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;
use futures::StreamExt;
use imagegram_formats::ImageFormat;
use md5::Digest;
use serde_json::{Value, json};

use crate::Failure;
use crate::api::{Api, backoff};
use crate::state::{FileIdentity, UploadState};

/// Tries per part before the upload gives up (its state stays: run again).
const PART_ATTEMPTS: u32 = 8;

pub struct Options {
    pub caption: String,
    pub parallel: usize,
    pub wait: bool,
    pub progress: bool,
    /// A part PUT that makes no progress for this long is cancelled and
    /// retried.
    pub stall: Duration,
}

/// What happened, for the summary line.
#[derive(Default)]
pub struct Tally {
    pub parts_total: AtomicU64,
    pub parts_sent: AtomicU64,
    pub parts_skipped: AtomicU64,
    pub retries: AtomicU64,
    pub resigned: AtomicU64,
}

pub async fn post(api: &Api, file: &Path, opts: &Options) -> Result<Value, Failure> {
    let identity = FileIdentity::of(file)?;
    let content_type = content_type(&identity.path)?;
    let mut state = match UploadState::find(api.base(), &identity)? {
        Some(s) => {
            crate::info(&format!(
                "resuming the upload of {} (post {})",
                identity.path.display(),
                s.post_id.as_deref().unwrap_or("not created yet")
            ));
            s
        }
        None => {
            let s = UploadState {
                api: api.base().to_owned(),
                file: identity.clone(),
                caption: opts.caption.clone(),
                content_type: content_type.into(),
                idempotency_key: uuid::Uuid::new_v4().to_string(),
                post_id: None,
                part_size: None,
                part_count: None,
            };
            s.save()?;
            s
        }
    };
    let started = Instant::now();
    let tally = Arc::new(Tally::default());

    // The post: created (again with the same key after a crash: the API
    // answers with the first post), or looked up.
    let mut urls: HashMap<u32, String> = HashMap::new();
    if state.post_id.is_none() {
        let created = api
            .expect(
                reqwest::Method::POST,
                "/posts",
                Some(&json!({
                    "caption": state.caption,
                    "content_type": state.content_type,
                    "size_bytes": state.file.size,
                })),
                Some(&state.idempotency_key),
            )
            .await?;
        state.post_id = created["post"]["id"].as_str().map(str::to_owned);
        state.part_size = created["upload"]["part_size"].as_u64();
        state.part_count = created["upload"]["part_count"].as_u64().map(|n| n as u32);
        state.save()?;
        for p in created["upload"]["parts"].as_array().into_iter().flatten() {
            if let (Some(n), Some(u)) = (p["part_number"].as_u64(), p["url"].as_str()) {
                urls.insert(n as u32, u.to_owned());
            }
        }
    }
    let post_id = state
        .post_id
        .clone()
        .ok_or_else(|| Failure::unexpected("no post id"))?;

    // Open before `complete`: a message is never replayed, so the socket
    // must be there before the post can turn.
    let listener = if opts.wait {
        Some(crate::events::Listener::open(api).await)
    } else {
        None
    };
    let (status, upload) = api
        .call(
            reqwest::Method::GET,
            &format!("/posts/{post_id}/upload"),
            None,
            None,
        )
        .await?;
    match status {
        200 => {
            let part_size = upload["part_size"].as_u64().unwrap_or(5 << 20);
            let part_count = upload["part_count"].as_u64().unwrap_or(1) as u32;
            let held: HashMap<u32, (String, u64)> = upload["uploaded_parts"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|p| {
                    Some((
                        p["part_number"].as_u64()? as u32,
                        (p["etag"].as_str()?.to_owned(), p["size"].as_u64()?),
                    ))
                })
                .collect();
            send_parts(
                api, &post_id, &state, part_size, part_count, &held, urls, opts, &tally,
            )
            .await?;
            api.expect(
                reqwest::Method::POST,
                &format!("/posts/{post_id}/upload/complete"),
                None,
                None,
            )
            .await?;
        }
        // Closed: completed earlier (a crash after `complete`), or gone.
        409 => {}
        404 => {
            state.remove();
            return Err(Failure::api(404, &upload).context(
                "the post of this upload is gone (aborted or expired); run again to start over",
            ));
        }
        _ => return Err(Failure::api(status, &upload)),
    }
    state.remove();
    crate::info(&format!(
        "uploaded {} in {:.1} s: {} of {} parts sent, {} already in S3, {} retries, {} re-signed",
        crate::human_bytes(state.file.size),
        started.elapsed().as_secs_f64(),
        tally.parts_sent.load(Ordering::Relaxed),
        tally.parts_total.load(Ordering::Relaxed),
        tally.parts_skipped.load(Ordering::Relaxed),
        tally.retries.load(Ordering::Relaxed),
        tally.resigned.load(Ordering::Relaxed),
    ));
    if !opts.wait {
        return api
            .expect(
                reqwest::Method::GET,
                &format!("/posts/{post_id}"),
                None,
                None,
            )
            .await;
    }
    crate::events::wait_until_final(api, &post_id, listener.expect("opened when waiting")).await
}

/// Byte range of part `n` (1-based).
fn range(n: u32, part_size: u64, size: u64) -> (u64, u64) {
    let start = u64::from(n - 1) * part_size;
    (start, part_size.min(size - start))
}

fn read_part(path: &Path, start: u64, len: u64) -> Result<Vec<u8>, Failure> {
    let mut f = std::fs::File::open(path)
        .map_err(|e| Failure::usage(format!("{}: {e}", path.display())))?;
    f.seek(SeekFrom::Start(start))
        .map_err(|e| Failure::usage(e.to_string()))?;
    let mut buf = vec![0; len as usize];
    f.read_exact(&mut buf)
        .map_err(|e| Failure::usage(format!("{}: {e} (did the file change?)", path.display())))?;
    Ok(buf)
}

#[allow(clippy::too_many_arguments)]
async fn send_parts(
    api: &Api,
    post_id: &str,
    state: &UploadState,
    part_size: u64,
    part_count: u32,
    held: &HashMap<u32, (String, u64)>,
    mut urls: HashMap<u32, String>,
    opts: &Options,
    tally: &Arc<Tally>,
) -> Result<(), Failure> {
    let size = state.file.size;
    // What S3 holds is skipped only if it is this file's bytes.
    let mut todo = Vec::new();
    let mut done_bytes = 0;
    for n in 1..=part_count {
        let (start, len) = range(n, part_size, size);
        let keep = match held.get(&n) {
            Some((etag, held_size)) if *held_size == len => {
                let bytes = read_part(&state.file.path, start, len)?;
                let md5 = crate::state::hex(&md5::Md5::digest(&bytes));
                etag.trim_matches('"') == md5
            }
            _ => false,
        };
        if keep {
            done_bytes += len;
        } else {
            todo.push(n);
        }
    }
    tally
        .parts_total
        .store(u64::from(part_count), Ordering::Relaxed);
    tally
        .parts_skipped
        .store(u64::from(part_count) - todo.len() as u64, Ordering::Relaxed);
    let bar = progress_bar(opts.progress, size, done_bytes);
    // Fresh URLs for what is to send and not in hand (a resumed upload).
    let missing: Vec<u32> = todo
        .iter()
        .copied()
        .filter(|n| !urls.contains_key(n))
        .collect();
    if !missing.is_empty() {
        urls.extend(refresh(api, post_id, &missing).await?);
    }
    let urls = Arc::new(tokio::sync::Mutex::new(urls));
    let sent = Arc::new(AtomicU64::new(done_bytes));
    let stall = opts.stall;
    let results = futures::stream::iter(todo.into_iter().map(|n| {
        let (urls, bar, sent, tally) = (
            Arc::clone(&urls),
            bar.clone(),
            Arc::clone(&sent),
            Arc::clone(tally),
        );
        async move {
            let (start, len) = range(n, part_size, size);
            let bytes = bytes::Bytes::from(read_part(&state.file.path, start, len)?);
            let md5 = base64::engine::general_purpose::STANDARD.encode(md5::Md5::digest(&bytes));
            put_part(
                api, post_id, n, bytes, &md5, &urls, &bar, &sent, &tally, stall,
            )
            .await
        }
    }))
    .buffer_unordered(opts.parallel.max(1));
    let results: Vec<Result<(), Failure>> = results.collect().await;
    bar.finish_and_clear();
    results.into_iter().collect()
}

async fn refresh(api: &Api, post_id: &str, parts: &[u32]) -> Result<HashMap<u32, String>, Failure> {
    let mut out = HashMap::new();
    for chunk in parts.chunks(100) {
        let fresh = api
            .expect(
                reqwest::Method::POST,
                &format!("/posts/{post_id}/upload/parts"),
                Some(&json!({ "part_numbers": chunk })),
                None,
            )
            .await?;
        for p in fresh["parts"].as_array().into_iter().flatten() {
            if let (Some(n), Some(u)) = (p["part_number"].as_u64(), p["url"].as_str()) {
                out.insert(n as u32, u.to_owned());
            }
        }
    }
    Ok(out)
}

/// One part, until S3 has it: retried on network failures, 5xx and stalls,
/// re-signed on an expired URL.
#[allow(clippy::too_many_arguments)]
async fn put_part(
    api: &Api,
    post_id: &str,
    n: u32,
    bytes: bytes::Bytes,
    md5: &str,
    urls: &tokio::sync::Mutex<HashMap<u32, String>>,
    bar: &indicatif::ProgressBar,
    sent: &AtomicU64,
    tally: &Tally,
    stall: Duration,
) -> Result<(), Failure> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let url = urls.lock().await.get(&n).cloned();
        let Some(url) = url else {
            return Err(Failure::unexpected(format!("no URL for part {n}")));
        };
        let progress = Arc::new(AtomicU64::new(0));
        let body = body_with_progress(bytes.clone(), Arc::clone(&progress), bar.clone());
        let request = crate::http()
            .put(&url)
            .header("Content-MD5", md5)
            .header(reqwest::header::CONTENT_LENGTH, bytes.len())
            .body(body)
            .send();
        let outcome = watch_stall(request, &progress, stall).await;
        let failure = match outcome {
            Ok(resp) if resp.status().is_success() => {
                sent.fetch_add(bytes.len() as u64, Ordering::Relaxed);
                tally.parts_sent.fetch_add(1, Ordering::Relaxed);
                return Ok(());
            }
            Ok(resp) => {
                let status = resp.status().as_u16();
                let text = resp.text().await.unwrap_or_default();
                if status == 403 && (text.contains("expired") || text.contains("Expired")) {
                    // Expired URL: fresh ones, not counted as a failure.
                    bar.set_position(
                        bar.position()
                            .saturating_sub(progress.load(Ordering::Relaxed)),
                    );
                    tally.resigned.fetch_add(1, Ordering::Relaxed);
                    let fresh = refresh(api, post_id, &[n]).await?;
                    urls.lock().await.extend(fresh);
                    attempt -= 1;
                    continue;
                }
                if !(status >= 500 || status == 408 || status == 429) {
                    return Err(Failure::unexpected(format!(
                        "S3 refused part {n}: {status} {}",
                        text.chars().take(300).collect::<String>()
                    )));
                }
                format!("part {n}: S3 answered {status}")
            }
            Err(why) => format!("part {n}: {why}"),
        };
        // Take back what this attempt showed as sent.
        bar.set_position(
            bar.position()
                .saturating_sub(progress.load(Ordering::Relaxed)),
        );
        if attempt >= PART_ATTEMPTS {
            return Err(Failure::network_msg(format!(
                "{failure}, {PART_ATTEMPTS} times; run the same command again to resume"
            )));
        }
        tally.retries.fetch_add(1, Ordering::Relaxed);
        backoff(attempt, None, &failure).await;
    }
}

/// The part's bytes as a stream of 64 KiB chunks, counting what was taken.
fn body_with_progress(
    bytes: bytes::Bytes,
    progress: Arc<AtomicU64>,
    bar: indicatif::ProgressBar,
) -> reqwest::Body {
    let chunks: Vec<bytes::Bytes> = (0..bytes.len())
        .step_by(64 * 1024)
        .map(|i| bytes.slice(i..(i + 64 * 1024).min(bytes.len())))
        .collect();
    let stream = futures::stream::iter(chunks).map(move |c| {
        progress.fetch_add(c.len() as u64, Ordering::Relaxed);
        bar.inc(c.len() as u64);
        Ok::<_, std::io::Error>(c)
    });
    reqwest::Body::wrap_stream(stream)
}

/// Sends the request, cancelling it when its body makes no progress for
/// `stall` (or the answer does not come).
async fn watch_stall(
    request: impl std::future::Future<Output = reqwest::Result<reqwest::Response>>,
    progress: &AtomicU64,
    stall: Duration,
) -> Result<reqwest::Response, String> {
    tokio::pin!(request);
    let mut last = (0, Instant::now());
    loop {
        tokio::select! {
            r = &mut request => return r.map_err(|e| e.to_string()),
            () = tokio::time::sleep(stall.min(Duration::from_secs(1)) / 4) => {
                let now = progress.load(Ordering::Relaxed);
                if now != last.0 {
                    last = (now, Instant::now());
                } else if last.1.elapsed() > stall {
                    return Err(format!("no progress for {:.1} s; cancelled", stall.as_secs_f64()));
                }
            }
        }
    }
}

fn progress_bar(show: bool, total: u64, done: u64) -> indicatif::ProgressBar {
    if !show {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(total);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}",
        )
        .expect("template")
        .progress_chars("=> "),
    );
    bar.set_position(done);
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

/// The content type the API is told, from the file's first bytes (the
/// converter decides by them too), else from its name's ending; the formats
/// are the service's own list (`imagegram-formats`).
fn content_type(path: &Path) -> Result<&'static str, Failure> {
    let mut head = [0u8; 16];
    let n = std::fs::File::open(path)
        .and_then(|mut f| f.read(&mut head))
        .map_err(|e| Failure::usage(format!("{}: {e}", path.display())))?;
    // A name that claims a format the bytes do not show is still sent: the
    // converter refuses it with a reason the post keeps.
    ImageFormat::sniff(&head[..n])
        .or_else(|| {
            path.extension()
                .and_then(|e| e.to_str())
                .and_then(ImageFormat::of_extension)
        })
        .map(ImageFormat::content_type)
        .ok_or_else(|| {
            Failure::usage(format!(
                "{}: not a {} image",
                path.display(),
                ImageFormat::names()
            ))
        })
}
