//! CORS as API Gateway's HTTP API does it, from the `CorsConfiguration` of
//! `HttpApi` in `template.yaml` (read, never copied): the gateway answers
//! preflights itself, before routing and without a token, and adds
//! `Access-Control-Allow-Origin` (and the exposed headers) to every
//! response, errors included.

use http::{HeaderMap, HeaderValue, Method};

use crate::template::{BoxError, Resolved, Template};

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Cors {
    pub allow_origins: Vec<String>,
    pub allow_methods: Vec<String>,
    pub allow_headers: Vec<String>,
    pub expose_headers: Vec<String>,
    pub max_age: Option<u64>,
    pub allow_credentials: bool,
}

impl Cors {
    /// `HttpApi.Properties.CorsConfiguration`, resolved.
    pub fn from_template(t: &Template) -> Result<Self, BoxError> {
        let cfg = t.resolve(&t.properties("HttpApi")?["CorsConfiguration"])?;
        if cfg == Resolved::NoValue {
            return Ok(Cors::default());
        }
        let list = |k: &str| -> Result<Vec<String>, BoxError> {
            cfg.get(k).map(Resolved::strings).unwrap_or(Ok(Vec::new()))
        };
        Ok(Cors {
            allow_origins: list("AllowOrigins")?,
            allow_methods: list("AllowMethods")?
                .into_iter()
                .map(|m| m.to_ascii_uppercase())
                .collect(),
            allow_headers: list("AllowHeaders")?
                .into_iter()
                .map(|h| h.to_ascii_lowercase())
                .collect(),
            expose_headers: list("ExposeHeaders")?
                .into_iter()
                .map(|h| h.to_ascii_lowercase())
                .collect(),
            max_age: cfg
                .get("MaxAge")
                .and_then(Resolved::as_str)
                .map(str::parse)
                .transpose()?,
            allow_credentials: cfg
                .get("AllowCredentials")
                .is_some_and(|v| matches!(v, Resolved::Bool(true))),
        })
    }

    /// What `Access-Control-Allow-Origin` says to `origin`, if it is allowed.
    fn allow_origin(&self, origin: &str) -> Option<String> {
        if self.allow_origins.iter().any(|o| o == "*") && !self.allow_credentials {
            return Some("*".into());
        }
        self.allow_origins
            .iter()
            .any(|o| o.eq_ignore_ascii_case(origin))
            .then(|| origin.to_owned())
    }

    /// A preflight: an OPTIONS request carrying `Origin` and
    /// `Access-Control-Request-Method`.
    pub fn is_preflight(method: &Method, headers: &HeaderMap) -> bool {
        method == Method::OPTIONS
            && headers.contains_key(http::header::ORIGIN)
            && headers.contains_key(http::header::ACCESS_CONTROL_REQUEST_METHOD)
    }

    /// The headers of the gateway's own answer (204) to a preflight: all of
    /// them when the origin, method and every requested header are allowed,
    /// none otherwise (the browser then refuses the request).
    pub fn preflight(&self, headers: &HeaderMap) -> HeaderMap {
        let mut out = HeaderMap::new();
        let get = |h| headers.get(h).and_then(|v| v.to_str().ok()).unwrap_or("");
        let Some(origin) = self.allow_origin(get(http::header::ORIGIN)) else {
            return out;
        };
        let method = get(http::header::ACCESS_CONTROL_REQUEST_METHOD).to_ascii_uppercase();
        let method_ok = self.allow_methods.iter().any(|m| m == "*" || *m == method);
        let requested: Vec<String> = get(http::header::ACCESS_CONTROL_REQUEST_HEADERS)
            .split(',')
            .map(|h| h.trim().to_ascii_lowercase())
            .filter(|h| !h.is_empty())
            .collect();
        let headers_ok = requested
            .iter()
            .all(|h| self.allow_headers.iter().any(|a| a == "*" || a == h));
        if !method_ok || !headers_ok {
            return out;
        }
        let set = |out: &mut HeaderMap, k: http::header::HeaderName, v: String| {
            if let Ok(v) = HeaderValue::from_str(&v) {
                out.insert(k, v);
            }
        };
        set(&mut out, http::header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        set(
            &mut out,
            http::header::ACCESS_CONTROL_ALLOW_METHODS,
            self.allow_methods.join(","),
        );
        if !requested.is_empty() {
            set(
                &mut out,
                http::header::ACCESS_CONTROL_ALLOW_HEADERS,
                self.allow_headers.join(","),
            );
        }
        if let Some(age) = self.max_age {
            set(
                &mut out,
                http::header::ACCESS_CONTROL_MAX_AGE,
                age.to_string(),
            );
        }
        if self.allow_credentials {
            out.insert(
                http::header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
        }
        out
    }

    /// Adds the CORS headers to any response of a request from `origin`.
    pub fn decorate(&self, origin: Option<&str>, out: &mut HeaderMap) {
        let Some(origin) = origin.and_then(|o| self.allow_origin(o)) else {
            return;
        };
        if let Ok(v) = HeaderValue::from_str(&origin) {
            out.insert(http::header::ACCESS_CONTROL_ALLOW_ORIGIN, v);
        }
        if !self.expose_headers.is_empty()
            && let Ok(v) = HeaderValue::from_str(&self.expose_headers.join(","))
        {
            out.insert(http::header::ACCESS_CONTROL_EXPOSE_HEADERS, v);
        }
        if self.allow_credentials {
            out.insert(
                http::header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
        }
        if origin != "*" {
            out.append(http::header::VARY, HeaderValue::from_static("Origin"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cors() -> Cors {
        Cors {
            allow_origins: vec!["*".into()],
            allow_methods: vec![
                "GET".into(),
                "POST".into(),
                "DELETE".into(),
                "OPTIONS".into(),
            ],
            allow_headers: vec!["authorization".into(), "content-type".into()],
            expose_headers: vec!["retry-after".into()],
            max_age: Some(600),
            allow_credentials: false,
        }
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(k, v)| (k.parse().unwrap(), v.parse().unwrap()))
            .collect()
    }

    #[test]
    fn an_allowed_preflight_gets_every_header() {
        let h = cors().preflight(&headers(&[
            ("origin", "http://localhost:8080"),
            ("access-control-request-method", "POST"),
            (
                "access-control-request-headers",
                "Authorization, Content-Type",
            ),
        ]));
        assert_eq!(h["access-control-allow-origin"], "*");
        assert_eq!(h["access-control-allow-methods"], "GET,POST,DELETE,OPTIONS");
        assert_eq!(
            h["access-control-allow-headers"],
            "authorization,content-type"
        );
        assert_eq!(h["access-control-max-age"], "600");
    }

    #[test]
    fn a_header_or_method_not_allowed_gets_none() {
        let h = cors().preflight(&headers(&[
            ("origin", "http://x"),
            ("access-control-request-method", "PUT"),
        ]));
        assert!(h.is_empty());
        let h = cors().preflight(&headers(&[
            ("origin", "http://x"),
            ("access-control-request-method", "POST"),
            ("access-control-request-headers", "x-secret"),
        ]));
        assert!(h.is_empty());
        let mut c = cors();
        c.allow_origins = vec!["https://app.example".into()];
        let h = c.preflight(&headers(&[
            ("origin", "http://evil.example"),
            ("access-control-request-method", "GET"),
        ]));
        assert!(h.is_empty());
    }
}
