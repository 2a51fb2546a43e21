//! CORS as API Gateway's HTTP API does it, from template.yaml: preflights
//! answered by the gateway without a token, `Access-Control-Allow-Origin`
//! on every response (errors included); and the bucket's CORS rule, read
//! back from the S3 endpoint, is the template's.

use imagegram_local::cors::Cors;
use imagegram_local::template::{Stack, Template};
use imagegram_tests::{moto_endpoint, spawn_app, template_text, token};

fn template_cors() -> Cors {
    let mut stack = Stack::new("s", "123456789012", "us-east-1");
    stack.placeholders = true;
    Cors::from_template(&Template::parse(&template_text(), stack).unwrap()).unwrap()
}

#[tokio::test]
async fn preflights_are_answered_from_the_template_without_a_token() {
    let app = spawn_app().await;
    let cors = template_cors();
    assert!(cors.allow_headers.contains(&"idempotency-key".to_owned()));
    for path in [
        "/posts",
        "/posts/0194f7a0c1d27b3e8a5b6c7d8e9f0a1b/comments",
        "/nope",
    ] {
        let resp = app
            .http
            .request(reqwest::Method::OPTIONS, format!("{}{path}", app.base))
            .header("Origin", "http://localhost:8080")
            .header("Access-Control-Request-Method", "POST")
            .header(
                "Access-Control-Request-Headers",
                "authorization,content-type,idempotency-key",
            )
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 204, "{path}");
        let h = resp.headers();
        assert_eq!(h["access-control-allow-origin"], "*");
        assert_eq!(
            h["access-control-allow-methods"],
            cors.allow_methods.join(",").as_str()
        );
        assert_eq!(
            h["access-control-allow-headers"],
            cors.allow_headers.join(",").as_str()
        );
        assert_eq!(
            h["access-control-max-age"],
            cors.max_age.unwrap().to_string().as_str()
        );
    }
    // A header the template does not allow: no CORS headers, and the
    // browser refuses.
    let resp = app
        .http
        .request(reqwest::Method::OPTIONS, format!("{}/posts", app.base))
        .header("Origin", "http://localhost:8080")
        .header("Access-Control-Request-Method", "POST")
        .header("Access-Control-Request-Headers", "x-not-allowed")
        .send()
        .await
        .unwrap();
    assert!(!resp.headers().contains_key("access-control-allow-origin"));
}

#[tokio::test]
async fn every_response_carries_the_allow_origin_header_errors_included() {
    let app = spawn_app().await;
    let cors = template_cors();
    let cases = [
        ("/posts", Some(token("alice")), 200),
        ("/posts", None, 401),
        ("/posts/nope", Some(token("alice")), 404),
        ("/no/such/route", Some(token("alice")), 404),
        ("/health", None, 200),
    ];
    for (path, bearer, status) in cases {
        let mut req = app
            .http
            .get(format!("{}{path}", app.base))
            .header("Origin", "http://localhost:8080");
        if let Some(t) = bearer {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), status, "{path}");
        assert_eq!(resp.headers()["access-control-allow-origin"], "*", "{path}");
        assert_eq!(
            resp.headers()["access-control-expose-headers"],
            cors.expose_headers.join(",").as_str(),
            "{path}"
        );
    }
}

#[tokio::test]
async fn the_buckets_cors_rule_is_the_templates() {
    let app = spawn_app().await;
    let got = app
        .s3
        .get_bucket_cors()
        .bucket(&app.bucket)
        .send()
        .await
        .unwrap();
    let mut stack = Stack::new("s", "123456789012", "us-east-1");
    stack.placeholders = true;
    let template = Template::parse(&template_text(), stack).unwrap();
    let want = imagegram_local::bootstrap::cors_rules(&template).unwrap();
    assert_eq!(got.cors_rules(), want.cors_rules());
    let rule = &got.cors_rules()[0];
    assert_eq!(rule.expose_headers(), ["ETag"]);
    assert!(rule.allowed_methods().contains(&"PUT".to_owned()));
}

/// Known difference (README): moto answers a preflight for a method the
/// bucket's rule does not allow with 200 (S3: 403). Its allowed methods are
/// still the rule's, so a browser refuses the request as it would in AWS.
#[tokio::test]
async fn known_difference_moto_answers_a_preflight_the_rule_does_not_allow() {
    let app = spawn_app().await;
    let url = format!(
        "{}/{}/originals/x",
        moto_endpoint().trim_end_matches('/'),
        app.bucket
    );
    let resp = app
        .http
        .request(reqwest::Method::OPTIONS, url)
        .header("Origin", "http://localhost:8080")
        // S3's CORS rules cannot allow PATCH at all.
        .header("Access-Control-Request-Method", "PATCH")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "moto now refuses it: update the README");
    let methods = resp.headers()["access-control-allow-methods"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(!methods.contains("PATCH"), "{methods}");
    assert!(methods.contains("PUT"), "{methods}");
}
