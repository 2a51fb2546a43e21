//! Typed values at the edge: each can only be built by parsing, so code past
//! the handler never re-checks a limit.

use std::fmt;

use serde::Serialize;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::Error;

/// The caller, from the JWT authorizer's `sub` claim. Never from the body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserId(String);

impl UserId {
    /// Longest `sub` we store; Cognito's are 36, other issuers stay well below.
    pub const MAX_LEN: usize = 255;

    pub fn parse(sub: &str) -> Option<Self> {
        let ok =
            !sub.is_empty() && sub.len() <= Self::MAX_LEN && !sub.chars().any(char::is_control);
        ok.then(|| UserId(sub.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

macro_rules! time_ordered_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(Uuid);

        impl $name {
            /// A fresh id: UUIDv7, so ids sort by creation time (to the
            /// millisecond) and InnoDB appends instead of splitting pages.
            pub fn generate() -> Self {
                $name(Uuid::now_v7())
            }

            /// Parses the client-facing form. Anything else is no id at all.
            pub fn parse(s: &str) -> Option<Self> {
                if s.len() != 32 {
                    return None;
                }
                Uuid::try_parse(s).ok().filter(|u| u.get_version_num() == 7).map($name)
            }

            pub fn from_bytes(b: [u8; 16]) -> Self {
                $name(Uuid::from_bytes(b))
            }

            pub fn as_bytes(&self) -> &[u8; 16] {
                self.0.as_bytes()
            }

            /// The creation time carried in the id itself.
            pub fn created_at(&self) -> OffsetDateTime {
                let (secs, nanos) = self.0.get_timestamp().map(|t| t.to_unix()).unwrap_or((0, 0));
                OffsetDateTime::from_unix_timestamp(secs as i64)
                    .unwrap_or(OffsetDateTime::UNIX_EPOCH)
                    + time::Duration::nanoseconds(i64::from(nanos))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0.simple(), f)
            }
        }

        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                $name::parse(&s).ok_or_else(|| serde::de::Error::custom("not an id"))
            }
        }
    };
}

time_ordered_id!(
    /// Opaque to clients: 32 lowercase hex digits of a UUIDv7.
    PostId
);
time_ordered_id!(
    /// Opaque to clients: 32 lowercase hex digits of a UUIDv7.
    CommentId
);

/// Where a feed page ended: the last post's `(comment_count, id)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FeedPosition {
    pub comment_count: u64,
    pub post_id: PostId,
}

/// Where a comments page ended: the last comment's id (ids sort by time).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CommentsPosition {
    pub comment_id: CommentId,
}

/// How a conversion ended, as the converter reports it and the finalizer
/// records it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    Published {
        image_key: String,
        /// The image's ThumbHash (base64); absent in results of older
        /// converters and where it is not known.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        thumbhash: Option<String>,
    },
    Failed {
        reason: String,
    },
}

/// Largest image accepted, declared or actual: 100 MiB.
pub const MAX_IMAGE_BYTES: u64 = 100 * 1024 * 1024;

/// The declared size of an upload: 1 byte to [`MAX_IMAGE_BYTES`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ImageSize(u64);

impl ImageSize {
    pub fn parse(bytes: u64) -> Result<Self, Error> {
        if bytes == 0 {
            return Err(Error::InvalidRequest(
                "size_bytes must be at least 1".into(),
            ));
        }
        if bytes > MAX_IMAGE_BYTES {
            return Err(Error::TooLarge(format!(
                "images may be at most {MAX_IMAGE_BYTES} bytes (100 MiB)"
            )));
        }
        Ok(ImageSize(bytes))
    }

    pub fn get(self) -> u64 {
        self.0
    }
}

/// An `Idempotency-Key` header: 1 to 255 printable ASCII characters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    pub fn parse(s: &str) -> Result<Self, Error> {
        if s.is_empty() || s.len() > 255 || !s.bytes().all(|b| (0x20..0x7f).contains(&b)) {
            return Err(Error::InvalidRequest(
                "Idempotency-Key must be 1 to 255 printable ASCII characters".into(),
            ));
        }
        Ok(IdempotencyKey(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Where originals land; the bucket notifies the conversion queue of this
/// prefix only, so converted images never retrigger conversion.
pub const ORIGINALS_PREFIX: &str = "originals/";
pub const CONVERTED_PREFIX: &str = "converted/";

impl PostId {
    /// `originals/<id>`: the uploaded bytes, never served.
    pub fn original_key(&self) -> String {
        format!("{ORIGINALS_PREFIX}{self}")
    }

    /// `converted/<id>.jpg`: the 600x600 JPEG that is served.
    pub fn converted_key(&self) -> String {
        format!("{CONVERTED_PREFIX}{self}.jpg")
    }

    /// The post an original's key belongs to.
    pub fn from_original_key(key: &str) -> Option<Self> {
        key.strip_prefix(ORIGINALS_PREFIX).and_then(PostId::parse)
    }
}

/// A post caption: 0 to 2200 characters, kept as written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caption(String);

impl Caption {
    pub const MAX_CHARS: usize = 2200;

    pub fn parse(s: String) -> Result<Self, Error> {
        if s.chars().count() > Self::MAX_CHARS {
            return Err(Error::InvalidRequest(format!(
                "caption is longer than {} characters",
                Self::MAX_CHARS
            )));
        }
        Ok(Caption(s))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A comment's text: 1 to 1000 characters after trimming surrounding
/// whitespace; stored trimmed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommentText(String);

impl CommentText {
    pub const MAX_CHARS: usize = 1000;

    pub fn parse(s: &str) -> Result<Self, Error> {
        let t = s.trim();
        if t.is_empty() {
            return Err(Error::InvalidRequest("content must not be empty".into()));
        }
        if t.chars().count() > Self::MAX_CHARS {
            return Err(Error::InvalidRequest(format!(
                "content is longer than {} characters",
                Self::MAX_CHARS
            )));
        }
        Ok(CommentText(t.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Page size of a listing: 1 to 100, 20 when absent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limit(u16);

impl Limit {
    pub const DEFAULT: u16 = 20;
    pub const MAX: u16 = 100;

    pub fn parse(s: Option<&str>) -> Result<Self, Error> {
        let Some(s) = s else {
            return Ok(Limit(Self::DEFAULT));
        };
        match s.parse::<u16>() {
            Ok(n) if (1..=Self::MAX).contains(&n) => Ok(Limit(n)),
            _ => Err(Error::InvalidRequest(format!(
                "limit must be an integer from 1 to {}",
                Self::MAX
            ))),
        }
    }

    pub fn get(self) -> usize {
        usize::from(self.0)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PostStatus {
    AwaitingUpload,
    Processing,
    Published,
    Failed,
}

impl PostStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            PostStatus::AwaitingUpload => "awaiting_upload",
            PostStatus::Processing => "processing",
            PostStatus::Published => "published",
            PostStatus::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "awaiting_upload" => PostStatus::AwaitingUpload,
            "processing" => PostStatus::Processing,
            "published" => PostStatus::Published,
            "failed" => PostStatus::Failed,
            _ => return None,
        })
    }
}

/// A part of a multipart upload, as S3 numbers them: 1 to 10000.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct PartNumber(u32);

impl PartNumber {
    /// S3's most parts per upload.
    pub const MAX: u32 = 10_000;

    pub fn parse(n: u32) -> Result<Self, Error> {
        if (1..=Self::MAX).contains(&n) {
            Ok(PartNumber(n))
        } else {
            Err(Error::InvalidRequest(format!(
                "part_number {n} is out of range 1..={}",
                Self::MAX
            )))
        }
    }

    pub fn get(self) -> u32 {
        self.0
    }
}

/// The image formats we accept (one list, in the `imagegram-formats` crate,
/// which the CLI shares), declared by content type at `POST /posts` and
/// decided again from the bytes by the converter.
pub use imagegram_formats::ImageFormat;

/// The format a declared content type names, or the 415 that lists them.
pub fn format_of_content_type(ct: &str) -> Result<ImageFormat, Error> {
    ImageFormat::of_content_type(ct).ok_or_else(|| {
        Error::UnsupportedMediaType(format!(
            "content_type must be {}",
            ImageFormat::content_types()
        ))
    })
}

/// RFC 3339 in UTC with milliseconds, the precision ids carry.
pub fn rfc3339(t: OffsetDateTime) -> String {
    const FMT: &[time::format_description::FormatItem<'static>] = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    t.to_offset(time::UtcOffset::UTC)
        .format(FMT)
        .unwrap_or_default()
}

/// `YYYY-MM-DD HH:MM:SS.mmm` in UTC, the literal form of a `DATETIME(3)`.
pub fn sql_datetime(t: OffsetDateTime) -> String {
    let s = rfc3339(t);
    s.trim_end_matches('Z').replacen('T', " ", 1)
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Comment {
    pub id: CommentId,
    pub post_id: PostId,
    pub author: String,
    pub content: String,
    pub created_at: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Post {
    pub id: PostId,
    pub author: String,
    pub caption: String,
    pub status: PostStatus,
    pub image_url: Option<String>,
    pub created_at: String,
    pub comment_count: u64,
    pub last_comments: Vec<Comment>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure_reason: Option<String>,
    /// The image's ThumbHash (base64), a placeholder to show while it
    /// loads; null until published.
    pub thumbhash: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comment_text_is_trimmed_and_must_not_be_blank() {
        assert_eq!(CommentText::parse("  hi \n").unwrap().as_str(), "hi");
        assert!(CommentText::parse(" \t\n ").is_err());
        assert!(CommentText::parse("").is_err());
    }

    #[test]
    fn comment_text_counts_characters_not_bytes() {
        let emoji = "😀".repeat(1000);
        assert!(CommentText::parse(&emoji).is_ok());
        assert!(CommentText::parse(&format!("{emoji}x")).is_err());
        // Surrounding whitespace does not count towards the limit.
        assert!(CommentText::parse(&format!("   {emoji}   ")).is_ok());
    }

    #[test]
    fn caption_allows_empty_and_up_to_2200_characters() {
        assert!(Caption::parse(String::new()).is_ok());
        assert!(Caption::parse("é".repeat(2200)).is_ok());
        assert!(Caption::parse("é".repeat(2201)).is_err());
    }

    #[test]
    fn limit_defaults_to_20_and_accepts_1_to_100() {
        assert_eq!(Limit::parse(None).unwrap().get(), 20);
        assert_eq!(Limit::parse(Some("1")).unwrap().get(), 1);
        assert_eq!(Limit::parse(Some("100")).unwrap().get(), 100);
        for bad in ["0", "101", "-1", "abc", "", "1.5", "99999999999"] {
            assert!(Limit::parse(Some(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn ids_round_trip_and_reject_other_shapes() {
        let id = PostId::generate();
        assert_eq!(PostId::parse(&id.to_string()), Some(id));
        assert_eq!(id.to_string().len(), 32);
        assert!(PostId::parse("not-an-id").is_none());
        assert!(PostId::parse("' OR 1=1 --").is_none());
        // A v4 UUID is well-formed but never one of ours.
        assert!(PostId::parse("9f1c2a3b4d5e4f60a1b2c3d4e5f60718").is_none());
    }

    #[test]
    fn id_creation_time_is_now() {
        let before = OffsetDateTime::now_utc() - time::Duration::seconds(1);
        let t = CommentId::generate().created_at();
        assert!(t >= before && t <= OffsetDateTime::now_utc() + time::Duration::seconds(1));
        assert!(rfc3339(t).ends_with('Z'));
        assert_eq!(
            rfc3339(OffsetDateTime::UNIX_EPOCH),
            "1970-01-01T00:00:00.000Z"
        );
    }

    #[test]
    fn object_keys_round_trip_to_post_ids() {
        let id = PostId::generate();
        assert_eq!(PostId::from_original_key(&id.original_key()), Some(id));
        assert_eq!(PostId::from_original_key(&id.converted_key()), None);
        assert_eq!(PostId::from_original_key("originals/../etc"), None);
    }

    #[test]
    fn content_types_are_checked() {
        assert_eq!(
            format_of_content_type("image/png").unwrap(),
            ImageFormat::Png
        );
        assert_eq!(
            format_of_content_type("IMAGE/JPEG").unwrap(),
            ImageFormat::Jpeg
        );
        assert!(matches!(
            format_of_content_type("image/gif"),
            Err(Error::UnsupportedMediaType(_))
        ));
    }
}
