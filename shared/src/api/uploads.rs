//! The upload half of the API: a post is created with an S3 multipart upload
//! of its original; the client PUTs parts straight to S3 through presigned
//! URLs (resuming part by part), then completes or aborts.

use serde::Serialize;
use time::OffsetDateTime;

use super::App;
use super::ops::views;
use crate::Error;
use crate::domain::{
    Caption, IdempotencyKey, ImageFormat, ImageSize, MAX_IMAGE_BYTES, PartNumber, Post, PostId,
    PostStatus, UserId, rfc3339,
};
use crate::objects::{ObjectStore, UploadRequest, UploadedPart};
use crate::store::{NewPost, PostRecord, Posts};

/// Every part but the last is this big: S3's minimum, so a dropped
/// connection loses at most 5 MiB of a slow upload.
pub const PART_SIZE: u64 = 5 * 1024 * 1024;

#[derive(Debug, Serialize)]
pub struct PartUrl {
    pub part_number: u32,
    pub url: String,
}

#[derive(Debug, Serialize)]
pub struct Upload {
    pub upload_id: String,
    /// The original's S3 key: what a signing client (Uppy 6's
    /// `generateObjectKey`) names in `POST /uploads/sign`.
    pub key: String,
    pub part_size: u64,
    pub part_count: u32,
    /// When these URLs expire.
    pub expires_at: String,
    /// When the upload itself expires: after it, the post is removed.
    pub upload_expires_at: String,
    pub parts: Vec<PartUrl>,
}

#[derive(Debug, Serialize)]
pub struct CreatedPost {
    pub post: Post,
    pub upload: Upload,
}

#[derive(Debug, Serialize)]
pub struct UploadState {
    pub upload_id: String,
    pub part_size: u64,
    pub part_count: u32,
    pub uploaded_parts: Vec<UploadedPart>,
}

#[derive(Debug, Serialize)]
pub struct FreshUrls {
    pub parts: Vec<PartUrl>,
    pub expires_at: String,
}

fn part_count(size: u64, part_size: u64) -> u32 {
    size.div_ceil(part_size) as u32
}

/// The exact size of part `n` (1-based): full, or the remainder for the
/// last one.
fn part_len(n: u32, size: u64, part_size: u64) -> u64 {
    let start = u64::from(n - 1) * part_size;
    part_size.min(size.saturating_sub(start))
}

pub async fn create_post<S: Posts, O: ObjectStore>(
    app: &App<S, O>,
    caller: &UserId,
    caption: Caption,
    format: ImageFormat,
    size: ImageSize,
    idempotency: Option<&IdempotencyKey>,
) -> Result<CreatedPost, Error> {
    let size_bytes = size.get();
    let (open, oldest_deadline) = app.store.open_uploads(caller).await?;
    if open >= u64::from(app.limits.max_open_uploads) {
        // A slot frees when an upload completes, is aborted, or expires;
        // the oldest one's deadline is the latest it can take.
        let wait = oldest_deadline
            .map(|d| (d - OffsetDateTime::now_utc()).whole_seconds())
            .unwrap_or(60)
            .max(1) as u64;
        return Err(Error::TooManyRequests {
            message: format!(
                "at most {} uploads may be open at once; complete or abort one \
                 (DELETE /posts/{{id}}/upload) first",
                app.limits.max_open_uploads
            ),
            retry_after_secs: wait,
        });
    }
    let id = PostId::generate();
    let key = id.original_key();
    let upload_id = app
        .objects
        .create_upload(&key, format.content_type(), size_bytes)
        .await?;
    let new = NewPost {
        id,
        author: caller.clone(),
        caption,
        content_type: format.content_type(),
        size_bytes,
        upload_id: upload_id.clone(),
        part_size: PART_SIZE,
        upload_expires_at: id.created_at() + app.limits.upload_ttl,
    };
    // The answer is made before the post is stored: with an idempotency
    // key, it is stored with the post, in one transaction.
    let record = new.record();
    let count = part_count(size_bytes, PART_SIZE);
    let answer = async {
        let (parts, expires_at) = presign(app, &record, &upload_id, 1..=count).await?;
        let post = views(app, vec![record]).await?.remove(0);
        let created = CreatedPost {
            post,
            upload: Upload {
                upload_id: upload_id.clone(),
                key: key.clone(),
                part_size: PART_SIZE,
                part_count: count,
                expires_at,
                upload_expires_at: rfc3339(new.upload_expires_at),
                parts,
            },
        };
        let recorded = super::ops::answer(caller, idempotency, 201, &created)?;
        app.store.create_post(&new, recorded.as_ref()).await?;
        Ok(created)
    }
    .await;
    if answer.is_err() {
        // No post, no upload: the lifecycle rule would clean it up in a day,
        // but there is no reason to wait.
        let _ = app.objects.abort_upload(&key, &upload_id).await;
    }
    answer
}

pub async fn upload_state<S: Posts, O: ObjectStore>(
    app: &App<S, O>,
    caller: &UserId,
    id: PostId,
) -> Result<UploadState, Error> {
    let (post, upload_id) = open_upload(app, caller, id).await?;
    let uploaded_parts = app
        .objects
        .list_parts(&id.original_key(), &upload_id)
        .await?
        .ok_or_else(|| Error::Conflict("the upload no longer exists".into()))?;
    Ok(UploadState {
        upload_id,
        part_size: post.part_size,
        part_count: part_count(post.size_bytes, post.part_size),
        uploaded_parts,
    })
}

pub async fn fresh_urls<S: Posts, O: ObjectStore>(
    app: &App<S, O>,
    caller: &UserId,
    id: PostId,
    part_numbers: Vec<PartNumber>,
) -> Result<FreshUrls, Error> {
    // 1..=10000 (S3's range) is the type's; within this upload's count here.
    let mut part_numbers: Vec<u32> = part_numbers.into_iter().map(PartNumber::get).collect();
    let (post, upload_id) = open_upload(app, caller, id).await?;
    let count = part_count(post.size_bytes, post.part_size);
    if part_numbers.is_empty() {
        return Err(Error::InvalidRequest(
            "part_numbers must not be empty".into(),
        ));
    }
    if let Some(bad) = part_numbers.iter().find(|n| **n == 0 || **n > count) {
        return Err(Error::InvalidRequest(format!(
            "part {bad} is out of range 1..={count}"
        )));
    }
    part_numbers.sort_unstable();
    part_numbers.dedup();
    let (parts, expires_at) = presign(app, &post, &upload_id, part_numbers).await?;
    Ok(FreshUrls { parts, expires_at })
}

pub async fn complete<S: Posts, O: ObjectStore>(
    app: &App<S, O>,
    caller: &UserId,
    id: PostId,
    client_parts: Option<Vec<(u32, String)>>,
) -> Result<Post, Error> {
    // Safe to retry: once past awaiting_upload, the author gets the post as
    // it stands (a retry after a lost 202, or after the finalizer).
    let post = authors_post(app, caller, id).await?;
    if post.status != PostStatus::AwaitingUpload {
        return Ok(views(app, vec![post]).await?.remove(0));
    }
    let (mut post, upload_id) = open_upload(app, caller, id).await?;
    let key = id.original_key();
    let Some(held) = app.objects.list_parts(&key, &upload_id).await? else {
        // The upload is gone. If S3 holds the original, an earlier complete
        // finished it and lost its answer: the post goes on.
        if app.objects.original_exists(&key).await? {
            return carry_on(app, post).await;
        }
        return Err(Error::Conflict("the upload no longer exists".into()));
    };
    let count = part_count(post.size_bytes, post.part_size);
    // The parts to assemble, with S3's own sizes (a client cannot lie about
    // those). Without a list from the client, whatever S3 holds.
    let mut parts: Vec<(u32, String, u64)> = match client_parts {
        None => held
            .iter()
            .map(|p| (p.part_number, p.etag.clone(), p.size))
            .collect(),
        Some(list) => {
            let mut out = Vec::with_capacity(list.len());
            for (n, etag) in list {
                let part = held.iter().find(|p| p.part_number == n).ok_or_else(|| {
                    Error::InvalidRequest(format!("part {n} has not been uploaded"))
                })?;
                if normalise_etag(&part.etag) != normalise_etag(&etag) {
                    return Err(Error::InvalidRequest(format!(
                        "part {n}: etag does not match the uploaded part"
                    )));
                }
                out.push((n, part.etag.clone(), part.size));
            }
            out
        }
    };
    parts.sort_by_key(|p| p.0);
    parts.dedup_by_key(|p| p.0);
    let total: u64 = parts.iter().map(|p| p.2).sum();
    if total > MAX_IMAGE_BYTES {
        // Too big is final: abort (S3 frees the parts) and say why.
        app.objects.abort_upload(&key, &upload_id).await?;
        let reason = format!(
            "the upload is {total} bytes, over the limit of {MAX_IMAGE_BYTES} bytes (100 MiB)"
        );
        app.store
            .transition(
                id,
                PostStatus::AwaitingUpload,
                PostStatus::Failed,
                Some(&reason),
            )
            .await?;
        return Err(Error::TooLarge(reason));
    }
    if let Some(missing) = (1..=count).find(|n| !parts.iter().any(|p| p.0 == *n)) {
        return Err(not_uploaded(missing, count));
    }
    if let Some(extra) = parts.iter().find(|p| p.0 > count) {
        return Err(Error::InvalidRequest(format!(
            "part {} is out of range 1..={count}",
            extra.0
        )));
    }
    // `processing` before S3 completes, so the object's event finds the
    // post past its upload. A concurrent complete moved it first: answer
    // the post as it stands.
    if !app
        .store
        .transition(id, PostStatus::AwaitingUpload, PostStatus::Processing, None)
        .await?
    {
        let now = authors_post(app, caller, id).await?;
        return Ok(views(app, vec![now]).await?.remove(0));
    }
    let list: Vec<(u32, String)> = parts.into_iter().map(|(n, e, _)| (n, e)).collect();
    if let Err(e) = app.objects.complete_upload(&key, &upload_id, &list).await {
        // Not every failure means S3 did not complete it: a timeout or a
        // lost answer may follow the commit. The original tells.
        match app.objects.original_exists(&key).await {
            Ok(true) => {
                tracing::info!(error = %e, "CompleteMultipartUpload failed, but S3 holds the original");
            }
            answer => {
                if let Err(lookup) = answer {
                    tracing::warn!(error = %lookup, "cannot tell whether S3 completed the upload");
                }
                // Back to awaiting_upload, so the client's retry completes
                // it. Had S3 committed after all, its event still arrives and
                // the finalizer moves the post on from awaiting_upload.
                app.store
                    .transition(id, PostStatus::Processing, PostStatus::AwaitingUpload, None)
                    .await?;
                return Err(e);
            }
        }
    }
    // The record in hand, moved on: the contract answers `processing`, even
    // if the finalizer is already done by now.
    post.status = PostStatus::Processing;
    Ok(views(app, vec![post]).await?.remove(0))
}

/// One S3 request a signing client (Uppy 6's `signRequest`) asks for, as
/// it names them: `{method, key, uploadId?, partNumber?}`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SignRequest {
    Create,
    UploadPart { upload_id: String, part: PartNumber },
    ListParts { upload_id: String },
    Complete { upload_id: String },
    Abort { upload_id: String },
}

impl SignRequest {
    /// Longest upload id taken (S3's are a few hundred characters; the
    /// column holds 1024).
    const MAX_UPLOAD_ID: usize = 1024;

    pub fn parse(
        method: &str,
        upload_id: Option<String>,
        part_number: Option<u32>,
    ) -> Result<Self, Error> {
        if let Some(u) = &upload_id
            && (u.is_empty()
                || u.len() > Self::MAX_UPLOAD_ID
                || !u.bytes().all(|b| b.is_ascii_graphic()))
        {
            return Err(Error::InvalidRequest(format!(
                "uploadId must be 1 to {} printable ASCII characters",
                Self::MAX_UPLOAD_ID
            )));
        }
        let part = part_number.map(PartNumber::parse).transpose()?;
        Ok(match (method, upload_id, part) {
            ("POST", None, None) => SignRequest::Create,
            ("PUT", Some(upload_id), Some(part)) => SignRequest::UploadPart { upload_id, part },
            ("GET", Some(upload_id), None) => SignRequest::ListParts { upload_id },
            ("POST", Some(upload_id), None) => SignRequest::Complete { upload_id },
            ("DELETE", Some(upload_id), None) => SignRequest::Abort { upload_id },
            ("PUT" | "DELETE", None, _) => {
                return Err(Error::Forbidden(
                    "only the requests of a multipart upload are signed (uploads resume \
                     part by part): set Uppy's shouldUseMultipart to true",
                ));
            }
            ("POST" | "PUT" | "GET" | "DELETE", _, _) => {
                return Err(Error::InvalidRequest(
                    "partNumber goes with PUT and an uploadId only; uploadId with PUT, GET, \
                     DELETE, or POST to complete"
                        .into(),
                ));
            }
            _ => {
                return Err(Error::InvalidRequest(
                    "method must be POST, PUT, GET or DELETE".into(),
                ));
            }
        })
    }
}

/// A presigned S3 request, as `signRequest` returns it to Uppy.
#[derive(Debug, Serialize)]
pub struct SignedRequest {
    pub url: String,
    /// The post's original key (Uppy takes it on a create).
    pub key: String,
    /// Headers the signature covers, which the client must send.
    pub headers: std::collections::BTreeMap<String, String>,
    /// When the URL expires.
    pub expires_at: String,
}

/// Signs one S3 request of the upload of the caller's own post, while it
/// awaits its upload (`POST /uploads/sign`).
///
/// A signing client creates its own multipart upload (Uppy 6 always does,
/// and keeps its id for resuming and completing), so the post's upload is
/// the one the client names: the first signed request naming an upload S3
/// holds under the post's key records it, and the upload the post had
/// (the server's, with no parts) is aborted, so two never linger.
pub async fn sign_request<S: Posts, O: ObjectStore>(
    app: &App<S, O>,
    caller: &UserId,
    key: &str,
    request: SignRequest,
    expires_in: Option<u64>,
) -> Result<SignedRequest, Error> {
    let id = PostId::from_original_key(key).ok_or(Error::Forbidden(
        "only the original of the caller's own post is signed: use upload.key from POST /posts",
    ))?;
    let (post, recorded) = open_upload(app, caller, id).await?;
    let now = OffsetDateTime::now_utc();
    let mut ttl = url_ttl(app, &post, now);
    if let Some(asked) = expires_in {
        ttl = ttl.min(std::time::Duration::from_secs(asked.max(1)));
    }
    let count = part_count(post.size_bytes, post.part_size);
    let target = match &request {
        SignRequest::Create => UploadRequest::Create {
            content_type: &post.content_type,
            declared_size: post.size_bytes,
        },
        SignRequest::UploadPart { upload_id, part } => {
            let n = part.get();
            if n > count {
                return Err(Error::InvalidRequest(format!(
                    "part {n} is out of range 1..={count}: the part size is {} bytes \
                     (upload.part_size; Uppy's getChunkSize)",
                    post.part_size
                )));
            }
            adopt(app, &post, &recorded, upload_id).await?;
            UploadRequest::Part {
                upload_id,
                part_number: n,
                size: part_len(n, post.size_bytes, post.part_size),
            }
        }
        SignRequest::ListParts { upload_id } => {
            adopt(app, &post, &recorded, upload_id).await?;
            UploadRequest::ListParts { upload_id }
        }
        SignRequest::Complete { upload_id } => {
            // The parts adopting it listed, or (the post's own) a listing.
            let held = match adopt(app, &post, &recorded, upload_id).await? {
                Some(held) => held,
                None => app
                    .objects
                    .list_parts(key, upload_id)
                    .await?
                    .ok_or_else(no_such_upload)?,
            };
            // What `complete` checks, before S3 is asked: every part, each
            // of its size. The object's declared size is checked again by
            // the converter, whatever list the client sends S3.
            for n in 1..=count {
                let expected = part_len(n, post.size_bytes, post.part_size);
                match held.iter().find(|p| p.part_number == n) {
                    None => return Err(not_uploaded(n, count)),
                    Some(p) if p.size != expected => {
                        return Err(Error::InvalidRequest(format!(
                            "part {n} holds {} bytes, not {expected}: parts are {} bytes \
                             (upload.part_size; Uppy's getChunkSize)",
                            p.size, post.part_size
                        )));
                    }
                    Some(_) => {}
                }
            }
            UploadRequest::Complete { upload_id }
        }
        // Any upload under the key may be aborted: all are the post's.
        SignRequest::Abort { upload_id } => UploadRequest::Abort { upload_id },
    };
    let signed = app.objects.presign(key, &target, ttl).await?;
    Ok(SignedRequest {
        url: signed.url,
        key: key.to_owned(),
        headers: signed.headers.into_iter().collect(),
        expires_at: rfc3339(now + ttl),
    })
}

/// The 409 of a complete that a part is still missing from.
fn not_uploaded(part: u32, count: u32) -> Error {
    Error::Conflict(format!("part {part} of {count} has not been uploaded yet"))
}

fn no_such_upload() -> Error {
    Error::Conflict("S3 holds no such upload of this post".into())
}

/// Makes `upload_id` the post's upload if it is not yet (see
/// [`sign_request`]), and returns the parts S3 holds in it, which adopting
/// lists. An id that S3 does not hold under the post's key is a 409; the
/// post's own is signed without asking S3 (`None`: S3 refuses the request
/// itself if the upload is gone).
async fn adopt<S: Posts, O: ObjectStore>(
    app: &App<S, O>,
    post: &PostRecord,
    recorded: &str,
    upload_id: &str,
) -> Result<Option<Vec<UploadedPart>>, Error> {
    if upload_id == recorded {
        return Ok(None);
    }
    let key = post.id.original_key();
    let held = app
        .objects
        .list_parts(&key, upload_id)
        .await?
        .ok_or_else(no_such_upload)?;
    if app
        .store
        .replace_upload(post.id, recorded, upload_id)
        .await?
    {
        tracing::info!(post_id = %post.id, "the client's own multipart upload replaces the post's");
        // Best effort: S3's lifecycle rule aborts what this misses.
        if let Err(e) = app.objects.abort_upload(&key, recorded).await {
            tracing::warn!(error = %e, "the replaced upload was not aborted");
        }
        return Ok(Some(held));
    }
    // Someone else changed it first: fine if to this very upload.
    match app.store.post(post.id).await? {
        Some(now) if now.upload_id.as_deref() == Some(upload_id) => Ok(Some(held)),
        _ => Err(Error::Conflict(
            "the post's upload changed meanwhile: start the upload again".into(),
        )),
    }
}

/// A post whose upload S3 completed without this request knowing: on to
/// `processing` (unless it moved on already), answered as it stands.
async fn carry_on<S: Posts, O: ObjectStore>(
    app: &App<S, O>,
    mut post: PostRecord,
) -> Result<Post, Error> {
    if app
        .store
        .transition(
            post.id,
            PostStatus::AwaitingUpload,
            PostStatus::Processing,
            None,
        )
        .await?
    {
        post.status = PostStatus::Processing;
    } else if let Some(now) = app.store.post(post.id).await? {
        post = now;
    }
    Ok(views(app, vec![post]).await?.remove(0))
}

pub async fn abort<S: Posts, O: ObjectStore>(
    app: &App<S, O>,
    caller: &UserId,
    id: PostId,
) -> Result<(), Error> {
    let (_, upload_id) = open_upload(app, caller, id).await?;
    // The row first, conditionally: if a completion won the race, the post
    // stays and its upload with it.
    if !app.store.delete_unpublished(id).await? {
        return Err(Error::Conflict(
            "the upload is already being completed".into(),
        ));
    }
    app.objects
        .abort_upload(&id.original_key(), &upload_id)
        .await
}

/// The post, if the caller is its author.
async fn authors_post<S: Posts, O: ObjectStore>(
    app: &App<S, O>,
    caller: &UserId,
    id: PostId,
) -> Result<PostRecord, Error> {
    let post = app
        .store
        .post(id)
        .await?
        .ok_or(Error::NotFound("no such post"))?;
    if post.author != caller.as_str() {
        return Err(Error::Forbidden(
            "only the author of a post may touch its upload",
        ));
    }
    Ok(post)
}

/// The post and its open upload, if the caller is its author and it still
/// awaits its upload.
async fn open_upload<S: Posts, O: ObjectStore>(
    app: &App<S, O>,
    caller: &UserId,
    id: PostId,
) -> Result<(PostRecord, String), Error> {
    let post = authors_post(app, caller, id).await?;
    match (post.status, post.upload_id.clone()) {
        (PostStatus::AwaitingUpload, _) if expired(&post) => Err(Error::Conflict(format!(
            "the upload expired at {}; create the post again",
            post.upload_expires_at.map(rfc3339).unwrap_or_default()
        ))),
        (PostStatus::AwaitingUpload, Some(upload_id)) => Ok((post, upload_id)),
        (status, _) => Err(Error::Conflict(format!(
            "the post is {}; its upload is closed",
            status.as_str()
        ))),
    }
}

fn expired(post: &PostRecord) -> bool {
    post.upload_expires_at
        .is_some_and(|d| d <= OffsetDateTime::now_utc())
}

/// URLs for these parts, each signed for its exact size, none outliving the
/// upload's deadline.
async fn presign<S: Posts, O: ObjectStore>(
    app: &App<S, O>,
    post: &PostRecord,
    upload_id: &str,
    numbers: impl IntoIterator<Item = u32>,
) -> Result<(Vec<PartUrl>, String), Error> {
    let now = OffsetDateTime::now_utc();
    let ttl = url_ttl(app, post, now);
    let key = post.id.original_key();
    let mut parts = Vec::new();
    for part_number in numbers {
        let size = part_len(part_number, post.size_bytes, post.part_size);
        parts.push(PartUrl {
            part_number,
            url: app
                .objects
                .presign(
                    &key,
                    &UploadRequest::Part {
                        upload_id,
                        part_number,
                        size,
                    },
                    ttl,
                )
                .await?
                .url,
        });
    }
    Ok((parts, rfc3339(now + ttl)))
}

/// How long a URL for this post's upload lives: the presigning TTL, never
/// past the upload's deadline.
fn url_ttl<S: Posts, O: ObjectStore>(
    app: &App<S, O>,
    post: &PostRecord,
    now: OffsetDateTime,
) -> std::time::Duration {
    let mut ttl = app.objects.presign_ttl();
    if let Some(deadline) = post.upload_expires_at {
        let left = (deadline - now).whole_seconds().max(1) as u64;
        ttl = ttl.min(std::time::Duration::from_secs(left));
    }
    ttl
}

/// ETags arrive with or without their quotes depending on the client.
fn normalise_etag(e: &str) -> &str {
    e.trim().trim_matches('"')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn part_count_rounds_up() {
        assert_eq!(part_count(1, PART_SIZE), 1);
        assert_eq!(part_count(PART_SIZE, PART_SIZE), 1);
        assert_eq!(part_count(PART_SIZE + 1, PART_SIZE), 2);
        assert_eq!(part_count(MAX_IMAGE_BYTES, PART_SIZE), 20);
    }

    #[test]
    fn each_part_is_signed_for_its_own_size() {
        let size = 2 * PART_SIZE + 7;
        assert_eq!(part_len(1, size, PART_SIZE), PART_SIZE);
        assert_eq!(part_len(2, size, PART_SIZE), PART_SIZE);
        assert_eq!(part_len(3, size, PART_SIZE), 7);
        assert_eq!(part_len(1, 1, PART_SIZE), 1);
        assert_eq!(part_len(1, PART_SIZE, PART_SIZE), PART_SIZE);
    }

    #[test]
    fn etags_compare_without_quotes() {
        assert_eq!(normalise_etag("\"abc\""), normalise_etag("abc"));
    }
}
