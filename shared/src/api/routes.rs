//! The API's routes, once: every other list of them is derived from this
//! enum (dispatch, the local gateway, the public routes) or tested against
//! it (the template's events and route settings, `openapi.yaml`, the sample
//! events and their expectations, the identity checks; see
//! `tests/integration/routes.rs`). Adding a route is a variant here, its
//! arm in `dispatch` (the compiler asks for it), and what those tests name.

/// One route of the HTTP API.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Route {
    Health,
    HealthDependencies,
    OpenApi,
    CreatePost,
    GetUpload,
    SignParts,
    CompleteUpload,
    AbortUpload,
    SignUploadRequest,
    Feed,
    GetPost,
    AddComment,
    ListComments,
    DeleteComment,
    EventsTicket,
}

/// How API Gateway's stage limits a route (template.yaml's `RouteSettings`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Throttle {
    /// The stage's default (`ApiThrottleRate`).
    Default,
    /// `UploadThrottleRate`: creating posts and their uploads costs S3 calls
    /// and rows.
    Upload,
    /// 5/s: it reaches the database and S3 on every call.
    Dependencies,
}

impl Route {
    pub const ALL: [Route; 15] = [
        Route::Health,
        Route::HealthDependencies,
        Route::OpenApi,
        Route::CreatePost,
        Route::GetUpload,
        Route::SignParts,
        Route::CompleteUpload,
        Route::AbortUpload,
        Route::SignUploadRequest,
        Route::Feed,
        Route::GetPost,
        Route::AddComment,
        Route::ListComments,
        Route::DeleteComment,
        Route::EventsTicket,
    ];

    /// API Gateway's route key: `METHOD /path/{param}`.
    pub const fn key(self) -> &'static str {
        match self {
            Route::Health => "GET /health",
            Route::HealthDependencies => "GET /health/dependencies",
            Route::OpenApi => "GET /openapi.json",
            Route::CreatePost => "POST /posts",
            Route::GetUpload => "GET /posts/{id}/upload",
            Route::SignParts => "POST /posts/{id}/upload/parts",
            Route::CompleteUpload => "POST /posts/{id}/upload/complete",
            Route::AbortUpload => "DELETE /posts/{id}/upload",
            Route::SignUploadRequest => "POST /uploads/sign",
            Route::Feed => "GET /posts",
            Route::GetPost => "GET /posts/{id}",
            Route::AddComment => "POST /posts/{id}/comments",
            Route::ListComments => "GET /posts/{id}/comments",
            Route::DeleteComment => "DELETE /posts/{id}/comments/{comment_id}",
            Route::EventsTicket => "POST /events/ticket",
        }
    }

    /// Let through without a token (the template's `Authorizer: NONE`).
    pub const fn is_public(self) -> bool {
        match self {
            Route::Health | Route::OpenApi => true,
            Route::HealthDependencies
            | Route::CreatePost
            | Route::GetUpload
            | Route::SignParts
            | Route::CompleteUpload
            | Route::AbortUpload
            | Route::SignUploadRequest
            | Route::Feed
            | Route::GetPost
            | Route::AddComment
            | Route::ListComments
            | Route::DeleteComment
            | Route::EventsTicket => false,
        }
    }

    pub const fn throttle(self) -> Throttle {
        match self {
            Route::CreatePost
            | Route::GetUpload
            | Route::SignParts
            | Route::CompleteUpload
            | Route::AbortUpload
            | Route::SignUploadRequest => Throttle::Upload,
            Route::HealthDependencies => Throttle::Dependencies,
            Route::Health
            | Route::OpenApi
            | Route::Feed
            | Route::GetPost
            | Route::AddComment
            | Route::ListComments
            | Route::DeleteComment
            | Route::EventsTicket => Throttle::Default,
        }
    }

    /// The route of an API Gateway route key.
    pub fn parse(key: &str) -> Option<Route> {
        Route::ALL.into_iter().find(|r| r.key() == key)
    }
}

/// Every route key, in [`Route::ALL`]'s order.
pub const ROUTES: [&str; Route::ALL.len()] = {
    let mut keys = [""; Route::ALL.len()];
    let mut i = 0;
    while i < keys.len() {
        keys[i] = Route::ALL[i].key();
        i += 1;
    }
    keys
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_distinct_and_parse_back() {
        let mut seen = std::collections::BTreeSet::new();
        for r in Route::ALL {
            assert!(seen.insert(r.key()), "{} twice", r.key());
            assert_eq!(Route::parse(r.key()), Some(r));
        }
        assert_eq!(Route::parse("GET /nope"), None);
        assert_eq!(ROUTES.len(), Route::ALL.len());
    }
}
