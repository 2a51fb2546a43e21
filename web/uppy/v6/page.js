// A stock Uppy 6 page of another origin uploading to Imagegram: its
// configuration and a signRequest of one line over POST /uploads/sign.
// What README.md's "Uploading with Uppy" shows; web/tests/uppy.test.js
// drives it in Chromium. Settings come from the query string (the test's).
import Uppy from "@uppy/core";
import AwsS3 from "@uppy/aws-s3";
import { client, postsFirst, testPage } from "../imagegram.js";

const params = new URLSearchParams(location.search);
const api = client(params.get("api"), params.get("token"));

const uppy = new Uppy({
  restrictions: { maxFileSize: 100 * 1024 * 1024, allowedFileTypes: ["image/png", "image/jpeg", "image/bmp"] },
});
const partSize = postsFirst(uppy, api);
uppy.use(AwsS3, {
  shouldUseMultipart: true,
  getChunkSize: partSize,
  // `key` in the query string: the test's way to name another user's post.
  generateObjectKey: (file) => params.get("key") ?? file.meta.key,
  signRequest: (request) => api("POST", "/uploads/sign", request),
});
testPage(uppy, "Uppy 6");
