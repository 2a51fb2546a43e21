//! The secrets capability: read a secret's string by ARN, and its Secrets
//! Manager adapter. Read at cold start, so a rotated secret reaches every
//! new container without a redeploy, and nothing secret sits in the
//! function's environment (readable with `lambda:GetFunctionConfiguration`).

use std::future::Future;

use crate::Error;

pub trait SecretReader: Sync {
    /// The secret's current string value.
    fn read(&self, arn: &str) -> impl Future<Output = Result<String, Error>> + Send;
}

#[cfg(feature = "secrets")]
impl SecretReader for aws_sdk_secretsmanager::Client {
    async fn read(&self, arn: &str) -> Result<String, Error> {
        use aws_sdk_secretsmanager::error::SdkError;
        let out = self
            .get_secret_value()
            .secret_id(arn)
            .send()
            .await
            .map_err(|e| match e {
                SdkError::TimeoutError(_)
                | SdkError::DispatchFailure(_)
                | SdkError::ResponseError(_) => Error::unavailable("secrets", e),
                SdkError::ServiceError(ref s) if s.raw().status().is_server_error() => {
                    Error::unavailable("secrets", e)
                }
                // Not found, access denied: the deployment is wrong, and
                // retrying will not mend it.
                _ => Error::internal(format!("cannot read secret {arn}: {e:?}")),
            })?;
        out.secret_string()
            .map(str::to_owned)
            .ok_or_else(|| Error::internal(format!("secret {arn} holds no string")))
    }
}
