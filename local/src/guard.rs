//! The local stand-in for IAM: every AWS SDK call a function makes locally
//! is checked against that function's policy in `template.yaml` before it
//! reaches moto, which checks nothing.
//!
//! Two parts, because the SDK splits what they need:
//!
//! - [`Guard`], an SDK interceptor, sees each call just before it is sent:
//!   the operation's name and the signed request. It works out the IAM
//!   action and resource (`s3:GetObject` on `arn:aws:s3:::bucket/key`,
//!   `sqs:SendMessage` on the queue's ARN, ...), asks the policy, records the
//!   decision, and marks the request. A presigned request is refused then
//!   and there (nothing is sent; the URL would be refused when used).
//! - [`guarded_http_client`] wraps the real HTTP client. A request marked
//!   denied never leaves: it gets the error AWS would answer (403
//!   `AccessDenied`). And S3's rule that a GET or HEAD of a missing key
//!   answers 403, not 404, when the caller may not `s3:ListBucket` the
//!   bucket is applied to moto's 404s, which moto does not do itself.
//!
//! An operation with no entry in [`iam_action`] is denied with a message
//! saying so: a new SDK call must be mapped here before it can pass.

use std::fmt;
use std::sync::{Arc, Mutex};

use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::http::{
    HttpConnector, HttpConnectorFuture, SharedHttpClient, SharedHttpConnector, http_client_fn,
};
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::BeforeTransmitInterceptorContextMut;
use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, HttpResponse, Metadata};
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::body::SdkBody;
use aws_smithy_types::config_bag::ConfigBag;

use crate::iam::{Decision, Policy};

const DENIED: &str = "x-imagegram-local-iam-denied";
const HIDE_MISSING: &str = "x-imagegram-local-iam-hide-missing";

/// One call a function made, and what its policy said.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Call {
    pub function: String,
    pub operation: String,
    pub action: String,
    pub resource: String,
    /// Indexes of the statements that allowed it; empty when refused.
    pub allowed_by: Vec<usize>,
    /// Who ran the stack (a test's name): scripts/check-grants reruns only
    /// the tests whose calls a grant allowed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
}

/// Every call checked so far, shared by the guards of one stack; with a log
/// file, each call is appended to it as a JSON line too, so a run's calls can
/// be compared with the policies afterwards (`imagegram-local iam-report`).
#[derive(Clone, Default)]
pub struct Recorder {
    calls: Arc<Mutex<Vec<Call>>>,
    log: Option<Arc<std::path::PathBuf>>,
    by: Option<Arc<str>>,
}

impl Recorder {
    pub fn new(log: Option<std::path::PathBuf>) -> Self {
        Recorder {
            calls: Arc::default(),
            log: log.map(Arc::new),
            by: None,
        }
    }

    /// Each call logged as made by `by` (a test's name).
    pub fn by(mut self, by: Option<String>) -> Self {
        self.by = by.map(Into::into);
        self
    }

    pub fn calls(&self) -> Vec<Call> {
        self.calls.lock().expect("recorder lock").clone()
    }

    fn record(&self, mut call: Call) {
        call.by = self.by.as_deref().map(str::to_owned);
        if let Some(path) = self.log.as_deref() {
            use std::io::Write;
            if let Ok(mut f) = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
            {
                let mut line = serde_json::to_vec(&call).unwrap_or_default();
                line.push(b'\n');
                let _ = f.write_all(&line);
            }
        }
        self.calls.lock().expect("recorder lock").push(call);
    }
}

/// The interceptor: one per function, holding that function's policy.
#[derive(Clone)]
pub struct Guard {
    function: String,
    policy: Arc<Policy>,
    region: String,
    recorder: Recorder,
}

impl fmt::Debug for Guard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Guard({})", self.function)
    }
}

impl Guard {
    pub fn new(function: &str, policy: Policy, region: &str, recorder: Recorder) -> Self {
        Guard {
            function: function.to_owned(),
            policy: Arc::new(policy),
            region: region.to_owned(),
            recorder,
        }
    }

    pub fn function(&self) -> &str {
        &self.function
    }
}

/// What IAM is asked for one request.
#[derive(Debug, PartialEq, Eq)]
pub struct Target {
    pub action: &'static str,
    pub resource: String,
    /// Condition keys of the request (`s3:prefix` of a listing).
    pub context: Vec<(&'static str, String)>,
    /// For S3 reads of a key: the bucket's ARN, whose `s3:ListBucket`
    /// decides whether a missing key is a 404 or a 403.
    pub bucket_arn: Option<String>,
}

/// The IAM action and resource of an SDK operation, from the request as it
/// is about to be sent. S3 requests are path-style locally (the guarded
/// clients force it), so the path is `/bucket/key`.
pub fn iam_action(
    service: &str,
    operation: &str,
    request: &HttpRequest,
    region: &str,
) -> Result<Target, String> {
    match service.to_ascii_lowercase().as_str() {
        "s3" => {
            let uri: http::Uri = request
                .uri()
                .parse()
                .map_err(|e| format!("unreadable URI: {e}"))?;
            let path = uri.path().trim_start_matches('/');
            let (bucket, key) = path.split_once('/').unwrap_or((path, ""));
            let key = percent_encoding::percent_decode_str(key)
                .decode_utf8_lossy()
                .into_owned();
            let bucket_arn = format!("arn:aws:s3:::{bucket}");
            let object = |action: &'static str| Target {
                action,
                resource: format!("{bucket_arn}/{key}"),
                context: Vec::new(),
                bucket_arn: None,
            };
            // S3 tells its operations apart by method and query, and so
            // does IAM: a URL presigned as one operation and turned into
            // another (objects.rs signs multipart requests that way) is
            // checked as what it will do.
            let query: Vec<(String, String)> = uri
                .query()
                .into_iter()
                .flat_map(|q| form_urlencoded::parse(q.as_bytes()))
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect();
            let has = |name: &str| query.iter().any(|(k, _)| k == name);
            let operation = match (request.method(), has("uploadId"), has("uploads")) {
                ("PUT", true, _) => "UploadPart",
                ("GET", true, _) => "ListParts",
                ("POST", true, _) => "CompleteMultipartUpload",
                ("DELETE", true, _) => "AbortMultipartUpload",
                ("POST", false, true) => "CreateMultipartUpload",
                _ => operation,
            };
            Ok(match operation {
                "HeadObject" | "GetObject" => Target {
                    bucket_arn: Some(bucket_arn.clone()),
                    ..object("s3:GetObject")
                },
                "PutObject"
                | "CreateMultipartUpload"
                | "UploadPart"
                | "CompleteMultipartUpload" => object("s3:PutObject"),
                "AbortMultipartUpload" => object("s3:AbortMultipartUpload"),
                "ListParts" => object("s3:ListMultipartUploadParts"),
                "DeleteObject" => object("s3:DeleteObject"),
                "HeadBucket" | "ListObjects" | "ListObjectsV2" => {
                    let prefix = query
                        .iter()
                        .find(|(k, _)| k == "prefix")
                        .map(|(_, v)| v.clone());
                    Target {
                        action: "s3:ListBucket",
                        resource: bucket_arn,
                        context: prefix.map(|p| ("s3:prefix", p)).into_iter().collect(),
                        bucket_arn: None,
                    }
                }
                "ListMultipartUploads" => Target {
                    action: "s3:ListBucketMultipartUploads",
                    resource: bucket_arn,
                    context: Vec::new(),
                    bucket_arn: None,
                },
                other => return Err(format!("S3 {other}")),
            })
        }
        "sqs" => {
            let body: serde_json::Value = request
                .body()
                .bytes()
                .and_then(|b| serde_json::from_slice(b).ok())
                .ok_or("an SQS request without a JSON body")?;
            let url = body["QueueUrl"]
                .as_str()
                .ok_or("an SQS request without QueueUrl")?;
            // http://host/ACCOUNT/NAME
            let mut segments = url.rsplit('/');
            let name = segments.next().unwrap_or_default();
            let account = segments.next().unwrap_or_default();
            let resource = format!("arn:aws:sqs:{region}:{account}:{name}");
            let action = match operation {
                "SendMessage" | "SendMessageBatch" => "sqs:SendMessage",
                "ReceiveMessage" => "sqs:ReceiveMessage",
                "DeleteMessage" | "DeleteMessageBatch" => "sqs:DeleteMessage",
                "ChangeMessageVisibility" | "ChangeMessageVisibilityBatch" => {
                    "sqs:ChangeMessageVisibility"
                }
                "GetQueueAttributes" => "sqs:GetQueueAttributes",
                other => return Err(format!("SQS {other}")),
            };
            Ok(Target {
                action,
                resource,
                context: Vec::new(),
                bucket_arn: None,
            })
        }
        "secrets manager" | "secretsmanager" => {
            let body: serde_json::Value = request
                .body()
                .bytes()
                .and_then(|b| serde_json::from_slice(b).ok())
                .ok_or("a Secrets Manager request without a JSON body")?;
            let id = body["SecretId"].as_str().ok_or("no SecretId")?;
            if !id.starts_with("arn:") {
                // IAM matches secrets by ARN; the functions are given ARNs.
                return Err(format!(
                    "Secrets Manager by name ({id}): functions must use the secret's ARN"
                ));
            }
            let action = match operation {
                "GetSecretValue" => "secretsmanager:GetSecretValue",
                "DescribeSecret" => "secretsmanager:DescribeSecret",
                other => return Err(format!("Secrets Manager {other}")),
            };
            Ok(Target {
                action,
                resource: id.to_owned(),
                context: Vec::new(),
                bucket_arn: None,
            })
        }
        "apigatewaymanagementapi" => {
            // http://gateway/{stage}/@connections/{id}: IAM names the API,
            // the stage, the method and the path.
            let uri: http::Uri = request
                .uri()
                .parse()
                .map_err(|e| format!("unreadable URI: {e}"))?;
            let path = uri.path().trim_start_matches('/');
            let (stage, rest) = path
                .split_once("/@connections/")
                .ok_or_else(|| format!("not an @connections path: /{path}"))?;
            match operation {
                "PostToConnection" | "GetConnection" | "DeleteConnection" => {}
                other => return Err(format!("ApiGatewayManagementApi {other}")),
            }
            let id = percent_encoding::percent_decode_str(rest).decode_utf8_lossy();
            Ok(Target {
                action: "execute-api:ManageConnections",
                resource: format!(
                    "arn:aws:execute-api:{region}:{}:{}/{stage}/{}/@connections/{id}",
                    crate::stack::ACCOUNT,
                    crate::stack::EVENTS_API_ID,
                    request.method(),
                ),
                context: Vec::new(),
                bucket_arn: None,
            })
        }
        other => Err(format!("{other} {operation}")),
    }
}

impl Intercept for Guard {
    fn name(&self) -> &'static str {
        "ImagegramLocalIamGuard"
    }

    fn modify_before_transmit(
        &self,
        context: &mut BeforeTransmitInterceptorContextMut<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let (service, operation) = cfg
            .load::<Metadata>()
            .map(|m| (m.service().to_owned(), m.name().to_owned()))
            .unwrap_or_default();
        let request = context.request_mut();
        let presigned = request.uri().contains("X-Amz-Signature=");
        let target = iam_action(&service, &operation, request, &self.region);
        let (target, decision) = match target {
            Ok(t) => {
                let context: Vec<(&str, &str)> =
                    t.context.iter().map(|(k, v)| (*k, v.as_str())).collect();
                let d = self.policy.decide(t.action, &t.resource, &context);
                (Some(t), d)
            }
            Err(_) => (None, Decision::NotAllowed),
        };
        let (action, resource) = match &target {
            Some(t) => (t.action.to_owned(), t.resource.clone()),
            None => (format!("{service}:{operation}"), "?".to_owned()),
        };
        let allowed_by = match &decision {
            Decision::Allowed(by) => by.clone(),
            _ => Vec::new(),
        };
        self.recorder.record(Call {
            function: self.function.clone(),
            operation: operation.clone(),
            action: action.clone(),
            resource: resource.clone(),
            allowed_by,
            by: None,
        });
        // A read of a key also asks whether the caller may list the bucket:
        // S3 answers a missing key 404 with that permission and 403 without
        // it. Recorded as a call of its own, so a role without the grant
        // shows as a refusal (and the grant's use as a use). Not for a
        // presigned read: the function sends nothing, and whoever uses the
        // URL sees the key (the published image it names exists).
        let listing = target
            .as_ref()
            .filter(|_| !presigned)
            .and_then(|t| t.bucket_arn.as_deref())
            .map(|b| (b, self.policy.decide("s3:ListBucket", b, &[])));
        if let (Decision::Allowed(_), Some((bucket, listed))) = (&decision, &listing) {
            let allowed_by = match listed {
                Decision::Allowed(by) => by.clone(),
                _ => Vec::new(),
            };
            self.recorder.record(Call {
                function: self.function.clone(),
                operation: format!("{operation} (404 or 403 for a missing key)"),
                action: "s3:ListBucket".to_owned(),
                resource: (*bucket).to_owned(),
                allowed_by,
                by: None,
            });
        }
        let message = match (&target, &decision) {
            (_, Decision::Allowed(_)) => None,
            (None, _) => Some(format!(
                "the local IAM guard has no mapping for {service} {operation}; add it to \
                 local/src/guard.rs before {} may call it",
                self.function
            )),
            (Some(_), Decision::Denied(i)) => Some(format!(
                "{} is not authorized to perform: {action} on resource: {resource} with an \
                 explicit deny (statement {i} of its policy in template.yaml)",
                self.function
            )),
            (Some(_), Decision::NotAllowed) => Some(format!(
                "{} is not authorized to perform: {action} on resource: {resource} because no \
                 identity-based policy allows the {action} action (template.yaml)",
                self.function
            )),
        };
        if let Some(message) = message {
            tracing::warn!(function = self.function, %message, "AWS call refused");
            if presigned {
                return Err(message.into());
            }
            request.headers_mut().insert(DENIED, ascii(&message));
            return Ok(());
        }
        if listing.is_some_and(|(_, d)| !matches!(d, Decision::Allowed(_))) {
            request.headers_mut().insert(HIDE_MISSING, "1");
        }
        Ok(())
    }
}

fn ascii(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .collect()
}

/// The real HTTP client, behind the guard's verdicts.
pub fn guarded_http_client() -> SharedHttpClient {
    use aws_smithy_http_client::tls;
    let inner = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(
            tls::rustls_provider::CryptoMode::AwsLc,
        ))
        .build_https();
    http_client_fn(move |settings, components| {
        SharedHttpConnector::new(GuardedConnector {
            inner: aws_smithy_runtime_api::client::http::HttpClient::http_connector(
                &inner, settings, components,
            ),
        })
    })
}

#[derive(Debug)]
struct GuardedConnector {
    inner: SharedHttpConnector,
}

impl HttpConnector for GuardedConnector {
    fn call(&self, mut request: HttpRequest) -> HttpConnectorFuture {
        if let Some(message) = request.headers_mut().remove(DENIED) {
            return HttpConnectorFuture::ready(Ok(access_denied(&request, &message)));
        }
        let hide_missing = request.headers_mut().remove(HIDE_MISSING).is_some();
        let is_head = request.method() == "HEAD";
        let fut = self.inner.call(request);
        HttpConnectorFuture::new(async move {
            let resp = fut.await?;
            if hide_missing && resp.status().as_u16() == 404 {
                // What S3 answers a caller that may not list the bucket.
                return Ok(s3_denied(
                    is_head,
                    "Access Denied (the key does not exist, and without s3:ListBucket S3 \
                     answers 403 rather than say so)",
                ));
            }
            Ok(resp)
        })
    }
}

/// The error each service answers a request its caller may not make.
fn access_denied(request: &HttpRequest, message: &str) -> HttpResponse {
    let target = request.headers().get("x-amz-target").unwrap_or_default();
    if target.starts_with("AmazonSQS.") {
        let body = serde_json::json!({
            "__type": "com.amazon.coral.service#AccessDeniedException",
            "message": message,
        });
        let mut resp = HttpResponse::new(
            403.try_into().expect("status"),
            SdkBody::from(body.to_string()),
        );
        resp.headers_mut()
            .insert("x-amzn-query-error", "AccessDenied;Sender");
        resp.headers_mut()
            .insert("content-type", "application/x-amz-json-1.0");
        return resp;
    }
    if request.uri().contains("/@connections/") {
        // API Gateway's management API: 403 ForbiddenException, JSON.
        let body = serde_json::json!({ "message": message });
        let mut resp = HttpResponse::new(
            403.try_into().expect("status"),
            SdkBody::from(body.to_string()),
        );
        resp.headers_mut()
            .insert("x-amzn-errortype", "ForbiddenException");
        resp.headers_mut()
            .insert("content-type", "application/json");
        return resp;
    }
    if target.starts_with("secretsmanager.") {
        let body = serde_json::json!({ "__type": "AccessDeniedException", "Message": message });
        let mut resp = HttpResponse::new(
            400.try_into().expect("status"),
            SdkBody::from(body.to_string()),
        );
        resp.headers_mut()
            .insert("content-type", "application/x-amz-json-1.1");
        return resp;
    }
    s3_denied(request.method() == "HEAD", message)
}

fn s3_denied(is_head: bool, message: &str) -> HttpResponse {
    let body = if is_head {
        SdkBody::empty()
    } else {
        SdkBody::from(format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>AccessDenied</Code>\
             <Message>{}</Message><RequestId>local</RequestId></Error>",
            message.replace('&', "&amp;").replace('<', "&lt;")
        ))
    };
    let mut resp = HttpResponse::new(403.try_into().expect("status"), body);
    resp.headers_mut().insert("content-type", "application/xml");
    resp
}
