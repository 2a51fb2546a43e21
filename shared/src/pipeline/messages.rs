//! Message bodies the pipeline reads and writes.

use serde::{Deserialize, Serialize};

use crate::domain::Outcome;
use crate::domain::PostId;

/// What the converter tells the finalizer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConversionResult {
    pub post_id: PostId,
    #[serde(flatten)]
    pub outcome: Outcome,
    /// When the original was uploaded (its S3 event's time, RFC 3339): the
    /// finalizer measures the pipeline's latency from it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uploaded_at: Option<String>,
}

/// An S3 notification, read leniently: moto omits fields AWS sends
/// (`userIdentity`, `sequencer`, ...) that `aws_lambda_events`' strict type
/// requires, and we need only these.
#[derive(Debug, Deserialize)]
pub struct S3Notification {
    /// Set on the `s3:TestEvent` S3 sends when notifications are configured.
    #[serde(rename = "Event")]
    pub event: Option<String>,
    #[serde(rename = "Records", default)]
    pub records: Vec<S3Record>,
}

#[derive(Debug, Deserialize)]
pub struct S3Record {
    #[serde(rename = "eventName", default)]
    pub event_name: String,
    #[serde(rename = "eventTime", default)]
    pub event_time: Option<String>,
    pub s3: S3Entity,
}

#[derive(Debug, Deserialize)]
pub struct S3Entity {
    pub bucket: S3Bucket,
    pub object: S3Object,
}

#[derive(Debug, Deserialize)]
pub struct S3Bucket {
    pub name: String,
}

#[derive(Debug, Deserialize)]
pub struct S3Object {
    pub key: String,
}

impl S3Record {
    /// The object key, decoded: S3 sends keys form-urlencoded (`+` is a
    /// space); moto encodes `/` too, AWS does not. Decoding as a form value
    /// handles both.
    pub fn key(&self) -> String {
        let spaced = self.s3.object.key.replace('+', " ");
        percent_encoding::percent_decode_str(&spaced)
            .decode_utf8_lossy()
            .into_owned()
    }

    pub fn is_object_created(&self) -> bool {
        self.event_name.starts_with("ObjectCreated:")
    }
}

/// What one SQS body turned out to be.
#[derive(Debug)]
pub enum Body {
    Result(ConversionResult),
    S3(S3Notification),
    TestEvent,
    Malformed(String),
}

pub fn parse(body: &str) -> Body {
    if let Ok(r) = serde_json::from_str::<ConversionResult>(body) {
        return Body::Result(r);
    }
    match serde_json::from_str::<S3Notification>(body) {
        Ok(n) if n.event.as_deref() == Some("s3:TestEvent") => Body::TestEvent,
        Ok(n) if !n.records.is_empty() => Body::S3(n),
        Ok(_) => Body::Malformed("neither an S3 notification nor a conversion result".into()),
        Err(e) => Body::Malformed(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_decode_as_form_values() {
        let body = r#"{"Records":[{"eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"b"},
            "object":{"key":"uploads%2Fa+b%2Bc.png"}}}]}"#;
        let Body::S3(n) = parse(body) else { panic!() };
        assert_eq!(n.records[0].key(), "uploads/a b+c.png");
        assert!(n.records[0].is_object_created());
    }

    #[test]
    fn test_events_and_junk_are_recognised() {
        assert!(matches!(
            parse(r#"{"Service":"Amazon S3","Event":"s3:TestEvent","Bucket":"b"}"#),
            Body::TestEvent
        ));
        for junk in [
            "",
            "null",
            "[]",
            "{}",
            "not json",
            r#"{"Records":[{"nope":1}]}"#,
        ] {
            assert!(matches!(parse(junk), Body::Malformed(_)), "{junk}");
        }
    }

    #[test]
    fn results_round_trip() {
        let r = ConversionResult {
            post_id: PostId::generate(),
            outcome: Outcome::Failed {
                reason: "not an image".into(),
            },
            uploaded_at: Some("2026-11-26T10:00:00.000Z".into()),
        };
        let Body::Result(back) = parse(&serde_json::to_string(&r).unwrap()) else {
            panic!()
        };
        assert_eq!(back, r);
    }
}
