//! `openapi.yaml` as the tests hold the API to it: the routes it declares,
//! and every response body the tests receive checked against the schema of
//! its route and status (JSON Schema 2020-12, `jsonschema`), so a field
//! added, renamed or mistyped fails a test.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Mutex, OnceLock};

use serde_json::{Value, json};

pub struct Spec {
    /// The document as JSON, OpenAPI 3.0's `nullable` rewritten as JSON
    /// Schema's `type: [T, "null"]`.
    doc: Value,
    validators: Mutex<HashMap<(String, u16), std::sync::Arc<jsonschema::Validator>>>,
}

/// The checkout's `openapi.yaml`, read once.
pub fn spec() -> &'static Spec {
    static SPEC: OnceLock<Spec> = OnceLock::new();
    SPEC.get_or_init(|| {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../openapi.yaml");
        let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
        let mut doc: Value = serde_norway::from_str(&text).expect("openapi.yaml parses");
        json_schema(&mut doc);
        Spec {
            doc,
            validators: Mutex::default(),
        }
    })
}

/// OpenAPI 3.0 -> JSON Schema: `nullable: true` becomes a `null` type.
fn json_schema(v: &mut Value) {
    match v {
        Value::Object(m) => {
            if m.remove("nullable") == Some(Value::Bool(true))
                && let Some(Value::String(t)) = m.get("type").cloned()
            {
                m.insert("type".into(), json!([t, "null"]));
            }
            m.values_mut().for_each(json_schema);
        }
        Value::Array(a) => a.iter_mut().for_each(json_schema),
        _ => {}
    }
}

/// A path as one JSON Pointer segment, inside a URI fragment.
fn escape(segment: &str) -> String {
    segment
        .replace('~', "~0")
        .replace('/', "~1")
        .replace('{', "%7B")
        .replace('}', "%7D")
}

impl Spec {
    pub fn doc(&self) -> &Value {
        &self.doc
    }

    /// Every `METHOD /path` the document declares.
    pub fn routes(&self) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        for (path, item) in self.doc["paths"].as_object().expect("paths") {
            for method in ["get", "post", "put", "patch", "delete"] {
                if item.get(method).is_some() {
                    out.insert(format!("{} {path}", method.to_uppercase()));
                }
            }
        }
        out
    }

    /// Checks an answer of `route` (`GET /posts/{id}`) against the document:
    /// the status must be declared, and the body must match its schema (or
    /// be empty where none is declared).
    pub fn check(&self, route: &str, status: u16, body: &Value) -> Result<(), String> {
        let (method, path) = route.split_once(' ').expect("METHOD /path");
        let operation = &self.doc["paths"][path][method.to_lowercase()];
        if operation.is_null() {
            return Err(format!("{route} is not in openapi.yaml"));
        }
        let mut response = &operation["responses"][status.to_string()];
        let mut at = format!(
            "#/paths/{}/{}/responses/{status}",
            escape(path),
            method.to_lowercase()
        );
        if response.is_null() {
            return Err(format!(
                "{route} answered {status}, which openapi.yaml does not declare"
            ));
        }
        if let Some(r) = response["$ref"].as_str() {
            at = r.to_owned();
            let name = r.rsplit('/').next().unwrap();
            response = &self.doc["components"]["responses"][name];
        }
        let schema = &response["content"]["application/json"]["schema"];
        if schema.is_null() {
            return if body.is_null() {
                Ok(())
            } else {
                Err(format!("{route} {status} declares no body, got {body}"))
            };
        }
        let validator = {
            let mut cache = self.validators.lock().unwrap();
            cache
                .entry((route.to_owned(), status))
                .or_insert_with(|| {
                    // The whole document is the root, so its `$ref`s resolve;
                    // the root's own `$ref` points at this response's schema.
                    let mut root = self.doc.clone();
                    root["$ref"] = json!(format!("{at}/content/application~1json/schema"));
                    std::sync::Arc::new(
                        jsonschema::options()
                            .should_validate_formats(true)
                            .build(&root)
                            .unwrap_or_else(|e| panic!("schema of {route} {status}: {e}")),
                    )
                })
                .clone()
        };
        let errors: Vec<String> = validator
            .iter_errors(body)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "{route} {status} breaks openapi.yaml: {}; body {body}",
                errors.join("; ")
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_renamed_or_mistyped_field_breaks_the_schema() {
        let post = json!({ "id": "0194f7a0c1d27b3e8a5b6c7d8e9f0a1b", "author": "a", "caption": "",
            "status": "published", "image_url": "https://x/y.jpg", "created_at": "2026-11-26T10:00:00.000Z",
            "comment_count": 0, "last_comments": [], "thumbhash": "0noDBwCHh4eHeIh4iGd3Z3dwCImHkHgI" });
        spec().check("GET /posts/{id}", 200, &post).unwrap();
        let mut renamed = post.clone();
        renamed["comments_count"] = renamed["comment_count"].take();
        renamed.as_object_mut().unwrap().remove("comment_count");
        assert!(spec().check("GET /posts/{id}", 200, &renamed).is_err());
        let mut mistyped = post.clone();
        mistyped["comment_count"] = json!("0");
        assert!(spec().check("GET /posts/{id}", 200, &mistyped).is_err());
        let mut null_image = post.clone();
        null_image["image_url"] = Value::Null;
        spec().check("GET /posts/{id}", 200, &null_image).unwrap();
        assert!(spec().check("GET /posts/{id}", 418, &post).is_err());
        let error = json!({ "error": { "code": "not_found", "message": "no such post" } });
        spec().check("GET /posts/{id}", 404, &error).unwrap();
        assert!(
            spec()
                .check("GET /posts/{id}", 404, &json!({ "message": "Not Found" }))
                .is_err()
        );
        spec()
            .check("DELETE /posts/{id}/upload", 204, &Value::Null)
            .unwrap();
    }
}
