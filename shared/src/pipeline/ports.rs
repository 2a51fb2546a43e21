//! What the pipeline's functions need from the outside, one small trait per
//! capability; `objects::S3Objects` and `queue::SqsQueue` are the adapters.

use std::future::Future;
use std::io::Read;

use super::messages::ConversionResult;
use crate::Error;

/// An original as the converter sees it before reading it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectHead {
    pub size: u64,
    pub etag: String,
    /// The size its post declared, where the upload's create recorded it
    /// (`objects::DECLARED_SIZE`).
    pub declared_size: Option<u64>,
}

/// Where the uploaded originals are.
pub trait Originals: Send + Sync + 'static {
    /// Size and ETag, or `None` when there is no such object.
    fn head(&self, key: &str) -> impl Future<Output = Result<Option<ObjectHead>, Error>> + Send;

    /// The original's bytes as they download, for a decoder reading on a
    /// blocking thread; pinned to `etag` (the version that was checked).
    fn open(
        &self,
        key: &str,
        etag: &str,
    ) -> impl Future<Output = Result<Box<dyn Read + Send>, Error>> + Send;
}

/// What a converted image remembers of its making.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Provenance {
    /// The ETag of the original it was made from.
    pub source_etag: String,
    /// Its ThumbHash (base64), where it was stored with it.
    pub thumbhash: Option<String>,
}

/// Where converted images go.
pub trait ConvertedImages: Send + Sync + 'static {
    /// What the image at `key` was made from, if it exists: a repeated
    /// event (or the sweeper) finds the work done, and its placeholder.
    fn source_of(
        &self,
        key: &str,
    ) -> impl Future<Output = Result<Option<Provenance>, Error>> + Send;

    /// Stores the JPEG, remembering its original's ETag and its ThumbHash.
    fn store(
        &self,
        key: &str,
        jpeg: Vec<u8>,
        made: &Provenance,
    ) -> impl Future<Output = Result<(), Error>> + Send;
}

/// Where results go: the finalizer's queue.
pub trait Results: Send + Sync + 'static {
    fn send(&self, result: &ConversionResult) -> impl Future<Output = Result<(), Error>> + Send;
}

/// Where conversions are requested: the conversion queue, which the
/// sweeper feeds again for a post stuck in `processing`.
pub trait Conversions: Send + Sync + 'static {
    /// Asks for the original at `key` (of `bucket`) to be converted, as its
    /// S3 event would.
    fn request(&self, bucket: &str, key: &str) -> impl Future<Output = Result<(), Error>> + Send;
}
