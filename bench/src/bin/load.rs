//! Open-loop load benchmark of the local gateway (port 3000).
//!
//! Requests leave on a fixed schedule whatever the answers do, and each
//! latency is measured from the moment its request was *due*, not sent: a
//! stall shows up in every request it delayed (coordinated omission
//! corrected). Latencies go into HDR histograms.
//!
//! Beside the latencies it reports what does not depend on the machine's
//! speed: the CPU time per request of the API process and of MariaDB
//! (`/proc/<pid>/stat`, user + system, over the step). With `--oha PATH`
//! each GET step is also run by oha (`--latency-correction`, the same rate,
//! one URL), as an outside check of this harness.
//!
//! ```text
//! imagegram-load [--base http://127.0.0.1:3000] [--secs 10] [--only NAME]
//!                [--rates 100,1000] [--api-pid PID] [--db-pid PID] [--oha PATH]
//! ```

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use imagegram_bench::arg;
use reqwest::{Client, Method};
use serde_json::{Value, json};
use tokio::sync::mpsc;

/// p99 a rate must hold to count as sustained.
const P99_BUDGET_MS: f64 = 10.0;

#[derive(Clone)]
struct Req {
    method: Method,
    path: String,
    body: Option<String>,
    expect: u16,
}

fn get(path: String) -> Req {
    Req {
        method: Method::GET,
        path,
        body: None,
        expect: 200,
    }
}

/// What the benchmark learned of the seeded data before measuring.
struct Data {
    hottest: String,
    posts: Vec<String>,
    deep_cursors: Vec<String>,
    /// Comments the benchmark created, for the delete scenario to remove.
    mine: Mutex<Vec<(String, String)>>,
}

struct Stats {
    hist: Histogram<u64>,
    errors: u64,
    sent: u64,
    wall: Duration,
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

const USAGE: &str = "usage: imagegram-load [--base http://127.0.0.1:3000] [--secs 10] \
[--only NAME] [--rates 100,1000] [--api-pid PID] [--db-pid PID] [--oha PATH]

Open-loop load against a running local stack (scripts/up, seeded with
imagegram-seed): each scenario is stepped through its rates (or --rates)
until p99 passes 10 ms or errors appear. --api-pid and --db-pid (default:
.imagegram/gateway.pid and /run/mysqld/mysqld.pid) add CPU time per request;
--oha runs each GET step again with oha for comparison.";

/// CPU time (user + system) a process has used, from /proc/<pid>/stat.
fn cpu_time(pid: Option<u32>) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", pid?)).ok()?;
    // The command name may hold spaces: fields count from after its ')'.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // USER_HZ is 100 on Linux.
    Some(Duration::from_millis(ticks * 10))
}

fn pid_from(path: &str) -> Option<u32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// CPU ms per request of a process over a step, or "-".
fn per_request(before: Option<Duration>, after: Option<Duration>, requests: u64) -> String {
    match (before, after) {
        (Some(b), Some(a)) if requests > 0 => {
            format!("{:.3}", (a - b).as_secs_f64() * 1000.0 / requests as f64)
        }
        _ => "-".into(),
    }
}

#[tokio::main]
async fn main() {
    if std::env::args().any(|a| a == "--help" || a == "-h") {
        println!("{USAGE}");
        return;
    }
    let base: String = arg("--base", "http://127.0.0.1:3000".to_owned());
    let secs: u64 = arg("--secs", 10);
    let only: String = arg("--only", String::new());
    let rates_override: String = arg("--rates", String::new());
    let api_pid: Option<u32> = std::env::args()
        .any(|a| a == "--api-pid")
        .then(|| arg("--api-pid", 0u32))
        .or_else(|| pid_from(".imagegram/gateway.pid"));
    let db_pid: Option<u32> = std::env::args()
        .any(|a| a == "--db-pid")
        .then(|| arg("--db-pid", 0u32))
        .or_else(|| pid_from("/run/mysqld/mysqld.pid"));
    let oha: String = arg("--oha", String::new());
    let secret = std::env::var("IMAGEGRAM_DEV_JWT_SECRET")
        .unwrap_or_else(|_| "imagegram-local-dev-secret".into());
    let token = imagegram_local::auth::mint(&secret, "bench-user", Some(24 * 3600));
    imagegram_bench::install_tls_provider();
    let client = Client::builder()
        .pool_max_idle_per_host(1024)
        .tcp_nodelay(true)
        .build()
        .unwrap();

    let data = Arc::new(discover(&client, &base, &token).await);
    eprintln!(
        "dataset: hottest post {}, {} posts sampled, {} deep cursors",
        data.hottest,
        data.posts.len(),
        data.deep_cursors.len()
    );

    type Gen = Box<dyn Fn(&Data, u64) -> Req + Send + Sync>;
    let scenarios: Vec<(&str, Vec<u64>, Gen)> = vec![
        (
            "GET /posts (first page)",
            vec![500, 1000, 1500, 2000, 3000],
            Box::new(|_, _| get("/posts".into())),
        ),
        (
            "GET /posts (deep pages)",
            vec![500, 1000, 1500, 2000, 3000],
            Box::new(|d, i| {
                get(format!(
                    "/posts?cursor={}",
                    d.deep_cursors[i as usize % d.deep_cursors.len()]
                ))
            }),
        ),
        (
            "GET /posts/{id}",
            vec![500, 1000, 2000, 3000],
            Box::new(|d, i| {
                get(format!(
                    "/posts/{}",
                    d.posts[(i * 7919) as usize % d.posts.len()]
                ))
            }),
        ),
        (
            "GET /posts/{id}/comments",
            vec![500, 1000, 2000, 3000],
            Box::new(|d, i| {
                let post = if i % 2 == 0 {
                    &d.hottest
                } else {
                    &d.posts[(i * 7919) as usize % d.posts.len()]
                };
                get(format!("/posts/{post}/comments"))
            }),
        ),
        (
            "POST /posts/{id}/comments (random post)",
            vec![100, 200, 400, 800],
            Box::new(|d, i| comment(&d.posts[(i * 104_729) as usize % d.posts.len()], i)),
        ),
        (
            "POST /posts/{id}/comments (hottest post)",
            vec![100, 200, 400, 800],
            Box::new(|d, i| comment(&d.hottest, i)),
        ),
        (
            "DELETE /posts/{id}/comments/{comment_id}",
            vec![100, 200, 400],
            Box::new(|d, _| {
                let (post, c) = d
                    .mine
                    .lock()
                    .unwrap()
                    .pop()
                    .expect("enough comments created to delete");
                Req {
                    method: Method::DELETE,
                    path: format!("/posts/{post}/comments/{c}"),
                    body: None,
                    expect: 204,
                }
            }),
        ),
        (
            // The forecast: 100k comments an hour (28/s) against reads; at
            // 1000 RPS that is 2.8% writes.
            "mixed: 97% reads, 2.8% comments, 0.2% deletes",
            vec![500, 1000, 1500, 2000],
            Box::new(|d, i| match i % 1000 {
                0..300 => get("/posts".into()),
                300..500 => get(format!(
                    "/posts?cursor={}",
                    d.deep_cursors[i as usize % d.deep_cursors.len()]
                )),
                500..750 => get(format!(
                    "/posts/{}",
                    d.posts[(i * 7919) as usize % d.posts.len()]
                )),
                750..970 => get(format!(
                    "/posts/{}/comments",
                    d.posts[(i * 7919) as usize % d.posts.len()]
                )),
                970..998 => comment(&d.posts[(i * 104_729) as usize % d.posts.len()], i),
                _ => match d.mine.lock().unwrap().pop() {
                    Some((post, c)) => Req {
                        method: Method::DELETE,
                        path: format!("/posts/{post}/comments/{c}"),
                        body: None,
                        expect: 204,
                    },
                    None => get("/posts".into()),
                },
            }),
        ),
    ];

    // Warm-up: connections, prepared statements, buffer pool.
    let warm: Gen = Box::new(|d, i| get(format!("/posts/{}", d.posts[i as usize % d.posts.len()])));
    run(&client, &base, &token, &data, 300, 3, &warm).await;

    println!(
        "| endpoint | generator | target RPS | achieved RPS | p50 ms | p90 ms | p99 ms | max ms | \
         errors | API CPU ms/req | DB CPU ms/req |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let mut summary = Vec::new();
    for (name, rates, generator) in &scenarios {
        if !only.is_empty() && !name.contains(only.as_str()) {
            continue;
        }
        let rates: Vec<u64> = if rates_override.is_empty() {
            rates.clone()
        } else {
            rates_override
                .split(',')
                .map(|r| r.trim().parse().expect("--rates: numbers"))
                .collect()
        };
        let mut best = None;
        for &rate in &rates {
            let (api0, db0) = (cpu_time(api_pid), cpu_time(db_pid));
            let s = run(&client, &base, &token, &data, rate, secs, generator).await;
            let (api1, db1) = (cpu_time(api_pid), cpu_time(db_pid));
            let p99 = ms(s.hist.value_at_quantile(0.99));
            println!(
                "| {name} | imagegram-load | {rate} | {:.0} | {:.2} | {:.2} | {p99:.2} | {:.2} | {} | {} | {} |",
                s.sent as f64 / s.wall.as_secs_f64(),
                ms(s.hist.value_at_quantile(0.50)),
                ms(s.hist.value_at_quantile(0.90)),
                ms(s.hist.max()),
                s.errors,
                per_request(api0, api1, s.sent),
                per_request(db0, db1, s.sent),
            );
            // The same step by oha, for a GET with one URL.
            let sample = generator(&data, 0);
            if !oha.is_empty() && sample.method == Method::GET {
                let (api0, db0) = (cpu_time(api_pid), cpu_time(db_pid));
                let o = run_oha(&oha, &base, &token, &sample.path, rate, secs).await;
                let (api1, db1) = (cpu_time(api_pid), cpu_time(db_pid));
                println!(
                    "| {name} | oha | {rate} | {:.0} | {:.2} | {:.2} | {:.2} | {:.2} | {} | {} | {} |",
                    o.rps,
                    o.p50,
                    o.p90,
                    o.p99,
                    o.max,
                    o.errors,
                    per_request(api0, api1, o.requests),
                    per_request(db0, db1, o.requests),
                );
            }
            if p99 <= P99_BUDGET_MS && s.errors == 0 {
                best = Some(rate);
            } else {
                break; // saturated: higher rates only queue more
            }
        }
        summary.push((name.to_string(), best));
    }
    println!();
    println!("| endpoint | highest rate with p99 <= {P99_BUDGET_MS} ms and no errors |");
    println!("|---|---:|");
    for (name, best) in summary {
        println!(
            "| {name} | {} |",
            best.map_or("below the lowest rate tried".into(), |r| format!("{r} RPS"))
        );
    }
}

/// What oha measured for one step.
struct Oha {
    requests: u64,
    rps: f64,
    p50: f64,
    p90: f64,
    p99: f64,
    max: f64,
    errors: u64,
}

/// `oha -z SECS -q RATE --latency-correction` on one URL, its JSON read.
async fn run_oha(oha: &str, base: &str, token: &str, path: &str, rate: u64, secs: u64) -> Oha {
    let out = tokio::process::Command::new(oha)
        .args([
            "--no-tui",
            "--output-format",
            "json",
            "--latency-correction",
        ])
        .args(["-z", &format!("{secs}s"), "-q", &rate.to_string()])
        .args(["-c", &(rate / 10).clamp(8, 128).to_string()])
        .args(["-H", &format!("Authorization: Bearer {token}")])
        .arg(format!("{base}{path}"))
        .output()
        .await
        .expect("oha runs");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|_| {
        panic!(
            "oha's output is not JSON: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let secs_to_ms = |x: &Value| x.as_f64().unwrap_or(f64::NAN) * 1000.0;
    let codes = &v["statusCodeDistribution"];
    let ok = codes["200"].as_u64().unwrap_or(0);
    let all: u64 = codes
        .as_object()
        .map(|m| m.values().filter_map(Value::as_u64).sum())
        .unwrap_or(0);
    // Requests still in flight when `-z` ends are "aborted due to
    // deadline": the run's end, not a failure.
    let errors = all - ok
        + v["errorDistribution"]
            .as_object()
            .map(|m| {
                m.iter()
                    .filter(|(k, _)| !k.contains("deadline"))
                    .filter_map(|(_, n)| n.as_u64())
                    .sum()
            })
            .unwrap_or(0);
    Oha {
        requests: all,
        rps: v["summary"]["requestsPerSec"].as_f64().unwrap_or(0.0),
        p50: secs_to_ms(&v["latencyPercentiles"]["p50"]),
        p90: secs_to_ms(&v["latencyPercentiles"]["p90"]),
        p99: secs_to_ms(&v["latencyPercentiles"]["p99"]),
        max: secs_to_ms(&v["summary"]["slowest"]),
        errors,
    }
}

fn comment(post: &str, i: u64) -> Req {
    Req {
        method: Method::POST,
        path: format!("/posts/{post}/comments"),
        body: Some(json!({ "content": format!("benchmark comment {i}") }).to_string()),
        expect: 201,
    }
}

/// Sends `rate` requests a second for `secs` seconds on a fixed schedule.
async fn run(
    client: &Client,
    base: &str,
    token: &str,
    data: &Arc<Data>,
    rate: u64,
    secs: u64,
    generator: &(dyn Fn(&Data, u64) -> Req + Send + Sync),
) -> Stats {
    let total = rate * secs;
    let (tx, mut rx) = mpsc::unbounded_channel::<(u64, bool)>();
    let start = tokio::time::Instant::now() + Duration::from_millis(20);
    let began = Instant::now();
    for i in 0..total {
        let due = start + Duration::from_nanos(i * 1_000_000_000 / rate);
        tokio::time::sleep_until(due).await;
        let req = generator(data, i);
        let (client, tx, data) = (client.clone(), tx.clone(), data.clone());
        let url = format!("{base}{}", req.path);
        let token = token.to_owned();
        tokio::spawn(async move {
            let mut b = client.request(req.method.clone(), url).bearer_auth(token);
            if let Some(body) = req.body {
                b = b.header("content-type", "application/json").body(body);
            }
            let ok = match b.send().await {
                Ok(resp) if resp.status().as_u16() == req.expect => {
                    if req.expect == 201 {
                        // Keep the comment for the delete scenario.
                        if let Ok(v) = resp.json::<Value>().await {
                            let pair = (
                                v["post_id"].as_str().unwrap_or_default().to_owned(),
                                v["id"].as_str().unwrap_or_default().to_owned(),
                            );
                            data.mine.lock().unwrap().push(pair);
                        }
                    } else {
                        let _ = resp.bytes().await;
                    }
                    true
                }
                Ok(resp) => {
                    eprintln!(
                        "unexpected {} for {} {}",
                        resp.status(),
                        req.method,
                        req.path
                    );
                    false
                }
                Err(e) => {
                    eprintln!("{e}");
                    false
                }
            };
            let _ = tx.send((due.elapsed().as_micros() as u64, ok));
        });
    }
    drop(tx);
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
    let mut errors = 0;
    while let Some((us, ok)) = rx.recv().await {
        hist.saturating_record(us.max(1));
        if !ok {
            errors += 1;
        }
    }
    Stats {
        hist,
        errors,
        sent: total,
        wall: began.elapsed(),
    }
}

/// Walks the feed to learn the hottest post, a sample of post ids and
/// cursors of deep pages (every cursor names a position; any page size may
/// follow it).
async fn discover(client: &Client, base: &str, token: &str) -> Data {
    let mut posts = Vec::new();
    let mut deep = Vec::new();
    let mut cursor: Option<String> = None;
    for page in 0..1000 {
        let url = match &cursor {
            None => format!("{base}/posts?limit=100"),
            Some(c) => format!("{base}/posts?limit=100&cursor={c}"),
        };
        let v: Value = client
            .get(url)
            .bearer_auth(token)
            .send()
            .await
            .expect("gateway on :3000")
            .json()
            .await
            .unwrap();
        for p in v["posts"].as_array().expect("a feed page") {
            posts.push(p["id"].as_str().unwrap().to_owned());
        }
        match v["next_cursor"].as_str() {
            Some(c) => {
                if page >= 10 {
                    deep.push(c.to_owned());
                }
                cursor = Some(c.to_owned());
            }
            None => break,
        }
    }
    assert!(
        !posts.is_empty(),
        "the feed is empty: run imagegram-seed first"
    );
    if deep.is_empty() {
        deep.push(String::new());
    }
    Data {
        hottest: posts[0].clone(),
        posts,
        deep_cursors: deep,
        mine: Mutex::new(Vec::new()),
    }
}
