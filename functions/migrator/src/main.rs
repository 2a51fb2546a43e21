//! The schema Lambda: CloudFormation's custom resource `DatabaseSchema`
//! (template.yaml) invokes it on each deploy that changes it; it applies the
//! migrations and the application user, then PUTs the answer to the
//! request's presigned ResponseURL. Wiring only; the logic is
//! `imagegram::schema`.

use imagegram::config::Env;
use imagegram::schema::{self, Request, SchemaConfig};
use lambda_runtime::{Error, LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    // reqwest over rustls with the provider the SDK already builds.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let env = Env::from_process();
    let sdk = imagegram::config::aws_sdk().await;
    let secrets = aws_sdk_secretsmanager::Client::new(&sdk);
    let http = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(30))
        .build()?;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Request>| {
        let (env, secrets, http) = (env.clone(), secrets.clone(), http.clone());
        async move {
            let request = event.payload;
            let answer =
                schema::handle(&request, async || SchemaConfig::load(&env, &secrets).await).await;
            schema::deliver(&http, &request, &answer).await?;
            // Also the invocation's result: what `sam local invoke` prints.
            Ok::<_, Error>(answer)
        }
    }))
    .await
}
