//! A TCP fault proxy of the tests' own, between the code and MariaDB or
//! between the code and moto, on loopback. Its fault can be changed at any
//! time and applies to connections already open as well as new ones:
//!
//! - `Pass`: bytes flow.
//! - `Refuse`: new connections are reset at once; open ones are reset too.
//! - `Blackhole`: connections open, but no byte moves either way until the
//!   fault changes (then what was held flows on): a server that stopped
//!   answering, as under SIGSTOP.
//! - `Latency(d)`: every chunk waits `d`.
//! - `Reset`: open connections are reset mid-stream (RST), new ones too.
//! - `LoseAnswers`: requests reach the server, answers never come back and
//!   the connection is closed: the server did the work, the client cannot
//!   know.
//! - `LoseAnswersTo(prefix)`: the same, only on connections that carried a
//!   request starting with `prefix` (`"POST "`: S3's
//!   CompleteMultipartUpload among the calls a `complete` makes); such a
//!   connection loses its answers even after the fault changes.
//! - `GoneAfter(prefix)`: like `LoseAnswersTo`, and from that request on the
//!   server is unreachable (every connection reset) until the fault
//!   changes.
//! - `ExpiredFor(prefix)`: requests starting with `prefix` are read whole
//!   and answered as S3 answers a presigned URL past its expiry (403,
//!   `AccessDenied`, "Request has expired"), which moto never does.
//!
//! It also counts the requests it saw, by their first bytes.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    Pass,
    Refuse,
    Blackhole,
    Latency(Duration),
    Reset,
    LoseAnswers,
    LoseAnswersTo(&'static str),
    GoneAfter(&'static str),
    ExpiredFor(&'static str),
}

#[derive(Clone)]
pub struct FaultProxy {
    pub addr: SocketAddr,
    fault: Arc<Mutex<Fault>>,
    /// The request line (up to 256 bytes) of every request seen, in order.
    seen: Arc<Mutex<Vec<String>>>,
}

/// `GoneAfter` saw its request: the server is gone from then on.
const TRIPPED: Fault = Fault::Reset;

impl FaultProxy {
    /// Listens on 127.0.0.1:0 and forwards to `target`.
    pub async fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let fault = Arc::new(Mutex::new(Fault::Pass));
        let seen: Arc<Mutex<Vec<String>>> = Arc::default();
        let (f, seen_by) = (Arc::clone(&fault), Arc::clone(&seen));
        tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    return;
                };
                let (f, seen) = (Arc::clone(&f), Arc::clone(&seen_by));
                tokio::spawn(async move {
                    let now = *f.lock().unwrap();
                    if matches!(now, Fault::Refuse | Fault::Reset) {
                        reset(client);
                        return;
                    }
                    let Ok(server) = TcpStream::connect(target).await else {
                        reset(client);
                        return;
                    };
                    let _ = client.set_nodelay(true);
                    let _ = server.set_nodelay(true);
                    let (cr, cw) = client.into_split();
                    let (sr, sw) = server.into_split();
                    let doomed = Arc::new(std::sync::atomic::AtomicBool::new(false));
                    let (cr, cw) = (
                        Arc::new(tokio::sync::Mutex::new(cr)),
                        Arc::new(tokio::sync::Mutex::new(cw)),
                    );
                    let up = tokio::spawn(pump(
                        Arc::clone(&cr),
                        sw,
                        Arc::clone(&f),
                        Direction::Request,
                        Arc::clone(&doomed),
                        Some((seen, Arc::clone(&cw))),
                    ));
                    let down = tokio::spawn(pump_answers(sr, cw, f, doomed));
                    let _ = tokio::join!(up, down);
                });
            }
        });
        FaultProxy { addr, fault, seen }
    }

    /// Requests seen so far whose request line starts with `prefix`.
    pub fn count(&self, prefix: &str) -> usize {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.starts_with(prefix))
            .count()
    }

    pub fn set(&self, fault: Fault) {
        *self.fault.lock().unwrap() = fault;
    }

    /// `host:port` of the proxy.
    pub fn host_port(&self) -> (String, u16) {
        (self.addr.ip().to_string(), self.addr.port())
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Direction {
    Request,
}

// Linger 0 never blocks: the close sends RST at once.
#[allow(deprecated)]
fn reset(stream: TcpStream) {
    // Linger 0: close sends RST, as a refused or killed connection does.
    let _ = stream.set_linger(Some(Duration::ZERO));
    drop(stream);
}

type ClientWrite = Arc<tokio::sync::Mutex<tokio::net::tcp::OwnedWriteHalf>>;

/// Client to server: the requests, held, dropped or answered by the fault.
async fn pump(
    from: Arc<tokio::sync::Mutex<tokio::net::tcp::OwnedReadHalf>>,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    fault: Arc<Mutex<Fault>>,
    _direction: Direction,
    doomed: Arc<std::sync::atomic::AtomicBool>,
    client: Option<(Arc<Mutex<Vec<String>>>, ClientWrite)>,
) {
    use std::sync::atomic::Ordering::SeqCst;
    let mut from = from.lock().await;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let starts_request = ["GET ", "PUT ", "POST ", "HEAD ", "DELETE ", "OPTIONS "]
            .iter()
            .any(|m| buf[..n].starts_with(m.as_bytes()));
        let action = {
            let mut now = fault.lock().unwrap();
            match *now {
                Fault::LoseAnswersTo(prefix) if buf[..n].starts_with(prefix.as_bytes()) => {
                    doomed.store(true, SeqCst);
                    None
                }
                Fault::GoneAfter(prefix) if buf[..n].starts_with(prefix.as_bytes()) => {
                    doomed.store(true, SeqCst);
                    *now = TRIPPED;
                    Some("gone")
                }
                Fault::ExpiredFor(prefix) if buf[..n].starts_with(prefix.as_bytes()) => {
                    Some("expired")
                }
                _ => None,
            }
        };
        // Counted once its fate is decided: a test that waits for the count
        // and then changes the fault cannot change this request's.
        if let Some((seen, _)) = &client
            && starts_request
        {
            let line = buf[..n].split(|&b| b == b'\r').next().unwrap_or_default();
            let head = String::from_utf8_lossy(&line[..line.len().min(256)]).into_owned();
            seen.lock().unwrap().push(head);
        }
        match action {
            Some("gone") => {
                // This request reaches the server; nothing answers after.
                let _ = to.write_all(&buf[..n]).await;
                return;
            }
            Some(_) => {
                // Read the request whole, then answer as S3 does.
                let mut request = buf[..n].to_vec();
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match from.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(m) => request.extend_from_slice(&buf[..m]),
                    }
                }
                let split = request.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
                let length: usize = String::from_utf8_lossy(&request[..split])
                    .lines()
                    .find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        k.eq_ignore_ascii_case("content-length")
                            .then(|| v.trim().parse().ok())?
                    })
                    .unwrap_or(0);
                let mut body = request.len() - split;
                while body < length {
                    match from.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(m) => body += m,
                    }
                }
                let xml = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>AccessDenied</Code>\
                           <Message>Request has expired</Message></Error>";
                let answer = format!(
                    "HTTP/1.1 403 Forbidden\r\nContent-Type: application/xml\r\n\
                     Content-Length: {}\r\nConnection: close\r\n\r\n{xml}",
                    xml.len()
                );
                if let Some((_, client)) = &client {
                    let mut w = client.lock().await;
                    let _ = w.write_all(answer.as_bytes()).await;
                    let _ = w.shutdown().await;
                }
                return;
            }
            None => {}
        }
        // Hold the chunk while the fault says so; then deliver or drop it.
        loop {
            let now = *fault.lock().unwrap();
            match now {
                Fault::Pass
                | Fault::LoseAnswers
                | Fault::LoseAnswersTo(_)
                | Fault::GoneAfter(_)
                | Fault::ExpiredFor(_) => break,
                Fault::Latency(d) => {
                    tokio::time::sleep(d).await;
                    break;
                }
                Fault::Blackhole => tokio::time::sleep(Duration::from_millis(20)).await,
                Fault::Refuse | Fault::Reset => {
                    let _ = to.shutdown().await;
                    return;
                }
            }
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

/// Server to client: the answers, held or dropped by the fault.
async fn pump_answers(
    mut from: tokio::net::tcp::OwnedReadHalf,
    to: ClientWrite,
    fault: Arc<Mutex<Fault>>,
    doomed: Arc<std::sync::atomic::AtomicBool>,
) {
    use std::sync::atomic::Ordering::SeqCst;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        loop {
            // A connection that carried the fault's request loses its
            // answer even if the fault has changed since (a test that
            // flips back to `Pass` while the server is still working).
            if doomed.load(SeqCst) {
                let _ = to.lock().await.shutdown().await;
                return;
            }
            let now = *fault.lock().unwrap();
            match now {
                Fault::Pass | Fault::ExpiredFor(_) => break,
                Fault::Latency(d) => {
                    tokio::time::sleep(d).await;
                    break;
                }
                Fault::Blackhole => tokio::time::sleep(Duration::from_millis(20)).await,
                Fault::Refuse | Fault::Reset | Fault::LoseAnswers => {
                    let _ = to.lock().await.shutdown().await;
                    return;
                }
                Fault::LoseAnswersTo(_) | Fault::GoneAfter(_) => break,
            }
        }
        if to.lock().await.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

/// What a comment load through a fault did, checked against the database
/// afterwards (Jepsen's set checker: acknowledged means present; refused or
/// timed out means present at most once; nothing unrequested).
#[derive(Debug)]
pub struct LoadReport {
    pub sent: usize,
    pub acknowledged: usize,
    pub unavailable: usize,
    /// Answers other than 201 and 503.
    pub other: Vec<u16>,
    pub unavailable_without_retry_after: usize,
    pub slowest: Duration,
    pub stored: usize,
    pub lost: usize,
    pub duplicated: usize,
    pub unrequested: usize,
    pub comment_count: u64,
}

impl std::fmt::Display for LoadReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} sent, {} acknowledged, {} answered 503, other {:?}, slowest {:?}; stored {} \
             (lost {}, duplicated {}, unrequested {}); comment_count {}",
            self.sent,
            self.acknowledged,
            self.unavailable,
            self.other,
            self.slowest,
            self.stored,
            self.lost,
            self.duplicated,
            self.unrequested,
            self.comment_count
        )
    }
}

/// Posts `rate` comments a second on `post` for `secs` seconds, calling
/// `at(elapsed)` before each (to start and end the fault), then checks what
/// the database holds through `direct` (a pool that bypasses any proxy).
pub async fn comment_load(
    app: &Arc<crate::TestApp>,
    direct: &mysql_async::Pool,
    post: &str,
    rate: u32,
    secs: u32,
    mut at: impl FnMut(Duration),
) -> LoadReport {
    use mysql_async::prelude::*;
    let started = std::time::Instant::now();
    let mut tick = tokio::time::interval(Duration::from_secs(1) / rate);
    let mut sent = Vec::new();
    for i in 0..rate * secs {
        tick.tick().await;
        at(started.elapsed());
        let (app, post) = (Arc::clone(app), post.to_owned());
        sent.push(tokio::spawn(async move {
            let content = format!("comment {i}");
            let t0 = std::time::Instant::now();
            let r = app.comment(&post, "bob", &content).await;
            (
                content,
                r.status,
                r.headers.contains_key("retry-after"),
                t0.elapsed(),
            )
        }));
    }
    let mut answers = Vec::new();
    for s in sent {
        answers.push(s.await.unwrap());
    }
    let id = imagegram::domain::PostId::parse(post).unwrap();
    let mut conn = direct.get_conn().await.unwrap();
    let stored: Vec<String> = conn
        .exec(
            "SELECT content FROM comments WHERE post_id = ?",
            (id.as_bytes(),),
        )
        .await
        .unwrap();
    let comment_count: u64 = conn
        .exec_first(
            "SELECT comment_count FROM posts WHERE id = ?",
            (id.as_bytes(),),
        )
        .await
        .unwrap()
        .unwrap();
    let mut count: std::collections::HashMap<&str, usize> = Default::default();
    for c in &stored {
        *count.entry(c.as_str()).or_default() += 1;
    }
    let acked: Vec<&str> = answers
        .iter()
        .filter(|a| a.1 == 201)
        .map(|a| a.0.as_str())
        .collect();
    LoadReport {
        sent: answers.len(),
        acknowledged: acked.len(),
        unavailable: answers.iter().filter(|a| a.1 == 503).count(),
        other: answers
            .iter()
            .filter(|a| !matches!(a.1, 201 | 503))
            .map(|a| a.1)
            .collect(),
        unavailable_without_retry_after: answers.iter().filter(|a| a.1 == 503 && !a.2).count(),
        slowest: answers.iter().map(|a| a.3).max().unwrap_or_default(),
        stored: stored.len(),
        lost: acked.iter().filter(|c| !count.contains_key(**c)).count(),
        duplicated: count.values().filter(|n| **n > 1).count(),
        unrequested: stored
            .iter()
            .filter(|c| !answers.iter().any(|a| a.0 == **c))
            .count(),
        comment_count,
    }
}

impl LoadReport {
    /// The oracle: no other status, every 503 with Retry-After, no answer
    /// slower than `slowest`, nothing lost, duplicated or unrequested, an
    /// exact count, and the fault felt.
    pub fn check(&self, slowest: Duration) {
        assert!(self.other.is_empty(), "{self}");
        assert_eq!(self.unavailable_without_retry_after, 0, "{self}");
        assert!(self.slowest < slowest, "{self}");
        assert_eq!(
            (self.lost, self.duplicated, self.unrequested),
            (0, 0, 0),
            "{self}"
        );
        assert_eq!(self.comment_count, self.stored as u64, "{self}");
        assert!(self.unavailable > 0, "the fault was not felt: {self}");
    }
}
