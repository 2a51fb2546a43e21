//! Opaque pagination cursors.
//!
//! A cursor is `base64url(payload || tag)`: the payload holds the keyset
//! position of the last row a page returned, the tag is the first 16 bytes of
//! HMAC-SHA256(secret, payload). Clients cannot forge a position, and a cursor
//! from another listing (the feed versus a post's comments, or another post's
//! comments) fails its scope check. Either way the answer is a 400, never a
//! 500. The alternative, an unsigned cursor validated field by field, would
//! let a tampered cursor silently page from an arbitrary place.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::Error;
use crate::domain::{CommentId, CommentsPosition, FeedPosition, PostId};
use crate::tag::{TAG_LEN, Tagger};

const VERSION: u8 = 1;
const KIND_FEED: u8 = b'F';
const KIND_COMMENTS: u8 = b'C';

/// Signs and checks cursors with the configured secret.
#[derive(Clone)]
pub struct CursorCodec {
    mac: Tagger,
}

impl CursorCodec {
    pub fn new(secret: &[u8]) -> Self {
        CursorCodec {
            mac: Tagger::new(secret),
        }
    }

    pub fn encode_feed(&self, p: FeedPosition) -> String {
        let mut payload = vec![VERSION, KIND_FEED];
        payload.extend_from_slice(&p.comment_count.to_be_bytes());
        payload.extend_from_slice(p.post_id.as_bytes());
        self.seal(payload)
    }

    pub fn decode_feed(&self, cursor: &str) -> Result<FeedPosition, Error> {
        let payload = self.open(cursor, KIND_FEED, 8 + 16)?;
        Ok(FeedPosition {
            comment_count: u64::from_be_bytes(payload[..8].try_into().expect("length checked")),
            post_id: PostId::from_bytes(payload[8..].try_into().expect("length checked")),
        })
    }

    /// Comment cursors are bound to their post: one post's cursor is refused
    /// on another's listing.
    pub fn encode_comments(&self, post: PostId, p: CommentsPosition) -> String {
        let mut payload = vec![VERSION, KIND_COMMENTS];
        payload.extend_from_slice(post.as_bytes());
        payload.extend_from_slice(p.comment_id.as_bytes());
        self.seal(payload)
    }

    pub fn decode_comments(&self, post: PostId, cursor: &str) -> Result<CommentsPosition, Error> {
        let payload = self.open(cursor, KIND_COMMENTS, 16 + 16)?;
        if &payload[..16] != post.as_bytes() {
            return Err(bad_cursor());
        }
        Ok(CommentsPosition {
            comment_id: CommentId::from_bytes(payload[16..].try_into().expect("length checked")),
        })
    }

    fn seal(&self, mut payload: Vec<u8>) -> String {
        let tag = self.mac.tag(&payload);
        payload.extend_from_slice(&tag);
        URL_SAFE_NO_PAD.encode(payload)
    }

    /// Returns the fields after the version and kind bytes.
    fn open(&self, cursor: &str, kind: u8, fields_len: usize) -> Result<Vec<u8>, Error> {
        // Bounded before decoding: a megabyte "cursor" costs nothing.
        if cursor.len() > 128 {
            return Err(bad_cursor());
        }
        let raw = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| bad_cursor())?;
        if raw.len() != 2 + fields_len + TAG_LEN {
            return Err(bad_cursor());
        }
        let (payload, tag) = raw.split_at(raw.len() - TAG_LEN);
        if !self.mac.verify(payload, tag) {
            return Err(bad_cursor());
        }
        if payload[0] != VERSION || payload[1] != kind {
            return Err(bad_cursor());
        }
        Ok(payload[2..].to_vec())
    }
}

fn bad_cursor() -> Error {
    Error::InvalidRequest("cursor is not valid for this listing".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn codec() -> CursorCodec {
        CursorCodec::new(b"test-secret")
    }

    #[test]
    fn feed_cursor_round_trips() {
        let p = FeedPosition {
            comment_count: 100_000,
            post_id: PostId::generate(),
        };
        let c = codec().encode_feed(p);
        assert_eq!(codec().decode_feed(&c).unwrap(), p);
        assert!(
            c.chars()
                .all(|ch| ch.is_ascii_alphanumeric() || ch == '-' || ch == '_')
        );
    }

    #[test]
    fn comments_cursor_round_trips_for_its_post_only() {
        let post = PostId::generate();
        let p = CommentsPosition {
            comment_id: CommentId::generate(),
        };
        let c = codec().encode_comments(post, p);
        assert_eq!(codec().decode_comments(post, &c).unwrap(), p);
        assert!(codec().decode_comments(PostId::generate(), &c).is_err());
    }

    #[test]
    fn every_single_character_change_is_rejected() {
        let c = codec().encode_feed(FeedPosition {
            comment_count: 7,
            post_id: PostId::generate(),
        });
        for i in 0..c.len() {
            for replacement in ['A', 'z', '0', '_'] {
                let mut t: Vec<char> = c.chars().collect();
                if t[i] == replacement {
                    continue;
                }
                t[i] = replacement;
                let t: String = t.into_iter().collect();
                assert!(
                    codec().decode_feed(&t).is_err(),
                    "accepted tampered cursor {t}"
                );
            }
        }
    }

    #[test]
    fn foreign_cursors_are_rejected() {
        let post = PostId::generate();
        let comments = codec().encode_comments(
            post,
            CommentsPosition {
                comment_id: CommentId::generate(),
            },
        );
        let feed = codec().encode_feed(FeedPosition {
            comment_count: 1,
            post_id: post,
        });
        assert!(codec().decode_feed(&comments).is_err());
        assert!(codec().decode_comments(post, &feed).is_err());
        // Signed with another deployment's secret.
        let other = CursorCodec::new(b"another-secret").encode_feed(FeedPosition {
            comment_count: 1,
            post_id: post,
        });
        assert!(codec().decode_feed(&other).is_err());
    }

    #[test]
    fn garbage_is_rejected_not_panicked_on() {
        for junk in [
            "",
            "=",
            "!!!!",
            "null",
            "%00",
            &"A".repeat(10_000),
            "AAAA",
            "😀",
        ] {
            assert!(
                matches!(codec().decode_feed(junk), Err(Error::InvalidRequest(_))),
                "{junk:?}"
            );
        }
    }
}
