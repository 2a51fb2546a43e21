//! The truncated HMAC-SHA256 tags that pagination cursors and event
//! tickets carry: the first 16 bytes of HMAC-SHA256(key, payload), checked
//! in constant time.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Bytes of a tag.
pub(crate) const TAG_LEN: usize = 16;

#[derive(Clone)]
pub(crate) struct Tagger(Hmac<Sha256>);

impl Tagger {
    pub(crate) fn new(key: &[u8]) -> Self {
        Tagger(Hmac::new_from_slice(key).expect("HMAC takes keys of any length"))
    }

    pub(crate) fn tag(&self, payload: &[u8]) -> [u8; TAG_LEN] {
        let mut mac = self.0.clone();
        mac.update(payload);
        mac.finalize().into_bytes()[..TAG_LEN]
            .try_into()
            .expect("SHA-256 is 32 bytes")
    }

    /// Whether `tag` is `payload`'s, compared in constant time.
    pub(crate) fn verify(&self, payload: &[u8], tag: &[u8]) -> bool {
        let mut mac = self.0.clone();
        mac.update(payload);
        mac.verify_truncated_left(tag).is_ok()
    }
}
