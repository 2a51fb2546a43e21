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
