//! Every route of `imagegram::api::Route` has each piece a route needs
//! outside the code: its stage throttle in the template, its sample event
//! and that event's expectation, and its identity check. (The template's
//! events and `openapi.yaml` are held to the same table in template.rs.)
//! Remove any piece of any route and a test here fails.

use imagegram::api::{Route, Throttle};
use imagegram_tests::{JWT_SECRET, spawn_app};
use serde_norway::Value;

fn template() -> Value {
    serde_norway::from_str(&imagegram_tests::template_text()).expect("template.yaml parses")
}

/// The parameter a `!Ref` names, or the number.
fn setting(v: &Value) -> String {
    match v {
        Value::Tagged(t) => format!(
            "!{} {}",
            t.tag.to_string().trim_start_matches('!'),
            t.value.as_str().unwrap_or_default()
        ),
        Value::Number(n) => n.to_string(),
        other => format!("{other:?}"),
    }
}

#[test]
fn every_route_has_the_stage_throttle_its_class_names() {
    let t = template();
    let settings = &t["Resources"]["HttpApi"]["Properties"]["RouteSettings"];
    for route in Route::ALL {
        let s = &settings[route.key()];
        let got = (!s.is_null()).then(|| {
            (
                setting(&s["ThrottlingRateLimit"]),
                setting(&s["ThrottlingBurstLimit"]),
            )
        });
        let want = match route.throttle() {
            Throttle::Default => None,
            Throttle::Upload => Some((
                "!Ref UploadThrottleRate".to_owned(),
                "!Ref UploadThrottleBurst".to_owned(),
            )),
            Throttle::Dependencies => Some(("5".to_owned(), "10".to_owned())),
        };
        assert_eq!(got, want, "{}'s RouteSettings", route.key());
    }
    // And no settings for a route that does not exist.
    for (k, _) in settings.as_mapping().unwrap() {
        let k = k.as_str().unwrap();
        assert!(
            Route::parse(k).is_some(),
            "RouteSettings for unknown route {k}"
        );
    }
}

/// The `routeKey` of every `events/api-*.json`, by file.
fn sample_events() -> Vec<(String, String)> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../events");
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let name = e.unwrap().file_name().into_string().unwrap();
        if !name.starts_with("api-") {
            continue;
        }
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(format!("{dir}/{name}")).unwrap())
                .unwrap();
        let key = v["routeKey"].as_str().unwrap().to_owned();
        assert_eq!(
            v["requestContext"]["routeKey"], key,
            "{name}: the two route keys differ"
        );
        out.push((name, key));
    }
    out
}

#[test]
fn every_route_has_a_sample_event_with_an_expectation() {
    let events = sample_events();
    let expected: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../events/expected.json"
        ))
        .unwrap(),
    )
    .unwrap();
    let expected: Vec<&str> = expected["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["file"].as_str().unwrap())
        .collect();
    for route in Route::ALL {
        let files: Vec<&String> = events
            .iter()
            .filter(|(_, k)| k == route.key())
            .map(|(f, _)| f)
            .collect();
        assert!(
            !files.is_empty(),
            "no events/api-*.json for {}",
            route.key()
        );
        for f in files {
            assert!(
                expected.contains(&f.as_str()),
                "events/expected.json has no {f}"
            );
        }
    }
    for (f, k) in &events {
        assert!(Route::parse(k).is_some(), "{f}: unknown route {k}");
    }
}

/// A request path of `route`, its parameters filled in.
fn path_of(route: Route) -> (String, String) {
    let (method, path) = route.key().split_once(' ').unwrap();
    let id = "0194f7a0c1d27b3e8a5b6c7d8e9f0a1b";
    (
        method.to_owned(),
        path.replace("{id}", id).replace("{comment_id}", id),
    )
}

#[tokio::test]
async fn every_route_but_the_public_ones_refuses_missing_bad_and_expired_tokens() {
    let app = spawn_app().await;
    let expired = imagegram_local::auth::mint(JWT_SECRET, "alice", Some(0));
    let bad_headers = [
        None,
        Some("Bearer".to_owned()),
        Some("Bearer not-a-jwt".to_owned()),
        Some(format!(
            "Bearer {}",
            imagegram_local::auth::mint("wrong-secret", "alice", None)
        )),
        Some(format!(
            "Basic {}",
            imagegram_local::auth::mint(JWT_SECRET, "alice", None)
        )),
        Some(format!("Bearer {expired}")),
    ];
    // A token minted with TTL 0 expires at once; make sure a second passed.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    for route in Route::ALL {
        let (method, path) = path_of(route);
        for h in &bad_headers {
            let mut req = app
                .http
                .request(method.parse().unwrap(), format!("{}{path}", app.base));
            if let Some(h) = h {
                req = req.header("authorization", h);
            }
            let resp = req.body(r#"{"content":"x"}"#).send().await.unwrap();
            let status = resp.status().as_u16();
            if route.is_public() {
                assert_eq!(status, 200, "{method} {path} is public");
                continue;
            }
            assert_eq!(status, 401, "{method} {path} with {h:?}");
            let body: serde_json::Value = resp.json().await.unwrap();
            assert_eq!(body["error"]["code"], "unauthorized");
        }
    }
}

#[tokio::test]
async fn the_handler_itself_refuses_every_non_public_route_without_the_authorizers_claims() {
    // Behind API Gateway (or the local gateway) no such request arrives;
    // the handler holds the same line: each route's arm takes the caller
    // exactly when `Route::is_public` says it must.
    let app = spawn_app().await;
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../events");
    for (file, key) in sample_events() {
        let route = Route::parse(&key).unwrap();
        let mut v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(format!("{dir}/{file}")).unwrap())
                .unwrap();
        v["requestContext"]
            .as_object_mut()
            .unwrap()
            .remove("authorizer");
        let req = lambda_http::request::from_str(&v.to_string()).unwrap();
        let status = imagegram::api::handle(app.app(), req)
            .await
            .status()
            .as_u16();
        if route.is_public() {
            assert_eq!(status, 200, "{file}");
        } else {
            assert_eq!(status, 401, "{file}: {key} answered without a caller");
        }
    }
}

/// Known difference: API Gateway applies the stage's route throttles
/// (`GET /health/dependencies`: burst 10, rate 5) and answers 429 past
/// them; the local gateway applies none.
#[tokio::test]
async fn known_difference_the_http_stage_is_not_throttled_locally() {
    let t = template();
    let s =
        &t["Resources"]["HttpApi"]["Properties"]["RouteSettings"][Route::HealthDependencies.key()];
    let burst: usize = setting(&s["ThrottlingBurstLimit"]).parse().unwrap();
    let app = spawn_app().await;
    let n = burst * 3;
    let calls = (0..n).map(|_| app.call("GET", "/health/dependencies", Some("olga"), None));
    let statuses: Vec<u16> = futures::future::join_all(calls)
        .await
        .into_iter()
        .map(|r| r.status)
        .collect();
    assert_eq!(
        statuses,
        vec![200; n],
        "{n} calls at once, past a burst of {burst}"
    );
}
