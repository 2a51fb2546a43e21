//! The conversion pipeline.
//!
//! ```text
//! S3 ObjectCreated (originals/) -> conversion queue -> converter
//!     -> converted/<id>.jpg in S3, and a ConversionResult -> results queue
//!     -> finalizer -> MySQL (published | failed)
//! conversion queue --(5 receives)--> dead-letter queue -> finalizer (failed)
//! ```
//!
//! The converter hands its result to the finalizer through a queue of its
//! own rather than writing MySQL itself: the converter then needs no database
//! (no VPC, no connection per conversion, nothing to hold while decoding
//! 100 MiB), results survive a database outage as queued messages, and a
//! permanent failure carries its reason, which an S3 event on the converted
//! prefix could not.

pub mod convert;
pub mod converter;
pub mod finalizer;
pub mod messages;

pub use converter::Converter;
pub use finalizer::Finalizer;
