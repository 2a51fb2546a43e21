//! The Imagegram API as the command line calls it: JSON over HTTPS with a
//! bearer token, errors turned into one line a person can act on, and
//! requests retried when the network (not the API) failed them.

use std::time::Duration;

use serde_json::Value;

use crate::Failure;

pub struct Api {
    base: String,
    token: String,
    http: reqwest::Client,
}

/// How many times a call the network failed (connection refused or reset,
/// a timeout, a 502/503/504) is tried in all.
const ATTEMPTS: u32 = 6;

impl Api {
    pub fn new(base: &str, token: &str, http: reqwest::Client) -> Self {
        Api {
            base: base.trim_end_matches('/').to_owned(),
            token: token.to_owned(),
            http,
        }
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// Calls the API; retries what the network failed, with backoff (and
    /// the API's `Retry-After`). `idempotency_key` makes a retried create
    /// safe: the API answers a repeat with the first answer.
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
        idempotency_key: Option<&str>,
    ) -> Result<(u16, Value), Failure> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut req = self
                .http
                .request(method.clone(), format!("{}{path}", self.base))
                .bearer_auth(&self.token)
                .timeout(Duration::from_secs(30));
            if let Some(k) = idempotency_key {
                req = req.header("Idempotency-Key", k);
            }
            if let Some(b) = body {
                req = req.json(b);
            }
            let outcome = req.send().await;
            let (status, retry_after, text) = match outcome {
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    let retry_after = resp
                        .headers()
                        .get("retry-after")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.parse::<u64>().ok());
                    match resp.text().await {
                        Ok(t) => (status, retry_after, t),
                        Err(e) if attempt < ATTEMPTS => {
                            backoff(attempt, None, &format!("{method} {path}: {e}")).await;
                            continue;
                        }
                        Err(e) => return Err(Failure::network(&self.base, e)),
                    }
                }
                Err(e) if attempt < ATTEMPTS => {
                    backoff(attempt, None, &format!("{method} {path}: {e}")).await;
                    continue;
                }
                Err(e) => return Err(Failure::network(&self.base, e)),
            };
            let value: Value = if text.trim().is_empty() {
                Value::Null
            } else {
                serde_json::from_str(&text).unwrap_or(Value::String(text))
            };
            // 409 with a key: the first request with it is still running.
            let retry = matches!(status, 502..=504)
                || (status == 409 && idempotency_key.is_some() && is_in_progress(&value));
            if retry && attempt < ATTEMPTS {
                backoff(attempt, retry_after, &format!("{method} {path}: {status}")).await;
                continue;
            }
            return Ok((status, value));
        }
    }

    /// Like [`call`](Self::call), and a 2xx or a failure.
    pub async fn expect(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
        idempotency_key: Option<&str>,
    ) -> Result<Value, Failure> {
        let (status, value) = self.call(method, path, body, idempotency_key).await?;
        if (200..300).contains(&status) {
            Ok(value)
        } else {
            Err(Failure::api(status, &value))
        }
    }
}

fn is_in_progress(v: &Value) -> bool {
    v["error"]["reason"] == "in_progress"
}

/// Exponential backoff with full jitter (0.5 s, 1 s, 2 s, ... at most
/// 30 s), or the server's `Retry-After`.
pub async fn backoff(attempt: u32, retry_after: Option<u64>, why: &str) {
    let wait = match retry_after {
        Some(s) => Duration::from_secs(s.min(60)),
        None => {
            let cap = Duration::from_millis(500) * 2u32.pow((attempt - 1).min(6));
            cap.min(Duration::from_secs(30)).mul_f64(jitter())
        }
    };
    crate::verbose(&format!(
        "retrying in {:.1} s after {why}",
        wait.as_secs_f64()
    ));
    tokio::time::sleep(wait).await;
}

/// A number in [0.5, 1): enough randomness that retrying clients spread.
fn jitter() -> f64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .subsec_nanos();
    let mixed = u64::from(nanos).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 11;
    0.5 + (mixed as f64 / (1u64 << 53) as f64) / 2.0
}
