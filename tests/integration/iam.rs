//! The local IAM guard: every AWS call of a function is held to that
//! function's policy in template.yaml, as IAM would hold it in AWS; and S3's
//! 403-for-a-missing-key rule, which moto does not apply, is.

use imagegram::domain::PostId;
use imagegram::pipeline::converter::{ConvertedImages, Originals};
use imagegram::pipeline::finalizer::GAVE_UP;
use imagegram_local::grants::{Grant, without};
use imagegram_local::stack::TemplateSource;
use imagegram_tests::images::{bands, encode_rgb};
use imagegram_tests::{build_stack, spawn_app, spawn_app_spec, template_text};

fn template_without(grant: &str) -> TemplateSource {
    TemplateSource::Text(without(&template_text(), &Grant::parse(grant).unwrap()).unwrap())
}

fn png() -> Vec<u8> {
    encode_rgb(&bands(64, 64, &[[10, 200, 10]]), image::ImageFormat::Png)
}

#[tokio::test]
async fn every_call_of_a_normal_post_is_allowed_by_the_template() {
    let app = spawn_app().await;
    let id = app.post_image("alice", "image/png", &png()).await;
    let post = app.wait_until_final(&id, "alice").await;
    assert_eq!(post["status"], "published");
    app.fetch_image(&post).await;
    let calls = app.recorder.calls();
    for function in ["ApiFunction", "ConverterFunction", "FinalizerFunction"] {
        assert!(
            calls.iter().any(|c| c.function == function),
            "{function} made no AWS call through the guard"
        );
    }
    let refused: Vec<_> = calls.iter().filter(|c| c.allowed_by.is_empty()).collect();
    assert!(refused.is_empty(), "{refused:#?}");
}

#[tokio::test]
async fn a_converter_without_put_object_fails_the_post_as_aws_would() {
    let app = spawn_app_spec(|s| {
        s.template = template_without("ConverterFunction/0/1/s3:PutObject/0");
    })
    .await;
    let id = app.post_image("alice", "image/png", &png()).await;
    let post = app.wait_until_final(&id, "alice").await;
    // Refused five times (AccessDenied, as S3 would answer), dead-lettered.
    assert_eq!(post["status"], "failed");
    assert_eq!(post["failure_reason"], GAVE_UP);
    let refused: Vec<_> = app
        .recorder
        .calls()
        .into_iter()
        .filter(|c| c.allowed_by.is_empty())
        .collect();
    assert!(!refused.is_empty());
    assert!(
        refused.iter().all(|c| c.function == "ConverterFunction"
            && c.action == "s3:PutObject"
            && c.resource.ends_with(&format!("/converted/{id}.jpg"))),
        "{refused:#?}"
    );
}

#[tokio::test]
async fn without_list_bucket_a_missing_key_answers_403_as_in_s3() {
    let missing = PostId::generate().original_key();
    // With the template's grants: 404, which the converter reads as
    // "missing" (and fails the post with a reason at once).
    let (parts, _) = build_stack(|_| {}).await;
    assert!(
        parts
            .converter
            .objects
            .head(&missing)
            .await
            .unwrap()
            .is_none()
    );
    // Without s3:ListBucket, S3 (and the guard) answer 403: not "missing",
    // an error, as a deployed converter would see it.
    let (parts, _) =
        build_stack(|s| s.template = template_without("ConverterFunction/0/2/s3:ListBucket/0"))
            .await;
    let e = parts.converter.objects.head(&missing).await.unwrap_err();
    assert!(e.to_string().contains("internal"), "{e}");
    // The "already converted?" probe takes that 403 as "not yet".
    let probe = PostId::generate().converted_key();
    assert_eq!(
        parts.converter.objects.source_of(&probe).await.unwrap(),
        None
    );
}

#[tokio::test]
async fn a_call_with_no_grant_never_reaches_moto() {
    // The API without s3:AbortMultipartUpload: the abort is refused before
    // it leaves, so the upload stays open in moto.
    let app = spawn_app_spec(|s| {
        s.template = template_without("ApiFunction/0/0/s3:AbortMultipartUpload/0");
    })
    .await;
    let created = app.create_post("alice", "image/png", 1000).await;
    let id = created["post"]["id"].as_str().unwrap();
    // A stack broken on purpose: its 500 is in no document.
    let r = app
        .call_unchecked(
            "DELETE",
            &format!("/posts/{id}/upload"),
            Some("alice"),
            None,
        )
        .await;
    assert_eq!(r.status, 500, "{:?}", r.body);
    assert_eq!(r.error_code(), "internal");
    assert_eq!(app.open_uploads().await, 1, "moto never saw the abort");
}

#[tokio::test]
async fn signing_a_request_needs_the_grant_of_what_it_does() {
    // Each S3 request the signing route signs is checked as the request S3
    // will see (method and query), not as the operation it was presigned
    // from: without s3:AbortMultipartUpload an abort is not signed, and
    // without s3:ListMultipartUploadParts a list of parts is not, while
    // the rest still are.
    for (grant, refused, allowed) in [
        (
            "ApiFunction/0/0/s3:AbortMultipartUpload/0",
            ("DELETE", "s3:AbortMultipartUpload"),
            "GET",
        ),
        (
            "ApiFunction/0/0/s3:ListMultipartUploadParts/0",
            ("GET", "s3:ListMultipartUploadParts"),
            "DELETE",
        ),
    ] {
        let app = spawn_app_spec(|s| s.template = template_without(grant)).await;
        let created = app.create_post("alice", "image/png", 1000).await;
        let key = created["upload"]["key"].as_str().unwrap();
        let upload = created["upload"]["upload_id"].as_str().unwrap();
        let sign = |method: &str| {
            serde_json::json!({"method": method, "key": key, "uploadId": upload}).to_string()
        };
        let r = app
            .call_unchecked(
                "POST",
                "/uploads/sign",
                Some("alice"),
                Some(&sign(refused.0)),
            )
            .await;
        assert_eq!(
            (r.status, r.error_code()),
            (500, "internal"),
            "{grant}: {:?}",
            r.body
        );
        let calls = app.recorder.calls();
        assert!(
            calls
                .iter()
                .any(|c| c.action == refused.1 && c.allowed_by.is_empty()),
            "{grant}: {calls:?}"
        );
        let r = app
            .call("POST", "/uploads/sign", Some("alice"), Some(&sign(allowed)))
            .await;
        assert_eq!(r.status, 200, "{grant}: {:?}", r.body);
    }
}
