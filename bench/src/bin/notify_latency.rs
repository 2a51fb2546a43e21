//! How soon an uploader learns its post's outcome: pushed over the
//! notifications WebSocket, against polling `GET /posts/{id}` at the
//! clients' old schedule (250 ms doubling to 3 s, what `imagegram post`
//! and the web page did).
//!
//! For each post: open a socket (ticket), create a post of a small JPEG,
//! PUT its part, complete, wait for the pushed message. The finalizer's
//! commit time is the post's `updated_at` (the same clock: the database
//! runs on this machine). Pushed latency = message received - commit.
//! Polling latency is computed for the same posts: the first poll of the
//! schedule (from `complete`'s answer) at or after the commit, plus the
//! round trip of one GET measured here. Prints p50/p95/max and the API
//! calls each way spends waiting.
//!
//!   imagegram-notify-latency API_URL TOKEN DATABASE_URL [POSTS] [CONCURRENCY]

use std::time::{Duration, Instant, SystemTime};

use futures::StreamExt;
use mysql_async::prelude::*;
use serde_json::{Value, json};

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (api, token, db) = match args.as_slice() {
        [a, t, d, ..] => (a.trim_end_matches('/').to_owned(), t.clone(), d.clone()),
        _ => {
            eprintln!(
                "usage: imagegram-notify-latency API_URL TOKEN DATABASE_URL [POSTS] [CONCURRENCY]"
            );
            std::process::exit(2);
        }
    };
    let posts: usize = args.get(3).and_then(|n| n.parse().ok()).unwrap_or(200);
    let concurrency: usize = args.get(4).and_then(|n| n.parse().ok()).unwrap_or(4);
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let http = reqwest::Client::new();
    let pool = mysql_async::Pool::new(db.as_str());
    let jpeg = {
        let img = image::RgbImage::from_fn(640, 480, |x, y| {
            image::Rgb([(x % 256) as u8, (y % 256) as u8, 90])
        });
        let mut out = std::io::Cursor::new(Vec::new());
        img.write_to(&mut out, image::ImageFormat::Jpeg).unwrap();
        out.into_inner()
    };
    let ctx = std::sync::Arc::new((api, token, http, pool, jpeg));
    let started = Instant::now();
    let results: Vec<(f64, f64, u32, f64)> = futures::stream::iter(0..posts)
        .map(|_| {
            let ctx = std::sync::Arc::clone(&ctx);
            async move { one(&ctx.0, &ctx.1, &ctx.2, &ctx.3, &ctx.4).await }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let mut pushed: Vec<f64> = results.iter().map(|r| r.0).collect();
    let mut polled: Vec<f64> = results.iter().map(|r| r.1).collect();
    let polls: u32 = results.iter().map(|r| r.2).sum();
    let mut get_rtt: Vec<f64> = results.iter().map(|r| r.3).collect();
    println!(
        "{posts} posts, {concurrency} at a time, {:.1} s; one GET /posts/{{id}} round trip: p50 {:.1} ms",
        started.elapsed().as_secs_f64(),
        pct(&mut get_rtt, 50.0)
    );
    println!("| from the finalizer's commit to the client | p50 | p95 | max |");
    println!("|---|---|---|---|");
    for (name, v) in [
        ("pushed over the WebSocket", &mut pushed),
        ("polling at 250 ms doubling to 3 s", &mut polled),
    ] {
        println!(
            "| {name} | {:.1} ms | {:.1} ms | {:.1} ms |",
            pct(v, 50.0),
            pct(v, 95.0),
            pct(v, 100.0)
        );
    }
    println!(
        "API calls spent waiting per published post: pushed 1 (POST /events/ticket; complete's answer is the read), polling {:.2} (GET /posts/{{id}})",
        f64::from(polls) / posts as f64
    );
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    let i = ((p / 100.0) * (v.len() - 1) as f64).round() as usize;
    v[i]
}

/// (pushed ms, polled ms, polls, GET round trip ms) for one post.
async fn one(
    api: &str,
    token: &str,
    http: &reqwest::Client,
    pool: &mysql_async::Pool,
    jpeg: &[u8],
) -> (f64, f64, u32, f64) {
    let call = async |method: reqwest::Method, path: &str, body: Option<Value>| -> Value {
        let mut req = http
            .request(method, format!("{api}{path}"))
            .bearer_auth(token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("the API answers");
        assert!(resp.status().is_success(), "{path}: {}", resp.status());
        resp.json().await.unwrap_or(Value::Null)
    };
    let ticket = call(reqwest::Method::POST, "/events/ticket", None).await;
    let (mut ws, _) = tokio_tungstenite::connect_async(ticket["url"].as_str().unwrap())
        .await
        .expect("the socket opens");
    let created = call(
        reqwest::Method::POST,
        "/posts",
        Some(
            json!({ "caption": "latency", "content_type": "image/jpeg", "size_bytes": jpeg.len() }),
        ),
    )
    .await;
    let id = created["post"]["id"].as_str().unwrap().to_owned();
    let url = created["upload"]["parts"][0]["url"].as_str().unwrap();
    let put = http.put(url).body(jpeg.to_vec()).send().await.unwrap();
    assert!(put.status().is_success());
    call(
        reqwest::Method::POST,
        &format!("/posts/{id}/upload/complete"),
        None,
    )
    .await;
    let completed = SystemTime::now();
    let received = loop {
        let m = tokio::time::timeout(Duration::from_secs(60), ws.next())
            .await
            .expect("a message within 60 s")
            .expect("the socket stays open")
            .unwrap();
        if let tokio_tungstenite::tungstenite::Message::Text(t) = m {
            let v: Value = serde_json::from_str(&t).unwrap();
            if v["post"]["id"] == id.as_str() {
                break SystemTime::now();
            }
        }
    };
    let t0 = Instant::now();
    call(reqwest::Method::GET, &format!("/posts/{id}"), None).await;
    let rtt = t0.elapsed().as_secs_f64() * 1000.0;
    let id_bytes = uuid::Uuid::parse_str(&id).unwrap();
    let mut conn = pool.get_conn().await.unwrap();
    let committed_us: i64 = conn
        .exec_first(
            "SELECT CAST(UNIX_TIMESTAMP(updated_at) * 1000000 AS SIGNED) FROM posts WHERE id = ?",
            (id_bytes.as_bytes().to_vec(),),
        )
        .await
        .unwrap()
        .unwrap();
    let us = |t: SystemTime| {
        t.duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_micros() as i64
    };
    let pushed = (us(received) - committed_us) as f64 / 1000.0;
    // The old clients' schedule from complete's answer.
    let (mut at, mut pause, mut polls) = (us(completed), 250_000i64, 0u32);
    loop {
        at += pause;
        polls += 1;
        if at >= committed_us {
            break;
        }
        pause = (pause * 2).min(3_000_000);
    }
    let polled = (at - committed_us) as f64 / 1000.0 + rtt;
    (pushed, polled, polls, rtt)
}
