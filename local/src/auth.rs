//! The local stand-in for API Gateway's JWT authorizer: HS256 tokens signed
//! with `IMAGEGRAM_DEV_JWT_SECRET`, `exp` checked when present.

use std::collections::HashMap;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde_json::Value;

/// The default secret of the contract, for local use only.
pub const DEFAULT_SECRET: &str = "imagegram-local-dev-secret";

#[derive(Clone)]
pub struct DevAuthorizer {
    key: DecodingKey,
    validation: Validation,
}

impl DevAuthorizer {
    pub fn new(secret: &str) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        // The contract: exp is checked when present, not required; tokens
        // carry no audience locally.
        validation.required_spec_claims.clear();
        validation.validate_aud = false;
        validation.leeway = 0;
        DevAuthorizer {
            key: DecodingKey::from_secret(secret.as_bytes()),
            validation,
        }
    }

    /// The claims as API Gateway hands them to the function: every value a
    /// string. `None` for a missing, malformed, badly signed or expired
    /// token, or one without a `sub`.
    pub fn authorize(&self, authorization: Option<&str>) -> Option<HashMap<String, String>> {
        let header = authorization?.trim();
        let (scheme, token) = header.split_once(' ')?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return None;
        }
        let data = jsonwebtoken::decode::<HashMap<String, Value>>(
            token.trim(),
            &self.key,
            &self.validation,
        )
        .ok()?;
        let claims: HashMap<String, String> = data
            .claims
            .into_iter()
            .map(|(k, v)| {
                let s = match v {
                    Value::String(s) => s,
                    other => other.to_string(),
                };
                (k, s)
            })
            .collect();
        claims.get("sub").filter(|s| !s.is_empty())?;
        Some(claims)
    }
}

/// A token for `sub`, valid for `ttl_secs` (no `exp` when `None`).
pub fn mint(secret: &str, sub: &str, ttl_secs: Option<u64>) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let mut claims = serde_json::json!({ "sub": sub, "iat": now, "iss": "imagegram-local" });
    if let Some(ttl) = ttl_secs {
        claims["exp"] = (now + ttl).into();
    }
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("HS256 encoding of a JSON object cannot fail")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_a_minted_token_and_hands_over_string_claims() {
        let auth = DevAuthorizer::new("s");
        let claims = auth
            .authorize(Some(&format!("Bearer {}", mint("s", "alice", Some(60)))))
            .unwrap();
        assert_eq!(claims["sub"], "alice");
        assert!(claims["exp"].parse::<u64>().is_ok());
    }

    #[test]
    fn refuses_bad_tokens() {
        let auth = DevAuthorizer::new("s");
        let good = mint("s", "alice", None);
        assert!(auth.authorize(Some(&format!("Bearer {good}"))).is_some());
        assert!(auth.authorize(None).is_none());
        assert!(auth.authorize(Some(&good)).is_none(), "no scheme");
        assert!(auth.authorize(Some(&format!("Basic {good}"))).is_none());
        assert!(auth.authorize(Some("Bearer not.a.jwt")).is_none());
        assert!(
            auth.authorize(Some(&format!("Bearer {}", mint("other", "alice", None))))
                .is_none()
        );
        assert!(auth.authorize(Some(&format!("Bearer {}x", good))).is_none());
        assert!(
            auth.authorize(Some(&format!("Bearer {}", mint("s", "", None))))
                .is_none()
        );
    }

    #[test]
    fn refuses_expired_tokens() {
        let auth = DevAuthorizer::new("s");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let expired = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &serde_json::json!({ "sub": "alice", "exp": now - 5 }),
            &EncodingKey::from_secret(b"s"),
        )
        .unwrap();
        assert!(auth.authorize(Some(&format!("Bearer {expired}"))).is_none());
    }

    #[test]
    fn refuses_the_none_algorithm() {
        // {"alg":"none"} header, {"sub":"alice"} payload, empty signature.
        let token = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiJhbGljZSJ9.";
        assert!(
            DevAuthorizer::new("s")
                .authorize(Some(&format!("Bearer {token}")))
                .is_none()
        );
    }
}
