// A stock Uppy 5 page of another origin uploading to Imagegram: the five
// @uppy/aws-s3 5.x callbacks over the native upload routes. What README.md's
// "Uploading with Uppy" shows; web/tests/uppy.test.js drives it in Chromium.
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
  const answer = r.status === 204 ? null : await r.json().catch(() => null);
  if (!r.ok) throw new Error(answer?.error?.message ?? `HTTP ${r.status}`);
  return answer;
}

const uppy = new Uppy({
  restrictions: { maxFileSize: 100 * 1024 * 1024, allowedFileTypes: ["image/png", "image/jpeg", "image/bmp"] },
});
// The post (and the server's multipart upload) before Uppy cuts the file
// into parts, so its parts are the server's size.
let partSize = 5 * 1024 * 1024;
uppy.addPreProcessor(async (ids) => {
  for (const id of ids) {
    const file = uppy.getFile(id);
    if (file.meta.postId) continue;
    const { post, upload } = await api(
      "POST",
      "/posts",
      { caption: file.meta.caption ?? "", content_type: file.type, size_bytes: file.size },
      { "Idempotency-Key": file.id.slice(0, 255) },
    );
    partSize = upload.part_size;
    uppy.setFileMeta(id, { postId: post.id, uploadId: upload.upload_id, key: upload.key });
  }
});
const post = (file) => uppy.getFile(file.id).meta.postId;
uppy.use(AwsS3, {
  shouldUseMultipart: true,
  getChunkSize: () => partSize,
  createMultipartUpload: (file) => {
    const { uploadId, key } = uppy.getFile(file.id).meta;
    return { uploadId, key };
  },
  signPart: async (file, { partNumber }) => {
    const { parts } = await api("POST", `/posts/${post(file)}/upload/parts`, { part_numbers: [partNumber] });
    return { url: parts[0].url };
  },
  listParts: async (file) => {
    const state = await api("GET", `/posts/${post(file)}/upload`);
    return state.uploaded_parts.map((p) => ({ PartNumber: p.part_number, ETag: p.etag, Size: p.size }));
  },
  completeMultipartUpload: async (file, { parts }) => {
    const body = { parts: parts.map((p) => ({ part_number: p.PartNumber, etag: p.ETag })) };
    await api("POST", `/posts/${post(file)}/upload/complete`, body);
    return {};
  },
  abortMultipartUpload: (file) => api("DELETE", `/posts/${post(file)}/upload`),
});

window.uppy = uppy;
window.errors = [];
uppy.on("upload-error", (_file, error) => window.errors.push(error.message));
document.getElementById("file").addEventListener("change", async (e) => {
  const file = e.target.files[0];
  uppy.addFile({ name: file.name, type: file.type, data: file, meta: { caption: "Uppy 5" } });
  const result = await uppy.upload();
  window.outcome = { successful: result.successful.length, failed: result.failed.length };
  document.getElementById("status").textContent = result.failed.length ? `failed: ${window.errors.join("; ")}` : "uploaded";
});
