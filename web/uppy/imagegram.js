// What both Uppy pages share: calling the API with the bearer token, and
// making each file's post before Uppy uploads it (with an Idempotency-Key
// of its own, so a retry makes nothing twice), with the server's part size
// for Uppy's getChunkSize.

/** A fetch of the API that throws the error body's message. */
export function client(api, token) {
  return async function call(method, path, body, headers = {}) {
    const r = await fetch(api + path, {
      method,
      headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/json", ...headers },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const answer = r.status === 204 ? null : await r.json().catch(() => null);
    if (!r.ok) throw new Error(answer?.error?.message ?? `HTTP ${r.status}`);
    return answer;
  };
}

/**
 * Makes each file's post in a preprocessor (once per file: kept in its meta
 * as postId, uploadId and key). Returns a getter of the server's part size.
 */
export function postsFirst(uppy, call) {
  let partSize = 5 * 1024 * 1024;
  uppy.addPreProcessor(async (ids) => {
    for (const id of ids) {
      const file = uppy.getFile(id);
      if (file.meta.key) continue;
      // A key of this file's own, kept before the create is sent: a retry
      // sends the same; the same photo posted again later is a new post.
      const createKey = file.meta.createKey ?? crypto.randomUUID();
      uppy.setFileMeta(id, { createKey });
      const { post, upload } = await call(
        "POST",
        "/posts",
        { caption: file.meta.caption ?? "", content_type: file.type, size_bytes: file.size },
        { "Idempotency-Key": createKey },
      );
      partSize = upload.part_size;
      uppy.setFileMeta(id, { postId: post.id, uploadId: upload.upload_id, key: upload.key });
    }
  });
  return () => partSize;
}

/** The test page's own bit: a file input, and what happened, for the test. */
export function testPage(uppy, caption) {
  window.uppy = uppy;
  window.errors = [];
  uppy.on("upload-error", (_file, error) => window.errors.push(error.message));
  document.getElementById("file").addEventListener("change", async (e) => {
    const file = e.target.files[0];
    uppy.addFile({ name: file.name, type: file.type, data: file, meta: { caption } });
    const result = await uppy.upload();
    window.outcome = { successful: result.successful.length, failed: result.failed.length };
    document.getElementById("status").textContent = result.failed.length ? `failed: ${window.errors.join("; ")}` : "uploaded";
  });
}
