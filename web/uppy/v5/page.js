// A stock Uppy 5 page of another origin uploading to Imagegram: the five
// @uppy/aws-s3 5.x callbacks over the native upload routes. What README.md's
// "Uploading with Uppy" shows; web/tests/uppy.test.js drives it in Chromium.
import Uppy from "@uppy/core";
import AwsS3 from "@uppy/aws-s3";
import { client, postsFirst, testPage } from "../imagegram.js";

const params = new URLSearchParams(location.search);
const api = client(params.get("api"), params.get("token"));

const uppy = new Uppy({
  restrictions: { maxFileSize: 100 * 1024 * 1024, allowedFileTypes: ["image/png", "image/jpeg", "image/bmp"] },
});
const partSize = postsFirst(uppy, api);
const post = (file) => uppy.getFile(file.id).meta.postId;
uppy.use(AwsS3, {
  shouldUseMultipart: true,
  getChunkSize: partSize,
  createMultipartUpload: (file) => {
    const { uploadId, key } = uppy.getFile(file.id).meta;
    return { uploadId, key };
  },
  signPart: async (file, { partNumber }) => {
    const { parts } = await api("POST", `/posts/${post(file)}/upload/parts`, { part_numbers: [partNumber] });
    return { url: parts[0].url };
  },
  listParts: async (file) =>
    (await api("GET", `/posts/${post(file)}/upload`)).uploaded_parts.map((p) => ({
      PartNumber: p.part_number,
      ETag: p.etag,
      Size: p.size,
    })),
  completeMultipartUpload: async (file, { parts }) => {
    const body = { parts: parts.map((p) => ({ part_number: p.PartNumber, etag: p.ETag })) };
    await api("POST", `/posts/${post(file)}/upload/complete`, body);
    return {};
  },
  abortMultipartUpload: (file) => api("DELETE", `/posts/${post(file)}/upload`),
});
testPage(uppy, "Uppy 5");
