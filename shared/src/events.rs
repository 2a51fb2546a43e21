//! The WebSocket API's handlers (contract section 7): `$connect` checks the
//! ticket and records the connection, `$disconnect` closes it, `$default`
//! answers a ping. API Gateway (or the local gateway) sends each as an
//! `ApiGatewayWebsocketProxyRequest`; what a handler returns is, for
//! `$connect`, the handshake's answer (200 opens the connection, anything
//! else refuses it with that status), and for `$default`, the message sent
//! back (the route's response, `RouteResponseSelectionExpression`).

use aws_lambda_events::apigw::{ApiGatewayProxyResponse, ApiGatewayWebsocketProxyRequest};
use aws_lambda_events::encodings::Body;
use time::OffsetDateTime;

use crate::Error;
use crate::store::{Listeners, NewConnection};
use crate::ticket::{Refused, Tickets};

/// Largest client message read: a ping is a few bytes.
const MAX_MESSAGE: usize = 4096;

pub struct Events<L> {
    pub listeners: L,
    pub tickets: Tickets,
}

impl Events<crate::store::MySqlStore> {
    pub fn from_config(cfg: &crate::config::EventsConfig) -> Self {
        Events {
            listeners: crate::store::MySqlStore::connect(&cfg.db, cfg.db_pool_max),
            tickets: Tickets::from_cursor_secret(cfg.cursor_secret.expose().as_bytes()),
        }
    }
}

impl<L: Listeners> Events<L> {
    /// Serves one event. Never fails: every error is a response.
    pub async fn handle(&self, event: ApiGatewayWebsocketProxyRequest) -> ApiGatewayProxyResponse {
        let ctx = &event.request_context;
        let route = ctx.route_key.clone().unwrap_or_default();
        let connection = ctx.connection_id.clone().unwrap_or_default();
        let span = tracing::info_span!(
            "event",
            request_id = ctx.request_id.as_deref().unwrap_or_default(),
            route = route.as_str(),
            connection_id = connection.as_str(),
        );
        let answer = tracing::Instrument::instrument(
            async {
                match route.as_str() {
                    "$connect" => {
                        let ticket = event.query_string_parameters.first("ticket");
                        self.connect(&connection, ticket).await
                    }
                    "$disconnect" => {
                        self.listeners.disconnect(&connection).await?;
                        Ok(reply(200, None))
                    }
                    _ => Ok(message(event.body.as_deref())),
                }
            },
            span,
        )
        .await;
        answer.unwrap_or_else(|e| {
            if e.status().is_server_error() {
                tracing::error!(error = %e, cause = ?std::error::Error::source(&e), "event failed");
            }
            error_reply(&e)
        })
    }

    async fn connect(
        &self,
        connection: &str,
        ticket: Option<&str>,
    ) -> Result<ApiGatewayProxyResponse, Error> {
        if connection.is_empty() || connection.len() > 128 {
            return Err(Error::InvalidRequest("no connection id".into()));
        }
        let checked = self.tickets.check(ticket, OffsetDateTime::now_utc());
        let ticket = match checked {
            Ok(t) => t,
            Err(why) => return Ok(refused(why)),
        };
        let recorded = self
            .listeners
            .connect(&NewConnection {
                connection_id: connection,
                user: &ticket.user,
                ticket: ticket.nonce,
            })
            .await?;
        if !recorded {
            return Ok(refused(Refused::Reused));
        }
        tracing::info!(user = ticket.user.as_str(), "connected");
        Ok(reply(200, None))
    }
}

/// The answer while the function cannot load its configuration: a 503 with
/// `Retry-After`, as the HTTP API's.
pub fn unavailable() -> ApiGatewayProxyResponse {
    error_reply(&Error::unavailable("configuration", "not loaded"))
}

/// A client's message: `{"type": "ping"}` gets `{"type": "pong"}`; anything
/// else an error message (the connection stays open).
fn message(body: Option<&str>) -> ApiGatewayProxyResponse {
    let body = body.unwrap_or_default();
    #[derive(serde::Deserialize)]
    struct Message {
        #[serde(rename = "type")]
        kind: String,
    }
    let answer = if body.len() > MAX_MESSAGE {
        error_message("a message is at most 4096 bytes")
    } else {
        match serde_json::from_str::<Message>(body) {
            Ok(m) if m.kind == "ping" => serde_json::json!({ "type": "pong" }),
            Ok(m) => error_message(&format!(
                "unknown message type {:?}; only \"ping\" is understood",
                m.kind.chars().take(40).collect::<String>()
            )),
            Err(_) => error_message("a message is a JSON object such as {\"type\":\"ping\"}"),
        }
    };
    reply(200, Some(answer.to_string()))
}

fn error_message(message: &str) -> serde_json::Value {
    serde_json::json!({
        "type": "error",
        "error": { "code": "invalid_request", "message": message },
    })
}

fn refused(why: Refused) -> ApiGatewayProxyResponse {
    tracing::info!(why = %why, "ticket refused");
    error_reply(&Error::Unauthorized)
}

fn reply(status: i64, body: Option<String>) -> ApiGatewayProxyResponse {
    let mut r = ApiGatewayProxyResponse::default();
    r.status_code = status;
    r.body = body.map(Body::Text);
    r
}

/// The API's error body and status (with `Retry-After` on a 503), as the
/// handshake's answer.
fn error_reply(e: &Error) -> ApiGatewayProxyResponse {
    let mut r = reply(
        i64::from(e.status().as_u16()),
        Some(
            serde_json::json!({ "error": { "code": e.code(), "message": e.public_message() } })
                .to_string(),
        ),
    );
    r.headers.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    if let Some(secs) = e.retry_after_secs() {
        r.headers
            .insert(http::header::RETRY_AFTER, http::HeaderValue::from(secs));
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ping_gets_a_pong_and_anything_else_an_error() {
        let pong = message(Some(r#"{"type":"ping"}"#));
        assert_eq!(pong.status_code, 200);
        assert_eq!(pong.body, Some(Body::Text(r#"{"type":"pong"}"#.into())));
        for bad in [
            None,
            Some(""),
            Some("ping"),
            Some("[]"),
            Some(r#"{"type":"pong"}"#),
        ] {
            let r = message(bad);
            let Some(Body::Text(t)) = r.body else {
                panic!("{bad:?}: no body")
            };
            let v: serde_json::Value = serde_json::from_str(&t).unwrap();
            assert_eq!(v["type"], "error", "{bad:?}");
            assert_eq!(v["error"]["code"], "invalid_request");
        }
        let huge = format!(r#"{{"type":"ping","x":"{}"}}"#, "a".repeat(5000));
        let Some(Body::Text(t)) = message(Some(&huge)).body else {
            panic!()
        };
        assert!(t.contains("4096"), "{t}");
    }
}
