//! The crate's one error type. Each variant says what an HTTP client sees;
//! 5xx bodies are generic and their causes only logged.

use http::StatusCode;

type Source = Box<dyn std::error::Error + Send + Sync>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// 400 `invalid_request`: the input cannot be parsed or breaks a limit.
    #[error("{0}")]
    InvalidRequest(String),
    /// 401 `unauthorized`: no caller identity in the request context.
    #[error("missing or invalid bearer token")]
    Unauthorized,
    /// 403 `forbidden`: the caller acts on something of another user.
    #[error("{0}")]
    Forbidden(&'static str),
    /// 404 `not_found`: no such thing, or one the caller may not see yet.
    #[error("{0}")]
    NotFound(&'static str),
    /// 409 `conflict`, reason `wrong_state`: the post is in the wrong state
    /// for this action (its upload completed, aborted or expired).
    #[error("{0}")]
    Conflict(String),
    /// 409 `conflict`, reason `in_progress`: the first request with this
    /// `Idempotency-Key` is still running; retry shortly.
    #[error("a request with this Idempotency-Key is still in progress; retry it shortly")]
    KeyInProgress,
    /// 413 `too_large`: declared or actual image size over the limit.
    #[error("{0}")]
    TooLarge(String),
    /// 415 `unsupported_media_type`: not one of `ImageFormat::ALL`'s types.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// 422 `idempotency_key_reused`: the caller used this `Idempotency-Key`
    /// for another request.
    #[error("this Idempotency-Key was already used for a different request")]
    IdempotencyKeyReused,
    /// 429 `too_many_requests`: a per-user limit; `Retry-After` says when a
    /// retry may pass.
    #[error("{message}")]
    TooManyRequests {
        message: String,
        retry_after_secs: u64,
    },
    /// 503 `unavailable`: a dependency is down or timed out; retrying may help.
    #[error("{what} unavailable")]
    Unavailable { what: &'static str, source: Source },
    /// 500 `internal`: a bug or an unexpected answer from a dependency.
    #[error("internal error")]
    Internal(#[source] Source),
}

impl Error {
    pub fn internal(e: impl Into<Source>) -> Self {
        Error::Internal(e.into())
    }

    pub fn unavailable(what: &'static str, e: impl Into<Source>) -> Self {
        Error::Unavailable {
            what,
            source: e.into(),
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Error::InvalidRequest(_) => StatusCode::BAD_REQUEST,
            Error::Unauthorized => StatusCode::UNAUTHORIZED,
            Error::Forbidden(_) => StatusCode::FORBIDDEN,
            Error::NotFound(_) => StatusCode::NOT_FOUND,
            Error::Conflict(_) | Error::KeyInProgress => StatusCode::CONFLICT,
            Error::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Error::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Error::IdempotencyKeyReused => StatusCode::UNPROCESSABLE_ENTITY,
            Error::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            Error::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Error::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            Error::InvalidRequest(_) => "invalid_request",
            Error::Unauthorized => "unauthorized",
            Error::Forbidden(_) => "forbidden",
            Error::NotFound(_) => "not_found",
            Error::Conflict(_) | Error::KeyInProgress => "conflict",
            Error::TooLarge(_) => "too_large",
            Error::UnsupportedMediaType(_) => "unsupported_media_type",
            Error::IdempotencyKeyReused => "idempotency_key_reused",
            Error::TooManyRequests { .. } => "too_many_requests",
            Error::Unavailable { .. } => "unavailable",
            Error::Internal(_) => "internal",
        }
    }

    /// Which of a code's meanings, where one code has several: a client
    /// reads this, never the message's words (`error.reason`).
    pub fn reason(&self) -> Option<&'static str> {
        match self {
            Error::Conflict(_) => Some("wrong_state"),
            Error::KeyInProgress => Some("in_progress"),
            Error::InvalidRequest(_)
            | Error::Unauthorized
            | Error::Forbidden(_)
            | Error::NotFound(_)
            | Error::TooLarge(_)
            | Error::UnsupportedMediaType(_)
            | Error::IdempotencyKeyReused
            | Error::TooManyRequests { .. }
            | Error::Unavailable { .. }
            | Error::Internal(_) => None,
        }
    }

    /// The message a client may read: never a cause chain, SQL or hostname.
    pub fn public_message(&self) -> String {
        match self {
            Error::Unavailable { what, .. } => {
                format!("{what} is temporarily unavailable; retry later")
            }
            Error::Internal(_) => "internal error".to_owned(),
            other => other.to_string(),
        }
    }

    /// Seconds a client should wait before retrying (`Retry-After`), for the
    /// answers that invite a retry.
    pub fn retry_after_secs(&self) -> Option<u64> {
        match self {
            Error::TooManyRequests {
                retry_after_secs, ..
            } => Some(*retry_after_secs),
            // Outages seen so far are brief (a failover, a restart); a
            // client backing off from here finds the service soonest.
            Error::Unavailable { .. } => Some(1),
            _ => None,
        }
    }
}

#[cfg(feature = "db")]
impl From<mysql_async::Error> for Error {
    fn from(e: mysql_async::Error) -> Self {
        use mysql_async::Error as E;
        match e {
            // Connection-level trouble: the database is (maybe briefly) down.
            E::Io(_) | E::Driver(_) => Error::unavailable("database", e),
            // Overloaded, going down, failing over or locked: retrying
            // later helps. 1040 too many connections, 1045 password refused
            // (after the store read the secret again), 1053 shutdown in
            // progress, 1205 lock wait timeout, 1213 deadlock (after the
            // store's own retry), 1290/1836 read-only (a failover's old
            // writer), 1927 connection killed, 3024 statement timeout.
            E::Server(ref s)
                if matches!(
                    s.code,
                    1040 | 1045 | 1053 | 1205 | 1213 | 1290 | 1836 | 1927 | 3024
                ) =>
            {
                Error::unavailable("database", e)
            }
            _ => Error::internal(e),
        }
    }
}

#[cfg(all(test, feature = "db"))]
mod tests {
    use super::*;

    fn server(code: u16) -> Error {
        mysql_async::Error::Server(mysql_async::ServerError {
            code,
            message: "secret table t_users".into(),
            state: "HY000".into(),
        })
        .into()
    }

    #[test]
    fn overload_shutdown_failover_and_locks_are_503_with_retry_after() {
        for code in [1040, 1045, 1053, 1205, 1213, 1290, 1836, 1927, 3024] {
            let e = server(code);
            assert_eq!(e.status(), StatusCode::SERVICE_UNAVAILABLE, "{code}");
            assert_eq!(e.retry_after_secs(), Some(1), "{code}");
            assert!(!e.public_message().contains("t_users"));
        }
        // A bug (a syntax error, a missing table) stays a 500.
        for code in [1064, 1146] {
            assert_eq!(
                server(code).status(),
                StatusCode::INTERNAL_SERVER_ERROR,
                "{code}"
            );
        }
    }
}
