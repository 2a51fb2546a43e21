//! Notifications (contract section 7): when a post turns `published` or
//! `failed`, or the sweeper removes it, its author's open WebSocket
//! connections are told, through API Gateway's `@connections` management
//! API.
//!
//! A notification is best effort on top of a committed change: it runs
//! after the post's row is written, within a short budget, and whatever
//! happens to it (the endpoint down or hung, a connection gone) the
//! publication stands; the client that missed it reads the post once when
//! it connects again (the read-after-connect rule). A connection the
//! management API answers 410 Gone for is closed in the database.

use std::future::Future;
use std::time::Duration;

use serde::Serialize;

use crate::Error;
use crate::domain::{Post, PostId};
use crate::store::{Listeners, PostRecord};

/// What a connection receives.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Notice {
    /// The post turned `published` or `failed`, as `GET /posts/{id}` shows
    /// it to its author.
    Post { post: Post },
    /// The sweeper removed the post: its upload expired.
    PostRemoved { id: PostId },
}

/// What a push did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pushed {
    Delivered,
    /// The connection is closed (410 Gone).
    Gone,
}

/// Where notices are sent: API Gateway's `@connections` API.
pub trait Push: Send + Sync + 'static {
    fn push(
        &self,
        connection_id: &str,
        data: &[u8],
    ) -> impl Future<Output = Result<Pushed, Error>> + Send;
}

/// What the finalizer and the sweeper tell; never fails (a failure is
/// logged and counted).
pub trait Notify: Send + Sync + 'static {
    /// `post` turned `published` or `failed`.
    fn settled(&self, post: &PostRecord) -> impl Future<Output = ()> + Send;
    /// `post`, of `author`, was removed.
    fn removed(&self, author: &str, post: PostId) -> impl Future<Output = ()> + Send;
}

/// Tells nobody (unit tests of the pipeline, tools).
pub struct Silent;

impl Notify for Silent {
    async fn settled(&self, _: &PostRecord) {}
    async fn removed(&self, _: &str, _: PostId) {}
}

/// Turns a stored post into what its author sees (`image_url` signed as
/// the API signs it).
pub trait PostViews: Send + Sync + 'static {
    fn view(&self, post: &PostRecord) -> impl Future<Output = Result<Post, Error>> + Send;
}

impl PostViews for crate::objects::S3Objects {
    async fn view(&self, post: &PostRecord) -> Result<Post, Error> {
        use crate::objects::ObjectStore;
        let image_url = match (&post.image_key, post.status) {
            (Some(key), crate::domain::PostStatus::Published) => Some(self.image_url(key).await?),
            _ => None,
        };
        Ok(post.clone().view(image_url))
    }
}

impl Notifier<crate::store::MySqlStore, Connections, crate::objects::S3Objects> {
    /// The deployed wiring: the function's own pool, its S3 client (image
    /// URLs are signed with its credentials) and its management client.
    pub fn from_config(
        cfg: &crate::config::NotifyConfig,
        store: crate::store::MySqlStore,
        s3: aws_sdk_s3::Client,
        credentials: Option<aws_sdk_s3::config::SharedCredentialsProvider>,
        connections: Connections,
    ) -> Self {
        Notifier {
            listeners: store,
            push: connections,
            views: crate::objects::S3Objects::new(
                s3,
                cfg.bucket.clone(),
                cfg.image_base_url.clone(),
                Duration::from_secs(cfg.presign_ttl_secs),
            )
            .signing_with(credentials),
            budget: BUDGET,
        }
    }
}

/// Most time one notification may take, all its pushes together: the
/// batch the finalizer is working on waits for it.
pub const BUDGET: Duration = Duration::from_millis(1500);

/// The notifier: the author's open connections from the database, one push
/// each, in parallel.
pub struct Notifier<L, P, V> {
    pub listeners: L,
    pub push: P,
    pub views: V,
    pub budget: Duration,
}

impl<L: Listeners, P: Push, V: PostViews> Notifier<L, P, V> {
    async fn tell(&self, author: &str, notice: impl AsyncFnOnce() -> Result<Notice, Error>) {
        let work = async {
            let connections = self.listeners.listeners(author).await?;
            if connections.is_empty() {
                return Ok(0);
            }
            let data = serde_json::to_vec(&notice().await?).map_err(Error::internal)?;
            let data = &data;
            let pushes = connections
                .iter()
                .map(|c| async move { (c, self.push.push(c, data).await) });
            let mut delivered = 0;
            for (c, r) in futures::future::join_all(pushes).await {
                match r {
                    Ok(Pushed::Delivered) => delivered += 1,
                    Ok(Pushed::Gone) => {
                        tracing::info!(connection_id = %c, "connection gone; closed");
                        self.listeners.disconnect(c).await?;
                    }
                    Err(e) => {
                        tracing::warn!(connection_id = %c, error = %e, cause = ?std::error::Error::source(&e), "push failed")
                    }
                }
            }
            Ok::<_, Error>(delivered)
        };
        match tokio::time::timeout(self.budget, work).await {
            Ok(Ok(n)) => crate::metrics::notices(n),
            Ok(Err(e)) => {
                crate::metrics::notice_failed();
                tracing::warn!(error = %e, cause = ?std::error::Error::source(&e), "notification failed; the post stands");
            }
            Err(_) => {
                crate::metrics::notice_failed();
                tracing::warn!(
                    budget_ms = self.budget.as_millis() as u64,
                    "notification out of time; the post stands"
                );
            }
        }
    }
}

impl<L: Listeners, P: Push, V: PostViews> Notify for Notifier<L, P, V> {
    async fn settled(&self, post: &PostRecord) {
        self.tell(&post.author, async || {
            Ok(Notice::Post {
                post: self.views.view(post).await?,
            })
        })
        .await
    }

    async fn removed(&self, author: &str, post: PostId) {
        self.tell(author, async || Ok(Notice::PostRemoved { id: post }))
            .await
    }
}

/// The deployed notifier.
pub type Deployed = Notifier<crate::store::MySqlStore, Connections, crate::objects::S3Objects>;

/// API Gateway's management API for one WebSocket API stage.
#[derive(Clone)]
pub struct Connections {
    pub client: aws_sdk_apigatewaymanagement::Client,
}

impl Connections {
    /// A client of the stage at `endpoint` (`https://{api}.execute-api.
    /// {region}.amazonaws.com/{stage}`; locally the gateway's), built from
    /// `sdk` (credentials, region, HTTP client) with a short budget: a push
    /// that hangs must not hold the batch.
    pub fn new(sdk: &aws_config::SdkConfig, endpoint: &str) -> Self {
        Self::from_builder(
            aws_sdk_apigatewaymanagement::config::Builder::from(sdk),
            endpoint,
        )
    }

    /// The same from a builder a caller prepared (the local stack adds its
    /// IAM guard).
    pub fn from_builder(
        builder: aws_sdk_apigatewaymanagement::config::Builder,
        endpoint: &str,
    ) -> Self {
        use aws_sdk_apigatewaymanagement::config::timeout::TimeoutConfig;
        Connections {
            client: aws_sdk_apigatewaymanagement::Client::from_conf(
                builder
                    .endpoint_url(endpoint)
                    .timeout_config(
                        TimeoutConfig::builder()
                            .connect_timeout(Duration::from_millis(500))
                            .operation_attempt_timeout(Duration::from_millis(600))
                            .operation_timeout(Duration::from_millis(1300))
                            .build(),
                    )
                    .build(),
            ),
        }
    }
}

impl Push for Connections {
    async fn push(&self, connection_id: &str, data: &[u8]) -> Result<Pushed, Error> {
        use aws_sdk_apigatewaymanagement::operation::post_to_connection::PostToConnectionError;
        match self
            .client
            .post_to_connection()
            .connection_id(connection_id)
            .data(aws_sdk_apigatewaymanagement::primitives::Blob::new(data))
            .send()
            .await
        {
            Ok(_) => Ok(Pushed::Delivered),
            Err(e) => match e.as_service_error() {
                Some(PostToConnectionError::GoneException(_)) => Ok(Pushed::Gone),
                _ => Err(Error::unavailable("the events endpoint", e)),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notices_are_the_contracts_messages() {
        let id = PostId::generate();
        assert_eq!(
            serde_json::to_value(Notice::PostRemoved { id }).unwrap(),
            serde_json::json!({ "type": "post_removed", "id": id.to_string() })
        );
        let post = Post {
            id,
            author: "a".into(),
            caption: String::new(),
            status: crate::domain::PostStatus::Failed,
            image_url: None,
            created_at: "2026-12-07T00:00:00Z".into(),
            comment_count: 0,
            last_comments: vec![],
            failure_reason: Some("no".into()),
            thumbhash: None,
        };
        let v = serde_json::to_value(Notice::Post { post }).unwrap();
        assert_eq!(v["type"], "post");
        assert_eq!(v["post"]["status"], "failed");
        assert_eq!(v["post"]["failure_reason"], "no");
    }
}
