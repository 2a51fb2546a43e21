//! `imagegram-smoke API_URL TOKEN`: the smoke test a user runs after
//! `sam deploy` (and CI against the local stack). One post through the whole
//! system, every step timed:
//!
//! health -> create post -> PUT each part to its presigned URL -> complete
//! -> wait for `published` -> fetch the image (a 600x600 baseline JPEG) ->
//! comment -> read the post and the feed -> delete the comment -> abort a
//! second upload. The contract has no route that deletes a published post,
//! so the smoke post stays (its caption says what it is).
//!
//! Exit status 0 when every step passed, 1 otherwise (the failing step and
//! the answer are printed).

use std::time::{Duration, Instant};

use serde_json::{Value, json};

type Failure = String;

struct Smoke {
    api: String,
    token: String,
    http: reqwest::Client,
    started: Instant,
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [api, token] = args.as_slice() else {
        eprintln!("usage: imagegram-smoke API_URL TOKEN");
        std::process::exit(2);
    };
    imagegram_bench::install_tls_provider();
    let rt = tokio::runtime::Runtime::new().expect("tokio runtime");
    let smoke = Smoke {
        api: api.trim_end_matches('/').to_owned(),
        token: token.clone(),
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .expect("HTTP client"),
        started: Instant::now(),
    };
    match rt.block_on(smoke.run()) {
        Ok(()) => println!(
            "smoke test passed in {:.2} s",
            smoke.started.elapsed().as_secs_f64()
        ),
        Err(e) => {
            eprintln!("smoke test FAILED: {e}");
            std::process::exit(1);
        }
    }
}

/// A noisy RGB PNG over one part (5 MiB), so the upload is multipart.
fn image() -> Vec<u8> {
    let (w, h) = (1800u32, 1200u32);
    let mut x: u32 = 0x9E37_79B9;
    let img = image::RgbImage::from_fn(w, h, |_, _| {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        let [a, b, c, _] = x.to_le_bytes();
        image::Rgb([a, b, c])
    });
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png)
        .expect("encode PNG");
    out.into_inner()
}

impl Smoke {
    async fn run(&self) -> Result<(), Failure> {
        let r = self
            .step("GET /health", self.call("GET", "/health", None, false))
            .await?;
        expect(&r, 200)?;

        let bytes = image();
        let created = self
            .step(
                "POST /posts",
                self.call(
                    "POST",
                    "/posts",
                    Some(json!({
                        "caption": "imagegram smoke test",
                        "content_type": "image/png",
                        "size_bytes": bytes.len(),
                    })),
                    true,
                ),
            )
            .await?;
        expect(&created, 201)?;
        let id = created.1["post"]["id"]
            .as_str()
            .ok_or("no post id")?
            .to_owned();
        let upload = &created.1["upload"];
        let part_size = upload["part_size"].as_u64().ok_or("no part_size")? as usize;
        let parts = upload["parts"].as_array().ok_or("no parts")?;

        let t = Instant::now();
        for part in parts {
            let n = part["part_number"].as_u64().ok_or("no part_number")? as usize;
            let chunk = bytes[(n - 1) * part_size..(n * part_size).min(bytes.len())].to_vec();
            let url = part["url"].as_str().ok_or("no url")?;
            let resp = self
                .http
                .put(url)
                .body(chunk)
                .send()
                .await
                .map_err(|e| format!("PUT part {n}: {e}"))?;
            if !resp.status().is_success() {
                return Err(format!(
                    "PUT part {n}: {} {}",
                    resp.status(),
                    resp.text().await.unwrap_or_default()
                ));
            }
        }
        self.report(
            &format!("PUT {} parts ({} bytes)", parts.len(), bytes.len()),
            t,
        );

        let done = self
            .step(
                "POST /posts/{id}/upload/complete",
                self.call("POST", &format!("/posts/{id}/upload/complete"), None, true),
            )
            .await?;
        expect(&done, 202)?;

        let t = Instant::now();
        let post = loop {
            let r = self
                .call("GET", &format!("/posts/{id}"), None, true)
                .await?;
            expect(&r, 200)?;
            match r.1["status"].as_str() {
                Some("published") => break r.1,
                Some("failed") => {
                    return Err(format!("the post failed: {}", r.1["failure_reason"]));
                }
                _ if t.elapsed() > Duration::from_secs(120) => {
                    return Err(format!("still {} after 120 s", r.1["status"]));
                }
                _ => tokio::time::sleep(Duration::from_millis(250)).await,
            }
        };
        self.report("wait for published", t);

        let t = Instant::now();
        let url = post["image_url"]
            .as_str()
            .ok_or("published without image_url")?;
        let resp = self
            .http
            .get(url)
            .send()
            .await
            .map_err(|e| format!("GET image: {e}"))?;
        let status = resp.status();
        let content_type = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let jpeg = resp.bytes().await.map_err(|e| format!("GET image: {e}"))?;
        if status != 200 || content_type != "image/jpeg" {
            return Err(format!(
                "GET image: {status}, content-type {content_type:?}"
            ));
        }
        let decoded = image::load_from_memory_with_format(&jpeg, image::ImageFormat::Jpeg)
            .map_err(|e| format!("the image is not a JPEG: {e}"))?;
        if (decoded.width(), decoded.height()) != (600, 600) {
            return Err(format!(
                "the image is {}x{}, not 600x600",
                decoded.width(),
                decoded.height()
            ));
        }
        self.report(
            &format!("GET image (600x600 JPEG, {} bytes)", jpeg.len()),
            t,
        );

        let comment = self
            .step(
                "POST /posts/{id}/comments",
                self.call(
                    "POST",
                    &format!("/posts/{id}/comments"),
                    Some(json!({ "content": "smoke test comment" })),
                    true,
                ),
            )
            .await?;
        expect(&comment, 201)?;
        let comment_id = comment.1["id"].as_str().ok_or("no comment id")?.to_owned();

        let r = self
            .step(
                "GET /posts/{id}",
                self.call("GET", &format!("/posts/{id}"), None, true),
            )
            .await?;
        expect(&r, 200)?;
        if r.1["comment_count"] != 1 || r.1["last_comments"][0]["id"] != comment_id.as_str() {
            return Err(format!("the post does not show its comment: {}", r.1));
        }
        let r = self
            .step(
                "GET /posts",
                self.call("GET", "/posts?limit=20", None, true),
            )
            .await?;
        expect(&r, 200)?;
        if !r.1["posts"].is_array() {
            return Err(format!("the feed is not a list of posts: {}", r.1));
        }

        let r = self
            .step(
                "DELETE /posts/{id}/comments/{comment_id}",
                self.call(
                    "DELETE",
                    &format!("/posts/{id}/comments/{comment_id}"),
                    None,
                    true,
                ),
            )
            .await?;
        expect(&r, 204)?;

        // A second post, never uploaded: aborted, so it leaves nothing.
        let second = self
            .call(
                "POST",
                "/posts",
                Some(json!({ "caption": "", "content_type": "image/jpeg", "size_bytes": 1 })),
                true,
            )
            .await?;
        expect(&second, 201)?;
        let second_id = second.1["post"]["id"].as_str().ok_or("no post id")?;
        let r = self
            .step(
                "DELETE /posts/{id}/upload",
                self.call("DELETE", &format!("/posts/{second_id}/upload"), None, true),
            )
            .await?;
        expect(&r, 204)?;
        println!("post {id} stays published (the API has no route that deletes posts)");
        Ok(())
    }

    async fn step<F: Future<Output = Result<(u16, Value), Failure>>>(
        &self,
        name: &str,
        call: F,
    ) -> Result<(u16, Value), Failure> {
        let t = Instant::now();
        let r = call.await.map_err(|e| format!("{name}: {e}"))?;
        self.report(&format!("{name} -> {}", r.0), t);
        Ok(r)
    }

    fn report(&self, name: &str, t: Instant) {
        println!("{:>9.1} ms  {name}", t.elapsed().as_secs_f64() * 1000.0);
    }

    async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
        auth: bool,
    ) -> Result<(u16, Value), Failure> {
        let mut req = self.http.request(
            method.parse().map_err(|_| "bad method")?,
            format!("{}{path}", self.api),
        );
        if auth {
            req = req.bearer_auth(&self.token);
        }
        if let Some(b) = body {
            req = req
                .header("content-type", "application/json")
                .body(b.to_string());
        }
        let resp = req
            .send()
            .await
            .map_err(|e| format!("{method} {path}: {e}"))?;
        let status = resp.status().as_u16();
        let text = resp.text().await.map_err(|e| e.to_string())?;
        let value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        Ok((status, value))
    }
}

fn expect(r: &(u16, Value), status: u16) -> Result<(), Failure> {
    if r.0 == status {
        Ok(())
    } else {
        Err(format!("expected {status}, got {}: {}", r.0, r.1))
    }
}
