// A stock Uppy 6 page of another origin uploading to Imagegram: its
// configuration and a signRequest of a few lines over POST /uploads/sign.
// What README.md's "Uploading with Uppy" shows; web/tests/uppy.test.js
// drives it in Chromium. Settings come from the query string (the test's).
import Uppy from "@uppy/core";
import AwsS3 from "@uppy/aws-s3";

const params = new URLSearchParams(location.search);
const API = params.get("api");
const token = params.get("token");

async function api(method, path, body, headers = {}) {
  const r = await fetch(API + path, {
    method,
    headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/json", ...headers },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const answer = await r.json().catch(() => null);
  if (!r.ok) throw new Error(answer?.error?.message ?? `HTTP ${r.status}`);
  return answer;
}

const uppy = new Uppy({
  restrictions: { maxFileSize: 100 * 1024 * 1024, allowedFileTypes: ["image/png", "image/jpeg", "image/bmp"] },
});
// One post per file, before Uppy uploads it; kept in the file's meta, so a
// retry reuses it (and the Idempotency-Key makes a repeat create nothing).
let partSize = 5 * 1024 * 1024;
uppy.addPreProcessor(async (ids) => {
  for (const id of ids) {
    const file = uppy.getFile(id);
    if (file.meta.key) continue;
    const { upload } = await api(
      "POST",
      "/posts",
      { caption: file.meta.caption ?? "", content_type: file.type, size_bytes: file.size },
      { "Idempotency-Key": file.id.slice(0, 255) },
    );
    partSize = upload.part_size;
    uppy.setFileMeta(id, { key: upload.key });
  }
});
uppy.use(AwsS3, {
  shouldUseMultipart: true,
  getChunkSize: () => partSize,
  generateObjectKey: (file) => params.get("key") ?? file.meta.key,
  signRequest: (request) => api("POST", "/uploads/sign", request),
});

// The page's own bit: a file input, and what happened, for the test.
window.uppy = uppy;
window.errors = [];
uppy.on("upload-error", (_file, error) => window.errors.push(error.message));
document.getElementById("file").addEventListener("change", async (e) => {
  const file = e.target.files[0];
  uppy.addFile({ name: file.name, type: file.type, data: file, meta: { caption: "Uppy 6" } });
  const result = await uppy.upload();
  window.outcome = { successful: result.successful.length, failed: result.failed.length };
  document.getElementById("status").textContent = result.failed.length ? `failed: ${window.errors.join("; ")}` : "uploaded";
});
