//! The local gateway serves exactly the routes `template.yaml` gives API
//! Gateway, with the same public ones.

use std::collections::BTreeSet;

use imagegram::api::{PUBLIC_ROUTES, ROUTES};
use serde_norway::Value;

fn template() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../template.yaml");
    serde_norway::from_str(&std::fs::read_to_string(path).unwrap()).expect("template.yaml parses")
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
    let from_code: BTreeSet<String> = PUBLIC_ROUTES.iter().map(|s| s.to_string()).collect();
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
