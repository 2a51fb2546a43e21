//! The local gateway serves exactly the routes `template.yaml` gives API
//! Gateway, with the same public ones.

use std::collections::BTreeSet;

use imagegram::api::{ROUTES, Route};
use serde_norway::Value;

fn template() -> Value {
    serde_norway::from_str(&imagegram_tests::template_text()).expect("template.yaml parses")
}

/// The template resolved with placeholders (`<ImagesBucket.Arn>`) for the
/// resources, and these parameters.
fn resolved(parameters: &[(&str, &str)]) -> imagegram_local::template::Template {
    let mut stack = imagegram_local::template::Stack::new("s", "123456789012", "us-east-1");
    stack.placeholders = true;
    for (k, v) in parameters {
        stack = stack.parameter(k, v);
    }
    imagegram_local::template::Template::parse(&imagegram_tests::template_text(), stack)
        .expect("template resolves")
}

/// Every `AWS::Serverless::Function` of the template.
fn functions() -> Vec<String> {
    let t = template();
    t["Resources"]
        .as_mapping()
        .unwrap()
        .iter()
        .filter(|(_, r)| r["Type"].as_str() == Some("AWS::Serverless::Function"))
        .map(|(k, _)| k.as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn the_local_stack_runs_every_function_of_the_template_under_its_policy() {
    let mut local: Vec<String> = imagegram_local::stack::FUNCTIONS
        .iter()
        .map(|s| s.to_string())
        .collect();
    local.sort();
    let mut all = functions();
    all.sort();
    assert_eq!(local, all);
    // And every policy is inline statements the guard can evaluate.
    for cdn in ["true", "false"] {
        let t = resolved(&[("EnableCdn", cdn)]);
        for f in &all {
            t.function_policy(f)
                .unwrap_or_else(|e| panic!("{f} (EnableCdn={cdn}): {e}"));
        }
    }
}

/// S3 answers a GET or HEAD of a missing key with 403, not 404, when the
/// caller may not `s3:ListBucket` the bucket. moto does not (the local
/// guard emulates it); in AWS a role that reads keys without being able to
/// list them sees every missing key as a permission fault: the converter's
/// first probe of `converted/<id>.jpg` is such a read.
#[test]
fn every_role_that_reads_keys_may_list_their_bucket() {
    use imagegram_local::iam::glob;
    for cdn in ["true", "false"] {
        let t = resolved(&[("EnableCdn", cdn)]);
        for f in functions() {
            let policy = t.function_policy(&f).unwrap();
            for s in &policy.statements {
                if s.effect != imagegram_local::iam::Effect::Allow
                    || !s.actions.iter().any(|a| glob(a, "s3:GetObject", true))
                {
                    continue;
                }
                for r in &s.resources {
                    if f == "FinalizerFunction" && r.ends_with("/converted/*") {
                        // It never reads: it signs the GET of a published
                        // (existing) image for the author's notice.
                        continue;
                    }
                    let bucket = r.split('/').next().unwrap();
                    assert!(
                        policy.allows("s3:ListBucket", bucket, &[]),
                        "{f} (EnableCdn={cdn}) reads {r} but may not s3:ListBucket {bucket} \
                         (without an s3:prefix condition): S3 would answer its reads of \
                         missing keys with 403"
                    );
                }
            }
        }
    }
}

#[test]
fn with_the_cdn_the_api_cannot_read_images_and_cloudfront_can() {
    let t = resolved(&[("EnableCdn", "true")]);
    let api = t.function_policy("ApiFunction").unwrap();
    assert!(!api.allows("s3:GetObject", "<ImagesBucket.Arn>/converted/x.jpg", &[]));
    let t = resolved(&[("EnableCdn", "false")]);
    let api = t.function_policy("ApiFunction").unwrap();
    assert!(api.allows("s3:GetObject", "<ImagesBucket.Arn>/converted/x.jpg", &[]));
}

/// (route key, whether it opts out of the authorizer) of every HttpApi event.
fn template_routes() -> Vec<(String, bool)> {
    let t = template();
    let mut routes = Vec::new();
    for (_, res) in t["Resources"].as_mapping().unwrap() {
        let Some(events) = res["Properties"]["Events"].as_mapping() else {
            continue;
        };
        for (_, ev) in events {
            if ev["Type"].as_str() != Some("HttpApi") {
                continue;
            }
            let p = &ev["Properties"];
            let key = format!(
                "{} {}",
                p["Method"].as_str().unwrap(),
                p["Path"].as_str().unwrap()
            );
            let public = p["Auth"]["Authorizer"].as_str() == Some("NONE");
            routes.push((key, public));
        }
    }
    routes
}

#[test]
fn template_and_gateway_declare_the_same_routes() {
    let from_template: BTreeSet<String> = template_routes().into_iter().map(|(k, _)| k).collect();
    let from_code: BTreeSet<String> = ROUTES.iter().map(|s| s.to_string()).collect();
    assert_eq!(from_template, from_code);
    assert_eq!(
        template_routes().len(),
        ROUTES.len(),
        "no route declared twice"
    );
}

#[test]
fn template_and_gateway_agree_on_public_routes() {
    let public: BTreeSet<String> = template_routes()
        .into_iter()
        .filter(|(_, p)| *p)
        .map(|(k, _)| k)
        .collect();
    let from_code: BTreeSet<String> = Route::ALL
        .into_iter()
        .filter(|r| r.is_public())
        .map(|r| r.key().to_owned())
        .collect();
    assert_eq!(public, from_code);
}

#[test]
fn local_pollers_read_the_queues_the_template_maps_to_each_function() {
    use imagegram_local::pipeline::{EVENT_SOURCES, Function};
    let t = template();
    let mut from_template = BTreeSet::new();
    for (name, res) in t["Resources"].as_mapping().unwrap() {
        let function = match name.as_str().unwrap() {
            "ConverterFunction" => "Converter",
            "FinalizerFunction" => "Finalizer",
            _ => continue,
        };
        for (_, ev) in res["Properties"]["Events"].as_mapping().unwrap() {
            assert_eq!(ev["Type"].as_str(), Some("SQS"));
            // `Queue: !GetAtt X.Arn`
            let queue = match &ev["Properties"]["Queue"] {
                Value::Tagged(t) => t
                    .value
                    .as_str()
                    .unwrap()
                    .trim_end_matches(".Arn")
                    .to_owned(),
                other => panic!("Queue is not !GetAtt: {other:?}"),
            };
            assert_eq!(
                ev["Properties"]["FunctionResponseTypes"][0].as_str(),
                Some("ReportBatchItemFailures"),
                "{queue}: the handlers answer partial batch responses"
            );
            from_template.insert((queue, function.to_owned()));
        }
    }
    let local: BTreeSet<(String, String)> = EVENT_SOURCES
        .iter()
        .map(|(q, f)| {
            (
                q.to_string(),
                if *f == Function::Converter {
                    "Converter"
                } else {
                    "Finalizer"
                }
                .to_owned(),
            )
        })
        .collect();
    assert_eq!(from_template, local);
}

#[test]
fn template_redrive_and_notification_match_the_local_stack() {
    let t = template();
    let r = &t["Resources"];
    for (queue, dlq) in [
        ("ConversionQueue", "ConversionDeadLetterQueue"),
        ("ResultsQueue", "ResultsDeadLetterQueue"),
    ] {
        let redrive = &r[queue]["Properties"]["RedrivePolicy"];
        assert_eq!(
            redrive["maxReceiveCount"].as_u64(),
            Some(u64::from(imagegram_local::bootstrap::MAX_RECEIVE_COUNT)),
            "{queue}"
        );
        match &redrive["deadLetterTargetArn"] {
            Value::Tagged(tag) => {
                assert_eq!(tag.value.as_str(), Some(format!("{dlq}.Arn").as_str()))
            }
            other => panic!("{other:?}"),
        }
    }
    let rules = &r["ImagesBucket"]["Properties"]["NotificationConfiguration"]["QueueConfigurations"]
        [0]["Filter"]["S3Key"]["Rules"][0];
    assert_eq!(
        rules["Value"].as_str(),
        Some(imagegram::domain::ORIGINALS_PREFIX)
    );
    // Visibility timeout at least 6x the converter's timeout.
    let timeout = r["ConverterFunction"]["Properties"]["Timeout"]
        .as_u64()
        .unwrap();
    let visibility = r["ConversionQueue"]["Properties"]["VisibilityTimeout"]
        .as_u64()
        .unwrap();
    assert!(visibility >= 6 * timeout, "{visibility} < 6 x {timeout}");
}

#[test]
fn every_function_logs_json_into_a_group_with_a_retention() {
    let t = template();
    let r = &t["Resources"];
    for f in functions() {
        let logging = &r[f.as_str()]["Properties"]["LoggingConfig"];
        assert_eq!(logging["LogFormat"].as_str(), Some("JSON"), "{f}");
        let group = match &logging["LogGroup"] {
            Value::Tagged(tag) => tag.value.as_str().unwrap().to_owned(),
            other => panic!("{f}: LogGroup is not !Ref: {other:?}"),
        };
        assert_eq!(
            r[group.as_str()]["Type"].as_str(),
            Some("AWS::Logs::LogGroup"),
            "{f}"
        );
        assert!(
            !r[group.as_str()]["Properties"]["RetentionInDays"].is_null(),
            "{f}: {group} keeps logs forever"
        );
        // Lambda sets AWS_LAMBDA_LOG_FORMAT/LEVEL from LoggingConfig.
        let env = &r[f.as_str()]["Properties"]["Environment"]["Variables"];
        for v in ["AWS_LAMBDA_LOG_FORMAT", "AWS_LAMBDA_LOG_LEVEL", "RUST_LOG"] {
            assert!(env[v].is_null(), "{f} sets {v} itself");
        }
    }
}

#[test]
fn the_openapi_document_declares_exactly_the_routes() {
    let from_spec = imagegram_tests::spec::spec().routes();
    let from_code: BTreeSet<String> = ROUTES.iter().map(|s| s.to_string()).collect();
    assert_eq!(from_spec, from_code);
    // Public in the document exactly where API Gateway lets through.
    let doc = imagegram_tests::spec::spec().doc();
    for route in ROUTES {
        let (method, path) = route.split_once(' ').unwrap();
        let security = &doc["paths"][path][method.to_lowercase()]["security"];
        let public = security.as_array().is_some_and(|s| s.is_empty());
        assert_eq!(public, Route::parse(route).unwrap().is_public(), "{route}");
    }
}

/// Known difference: what the Lambda service itself does with a function's
/// role (writes its log lines, polls its event sources, makes its network
/// interfaces) is not emulated, so the local guard never checks those
/// grants. They are pinned here instead: each role's `lambda-service`
/// policy holds exactly what its function's configuration needs, on its own
/// resources (the ENI actions on "*", which AWS requires), and no role has
/// a managed policy.
#[test]
fn each_roles_lambda_service_grants_are_exactly_what_its_configuration_needs() {
    let t = template();
    let r = resolved(&[]);
    let sub = |v: &Value| {
        r.resolve(v)
            .unwrap()
            .strings()
            .unwrap_or_else(|e| panic!("{v:?}: {e}"))
    };
    for function in functions() {
        let props = &t["Resources"][function.as_str()]["Properties"];
        let (role, _) =
            imagegram_local::template::calls_policy(&t, &function).expect("a role of its own");
        let role_props = &t["Resources"][role.as_str()]["Properties"];
        assert!(
            role_props["ManagedPolicyArns"].is_null(),
            "{role}: managed policies"
        );
        let policies = role_props["Policies"].as_sequence().unwrap();
        let names: Vec<&str> = policies
            .iter()
            .map(|p| p["PolicyName"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["calls", "lambda-service"], "{role}");
        let mut got: Vec<(String, Vec<String>)> = policies[1]["PolicyDocument"]["Statement"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|s| {
                assert_eq!(s["Effect"].as_str(), Some("Allow"));
                let actions = match &s["Action"] {
                    Value::Sequence(a) => {
                        a.iter().map(|a| a.as_str().unwrap().to_owned()).collect()
                    }
                    a => vec![a.as_str().unwrap().to_owned()],
                };
                (actions.join(","), sub(&s["Resource"]))
            })
            .collect();
        let mut want = vec![(
            "logs:CreateLogStream,logs:PutLogEvents".to_owned(),
            sub(&props["LoggingConfig"]["LogGroup"])
                .iter()
                // The group's own ARN (placeholders here: `<Group.Arn>`).
                .map(|g| format!("{}.Arn>", g.trim_end_matches('>')))
                .collect::<Vec<_>>(),
        )];
        let queues: Vec<String> = props["Events"]
            .as_mapping()
            .into_iter()
            .flatten()
            .filter(|(_, e)| e["Type"].as_str() == Some("SQS"))
            .flat_map(|(_, e)| sub(&e["Properties"]["Queue"]))
            .collect();
        if !queues.is_empty() {
            want.push((
                "sqs:ReceiveMessage,sqs:DeleteMessage,sqs:GetQueueAttributes,sqs:ChangeMessageVisibility"
                    .to_owned(),
                queues,
            ));
        }
        if !props["VpcConfig"].is_null() {
            want.push((
                "ec2:CreateNetworkInterface,ec2:DescribeNetworkInterfaces,ec2:DescribeSubnets,\
                 ec2:DeleteNetworkInterface,ec2:AssignPrivateIpAddresses,ec2:UnassignPrivateIpAddresses"
                    .to_owned(),
                vec!["*".to_owned()],
            ));
        }
        got.sort();
        want.sort();
        assert_eq!(got, want, "{role}'s lambda-service policy");
    }
}
