//! Creates the local AWS resources through the SDK, idempotently.

use aws_sdk_s3::types::{CorsConfiguration, CorsRule};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The bucket and its CORS rule: browsers PUT parts and read `ETag`.
pub async fn bucket(s3: &aws_sdk_s3::Client, bucket: &str) -> Result<(), BoxError> {
    if s3.head_bucket().bucket(bucket).send().await.is_err() {
        s3.create_bucket().bucket(bucket).send().await?;
    }
    let cors = CorsConfiguration::builder()
        .cors_rules(
            CorsRule::builder()
                .allowed_methods("PUT")
                .allowed_methods("GET")
                .allowed_origins("*")
                .allowed_headers("*")
                .expose_headers("ETag")
                .max_age_seconds(3600)
                .build()?,
        )
        .build()?;
    s3.put_bucket_cors()
        .bucket(bucket)
        .cors_configuration(cors)
        .send()
        .await?;
    Ok(())
}
