//! Image URLs presigned without the SDK's per-call machinery.
//!
//! The SDK's presigner runs a whole operation for each URL (serializer,
//! endpoint rules, interceptors, identity cache, signer): ~70 us a URL on
//! the project's machine, 1.4 ms of API CPU for a feed page of 20 images
//! the URL cache has not seen (docs/PERFORMANCE.md). Within one signing
//! window every URL shares its scheme, host, path prefix, credentials,
//! region and time and differs only in the key, so [`WindowSigner`] learns
//! those from one URL the SDK presigned and signs the others with SigV4
//! itself (`aws-sigv4`, the SDK's own signer). It is kept for a window only
//! if it reproduces that URL byte for byte; otherwise the SDK signs every
//! URL, as before.

use std::time::{Duration, SystemTime};

use aws_sigv4::http_request::{
    PercentEncodingMode, SignableBody, SignableRequest, SignatureLocation, SigningSettings,
    UriPathNormalizationMode, sign,
};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;

/// Signs `GET {prefix}{key}?x-id=GetObject&response-content-type=image/jpeg`
/// for one window, as the SDK's presigned `GetObject` does.
pub(crate) struct WindowSigner {
    /// `scheme://host[:port]/path-before-the-key`.
    prefix: String,
    host: String,
    identity: Identity,
    region: String,
    time: SystemTime,
    expires_in: Duration,
}

/// Keys the signer takes: what the API writes (`converted/<hex>.jpg`), which
/// no URL encoding changes. Anything else goes to the SDK.
fn plain(key: &str) -> bool {
    !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'.' | b'-' | b'_'))
}

impl WindowSigner {
    /// Learns the window's signer from `sdk_url`, the SDK's presigned GET of
    /// `key` at `time`, valid `expires_in`; `None` unless it signs `key` to
    /// exactly `sdk_url`.
    pub(crate) fn learn(
        sdk_url: &str,
        key: &str,
        identity: Identity,
        region: String,
        time: SystemTime,
        expires_in: Duration,
    ) -> Option<Self> {
        if !plain(key) {
            return None;
        }
        let uri: http::Uri = sdk_url.parse().ok()?;
        let host = uri.authority()?.as_str().to_owned();
        let path = uri.path().strip_suffix(key)?;
        let signer = WindowSigner {
            prefix: format!("{}://{host}{path}", uri.scheme_str()?),
            host,
            identity,
            region,
            time,
            expires_in,
        };
        (signer.sign(key).as_deref() == Some(sdk_url)).then_some(signer)
    }

    /// The presigned URL of `key`, or `None` (then the SDK signs it).
    pub(crate) fn sign(&self, key: &str) -> Option<String> {
        if !plain(key) {
            return None;
        }
        let unsigned = format!(
            "{}{key}?x-id=GetObject&response-content-type=image%2Fjpeg",
            self.prefix
        );
        // S3's signing options: no double encoding, no path normalisation,
        // the session token signed; query-string signature.
        let mut settings = SigningSettings::default();
        settings.signature_location = SignatureLocation::QueryParams;
        settings.expires_in = Some(self.expires_in);
        settings.percent_encoding_mode = PercentEncodingMode::Single;
        settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
        let params = v4::SigningParams::builder()
            .identity(&self.identity)
            .region(&self.region)
            .name("s3")
            .time(self.time)
            .settings(settings)
            .build()
            .ok()?
            .into();
        let request = SignableRequest::new(
            "GET",
            unsigned.as_str(),
            [("host", self.host.as_str())].into_iter(),
            SignableBody::UnsignedPayload,
        )
        .ok()?;
        let (instructions, _) = sign(request, &params).ok()?.into_parts();
        let mut signed = http::Request::get(unsigned.as_str()).body(()).ok()?;
        instructions.apply_to_request_http1x(&mut signed);
        Some(signed.uri().to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_keys_are_signed_here() {
        assert!(plain("converted/0194f7a0c1d27b3e8a5b6c7d8e9f0a1b.jpg"));
        for key in ["", "a b", "a+b", "ü", "a?b", "a%2F"] {
            assert!(!plain(key), "{key:?}");
        }
    }
}
