//! Creates the local AWS resources through the SDK, idempotently.

use aws_sdk_s3::types::{CorsConfiguration, CorsRule};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The bucket and its CORS rules, as `template.yaml` gives them to
/// `ImagesBucket` (browsers PUT parts and read `ETag`).
pub async fn bucket(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    template: &crate::template::Template,
) -> Result<(), BoxError> {
    if s3.head_bucket().bucket(bucket).send().await.is_err() {
        s3.create_bucket().bucket(bucket).send().await?;
    }
    s3.put_bucket_cors()
        .bucket(bucket)
        .cors_configuration(cors_rules(template)?)
        .send()
        .await?;
    Ok(())
}

/// `ImagesBucket`'s `CorsConfiguration`, resolved, as the SDK's type.
pub fn cors_rules(template: &crate::template::Template) -> Result<CorsConfiguration, BoxError> {
    let cors = template
        .resolve(&template.properties("ImagesBucket")?["CorsConfiguration"]["CorsRules"])?;
    let crate::template::Resolved::List(rules) = cors else {
        return Err("ImagesBucket has no CorsConfiguration.CorsRules list".into());
    };
    let mut config = CorsConfiguration::builder();
    for rule in rules {
        let list = |k: &str| -> Result<Vec<String>, BoxError> {
            rule.get(k).map(|v| v.strings()).unwrap_or(Ok(Vec::new()))
        };
        let mut r = CorsRule::builder()
            .set_allowed_methods(Some(list("AllowedMethods")?))
            .set_allowed_origins(Some(list("AllowedOrigins")?))
            .set_allowed_headers(Some(list("AllowedHeaders")?))
            .set_expose_headers(Some(list("ExposedHeaders")?));
        if let Some(age) = rule.get("MaxAge").and_then(|v| v.as_str()) {
            r = r.max_age_seconds(age.parse()?);
        }
        config = config.cors_rules(r.build()?);
    }
    Ok(config.build()?)
}

/// A Secrets Manager secret named `name` holding `value` (replaced, unless
/// `keep` and it exists: the cursor key survives restarts, so cursors handed
/// out stay valid). Returns its ARN.
pub async fn secret(
    sm: &aws_sdk_secretsmanager::Client,
    name: &str,
    value: &str,
    keep: bool,
) -> Result<String, BoxError> {
    match sm.describe_secret().secret_id(name).send().await {
        Ok(found) => {
            let arn = found.arn().ok_or("secret without ARN")?.to_owned();
            if !keep {
                sm.put_secret_value()
                    .secret_id(&arn)
                    .secret_string(value)
                    .send()
                    .await?;
            }
            Ok(arn)
        }
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_resource_not_found_exception()) =>
        {
            let created = sm
                .create_secret()
                .name(name)
                .secret_string(value)
                .send()
                .await?;
            Ok(created
                .arn()
                .ok_or("CreateSecret returned no ARN")?
                .to_owned())
        }
        Err(e) => Err(e.into()),
    }
}

/// The pipeline's queues, as `template.yaml` declares them.
#[derive(Clone, Debug)]
pub struct Queues {
    pub conversion: crate::poller::QueueRef,
    pub conversion_dlq: crate::poller::QueueRef,
    pub results: crate::poller::QueueRef,
    pub results_dlq: crate::poller::QueueRef,
}

impl Queues {
    /// The queue `template.yaml` calls `id`.
    pub fn by_logical_id(&self, id: &str) -> Option<&crate::poller::QueueRef> {
        Some(match id {
            "ConversionQueue" => &self.conversion,
            "ConversionDeadLetterQueue" => &self.conversion_dlq,
            "ResultsQueue" => &self.results,
            "ResultsDeadLetterQueue" => &self.results_dlq,
            _ => return None,
        })
    }
}

/// Receives before a message moves to its dead-letter queue.
pub const MAX_RECEIVE_COUNT: u32 = 5;

/// Creates the queues named `<prefix>-conversion` and so on, each redriving
/// to its dead-letter queue after MAX_RECEIVE_COUNT receives.
pub async fn queues(
    sqs: &aws_sdk_sqs::Client,
    prefix: &str,
    visibility_secs: u32,
) -> Result<Queues, BoxError> {
    let conversion_dlq = queue(
        sqs,
        &format!("{prefix}-conversion-dlq"),
        visibility_secs,
        None,
    )
    .await?;
    let conversion = queue(
        sqs,
        &format!("{prefix}-conversion"),
        visibility_secs,
        Some(&conversion_dlq.arn),
    )
    .await?;
    let results_dlq = queue(sqs, &format!("{prefix}-results-dlq"), visibility_secs, None).await?;
    let results = queue(
        sqs,
        &format!("{prefix}-results"),
        visibility_secs,
        Some(&results_dlq.arn),
    )
    .await?;
    Ok(Queues {
        conversion,
        conversion_dlq,
        results,
        results_dlq,
    })
}

async fn queue(
    sqs: &aws_sdk_sqs::Client,
    name: &str,
    visibility_secs: u32,
    dead_letters: Option<&str>,
) -> Result<crate::poller::QueueRef, BoxError> {
    use aws_sdk_sqs::types::QueueAttributeName as A;
    let mut create = sqs
        .create_queue()
        .queue_name(name)
        .attributes(A::VisibilityTimeout, visibility_secs.to_string())
        .attributes(A::MessageRetentionPeriod, "1209600");
    if let Some(arn) = dead_letters {
        let policy = serde_json::json!({ "deadLetterTargetArn": arn, "maxReceiveCount": MAX_RECEIVE_COUNT.to_string() });
        create = create.attributes(A::RedrivePolicy, policy.to_string());
    }
    let url = create
        .send()
        .await?
        .queue_url
        .ok_or("CreateQueue returned no URL")?;
    let attrs = sqs
        .get_queue_attributes()
        .queue_url(&url)
        .attribute_names(A::QueueArn)
        .send()
        .await?;
    let arn = attrs
        .attributes()
        .and_then(|a| a.get(&A::QueueArn))
        .cloned()
        .ok_or("queue has no ARN")?;
    Ok(crate::poller::QueueRef { url, arn })
}

/// ObjectCreated under `originals/` -> the conversion queue. Converted
/// images live under another prefix and never trigger a conversion.
pub async fn notifications(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    queue_arn: &str,
) -> Result<(), BoxError> {
    use aws_sdk_s3::types::{
        Event, FilterRule, FilterRuleName, NotificationConfiguration,
        NotificationConfigurationFilter, QueueConfiguration, S3KeyFilter,
    };
    let filter = NotificationConfigurationFilter::builder()
        .key(
            S3KeyFilter::builder()
                .filter_rules(
                    FilterRule::builder()
                        .name(FilterRuleName::Prefix)
                        .value(imagegram::domain::ORIGINALS_PREFIX)
                        .build(),
                )
                .build(),
        )
        .build();
    let config = NotificationConfiguration::builder()
        .queue_configurations(
            QueueConfiguration::builder()
                .id("originals-to-conversion")
                .queue_arn(queue_arn)
                .events(Event::from("s3:ObjectCreated:*"))
                .filter(filter)
                .build()?,
        )
        .build();
    s3.put_bucket_notification_configuration()
        .bucket(bucket)
        .notification_configuration(config)
        .send()
        .await?;
    Ok(())
}
