//! Event tickets: what `POST /events/ticket` hands a caller to open one
//! WebSocket connection (contract section 7).
//!
//! A ticket is `base64url(payload || tag)`, the cursor's construction
//! (`cursor.rs`) under a key of its own: the payload holds a version, when
//! the ticket expires, a random nonce and the caller's id; the tag is the
//! first 16 bytes of HMAC-SHA256 over it. The key is derived from the
//! cursor key (HMAC of a label), so the deploy keeps one secret and a cursor
//! can never pass for a ticket. A ticket is checked at `$connect`: tag,
//! expiry, then (in the database, `Listeners::connect`) that its nonce
//! opened no connection before.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use time::OffsetDateTime;

use crate::domain::UserId;
use crate::tag::{TAG_LEN, Tagger};

const VERSION: u8 = 1;
const NONCE_LEN: usize = 16;
/// Version, expiry (seconds since the epoch, 8 bytes), nonce.
const FIXED: usize = 1 + 8 + NONCE_LEN;

/// How long a ticket may wait to be used: at most 60 s (the contract).
pub const TICKET_TTL: time::Duration = time::Duration::seconds(60);

/// A checked ticket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ticket {
    pub user: UserId,
    pub nonce: [u8; NONCE_LEN],
    pub expires_at: OffsetDateTime,
}

/// Why a ticket is refused (the client gets the same 401 for each; the
/// logs tell them apart).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("no ticket")]
    Missing,
    #[error("not a ticket, or signed with another key")]
    Forged,
    #[error("the ticket expired")]
    Expired,
    #[error("the ticket opened a connection already")]
    Reused,
}

/// Issues and checks tickets.
#[derive(Clone)]
pub struct Tickets {
    mac: Tagger,
}

impl Tickets {
    /// Tickets keyed from the cursor key.
    pub fn from_cursor_secret(secret: &[u8]) -> Self {
        let mut derive = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key");
        derive.update(b"imagegram event tickets v1");
        let key = derive.finalize().into_bytes();
        Tickets {
            mac: Tagger::new(&key),
        }
    }

    /// A ticket for `user`, good until `now + TICKET_TTL`.
    pub fn issue(&self, user: &UserId, now: OffsetDateTime) -> (String, OffsetDateTime) {
        let expires_at = now + TICKET_TTL;
        let mut payload = Vec::with_capacity(FIXED + user.as_str().len() + TAG_LEN);
        payload.push(VERSION);
        payload.extend_from_slice(&expires_at.unix_timestamp().to_be_bytes());
        payload.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
        payload.extend_from_slice(user.as_str().as_bytes());
        let tag = self.mac.tag(&payload);
        payload.extend_from_slice(&tag);
        (URL_SAFE_NO_PAD.encode(payload), expires_at)
    }

    /// The ticket's caller, if `token` is one of ours and has not expired.
    /// (Whether it was used is the database's to say.)
    pub fn check(&self, token: Option<&str>, now: OffsetDateTime) -> Result<Ticket, Refused> {
        let token = token.filter(|t| !t.is_empty()).ok_or(Refused::Missing)?;
        if token.len() > 1024 {
            return Err(Refused::Forged);
        }
        let bytes = URL_SAFE_NO_PAD.decode(token).map_err(|_| Refused::Forged)?;
        if bytes.len() < FIXED + 1 + TAG_LEN {
            return Err(Refused::Forged);
        }
        let (payload, tag) = bytes.split_at(bytes.len() - TAG_LEN);
        if !self.mac.verify(payload, tag) {
            return Err(Refused::Forged);
        }
        if payload[0] != VERSION {
            return Err(Refused::Forged);
        }
        let expires = i64::from_be_bytes(payload[1..9].try_into().expect("8 bytes"));
        let expires_at =
            OffsetDateTime::from_unix_timestamp(expires).map_err(|_| Refused::Forged)?;
        if expires_at <= now {
            return Err(Refused::Expired);
        }
        let user = std::str::from_utf8(&payload[FIXED..])
            .ok()
            .and_then(UserId::parse)
            .ok_or(Refused::Forged)?;
        Ok(Ticket {
            user,
            nonce: payload[9..FIXED].try_into().expect("16 bytes"),
            expires_at,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap()
    }

    #[test]
    fn a_ticket_names_its_caller_until_it_expires() {
        let t = Tickets::from_cursor_secret(b"k".repeat(48).as_slice());
        let alice = UserId::parse("alice").unwrap();
        let (token, expires_at) = t.issue(&alice, now());
        assert_eq!(expires_at, now() + TICKET_TTL);
        let ticket = t.check(Some(&token), now()).unwrap();
        assert_eq!(ticket.user, alice);
        assert_eq!(ticket.expires_at, expires_at);
        assert_eq!(
            t.check(Some(&token), expires_at),
            Err(Refused::Expired),
            "good before its expiry only"
        );
        // Two tickets for one caller differ (their nonces).
        let (again, _) = t.issue(&alice, now());
        assert_ne!(t.check(Some(&again), now()).unwrap().nonce, ticket.nonce);
    }

    #[test]
    fn tampered_foreign_and_malformed_tickets_are_refused() {
        let t = Tickets::from_cursor_secret(b"k".repeat(48).as_slice());
        let (token, _) = t.issue(&UserId::parse("alice").unwrap(), now());
        let mut bytes = URL_SAFE_NO_PAD.decode(&token).unwrap();
        // Another user's name in the payload, the tag unchanged.
        let n = bytes.len();
        bytes[n - TAG_LEN - 1] ^= 1;
        assert_eq!(
            t.check(Some(&URL_SAFE_NO_PAD.encode(&bytes)), now()),
            Err(Refused::Forged)
        );
        // A later expiry.
        let mut later = URL_SAFE_NO_PAD.decode(&token).unwrap();
        later[8] = later[8].wrapping_add(1);
        assert_eq!(
            t.check(Some(&URL_SAFE_NO_PAD.encode(&later)), now()),
            Err(Refused::Forged)
        );
        let other = Tickets::from_cursor_secret(b"o".repeat(48).as_slice());
        assert_eq!(other.check(Some(&token), now()), Err(Refused::Forged));
        // A cursor signed with the same secret is no ticket.
        let cursors = crate::cursor::CursorCodec::new(b"k".repeat(48).as_slice());
        let cursor = cursors.encode_feed(crate::domain::FeedPosition {
            comment_count: 1,
            post_id: crate::domain::PostId::generate(),
        });
        assert_eq!(t.check(Some(&cursor), now()), Err(Refused::Forged));
        for bad in ["", "x", "!!!", &"A".repeat(5000), &token[..token.len() - 2]] {
            assert!(t.check(Some(bad), now()).is_err(), "{bad:?}");
        }
        assert_eq!(t.check(None, now()), Err(Refused::Missing));
    }
}
