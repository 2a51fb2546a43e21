// Stock Uppy pages of another origin (the npm packages as users install
// them, pinned in web/uppy/v5 and web/uppy/v6) uploading to a running local
// stack, in Debian's Chromium. Run by scripts/test with the environment
// e2e.test.js names, and DB_SQL: a command that runs SQL in the test
// stack's database (to move an upload's deadline).

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { execFileSync } from "node:child_process";
import { createServer } from "node:http";
import { readFileSync, writeFileSync, mkdirSync } from "node:fs";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { launchChromium, devToken, callApi } from "./browser.js";

const { WEB, API, S3, BUCKET, BIG_JPEG, DB_SQL } = process.env;
const ARTIFACTS = process.env.ARTIFACTS ?? "target/web";
for (const [k, v] of Object.entries({ WEB, API, S3, BUCKET, BIG_JPEG, DB_SQL })) {
  if (!v) throw new Error(`${k} is not set: run through scripts/test`);
}
mkdirSync(ARTIFACTS, { recursive: true });
const UPPY = join(dirname(fileURLToPath(import.meta.url)), "..", "uppy");

let browser;
let server;
let ORIGIN;

before(async () => {
  // The pages' own origin: neither the API's nor S3's.
  server = createServer((req, res) => {
    const url = new URL(req.url, "http://x");
    const bundle = { "/v5.html": "v5.js", "/v6.html": "v6.js" }[url.pathname];
    if (bundle) {
      res.writeHead(200, { "Content-Type": "text/html" });
      res.end(readFileSync(join(UPPY, "page.html"), "utf8").replace("BUNDLE", `/${bundle}`));
    } else if (["/v5.js", "/v6.js"].includes(url.pathname)) {
      res.writeHead(200, { "Content-Type": "text/javascript" });
      res.end(readFileSync(join(UPPY, "dist", url.pathname.slice(1))));
    } else {
      res.writeHead(404).end();
    }
  });
  await new Promise((ok) => server.listen(0, "127.0.0.1", ok));
  ORIGIN = `http://127.0.0.1:${server.address().port}`;
  browser = await launchChromium();
});

after(async () => {
  await browser?.close();
  server?.close();
});

const token = (user) => devToken(WEB, user);

const apiCall = (user, method, path, body) => callApi(WEB, API, user, method, path, body);

const md5 = (bytes) => createHash("md5").update(bytes).digest("hex");

async function originalMd5(key) {
  const r = await fetch(`${S3}/${BUCKET}/${key}`);
  assert.equal(r.status, 200, `GET ${key} from S3`);
  return md5(Buffer.from(await r.arrayBuffer()));
}

async function waitFinal(user, id) {
  for (let i = 0; i < 600; i++) {
    const r = await apiCall(user, "GET", `/posts/${id}`);
    assert.equal(r.status, 200, JSON.stringify(r.body));
    if (["published", "failed"].includes(r.body.status)) return r.body;
    await new Promise((s) => setTimeout(s, 200));
  }
  throw new Error(`post ${id} never settled`);
}

/**
 * Opens a stock Uppy page (`v5` or `v6`) as `user`, logging every request it
 * makes to the API and to S3 with how each was answered.
 */
async function uppyPage(version, user, extra = {}) {
  const context = await browser.newContext();
  const page = await context.newPage();
  page.on("pageerror", (e) => console.error(`page error: ${e.message}`));
  const log = [];
  page.on("requestfinished", async (request) => {
    const response = await request.response();
    log.push(describe(request, response?.status()));
  });
  page.on("requestfailed", (request) => log.push(describe(request, request.failure()?.errorText)));
  const params = new URLSearchParams({ api: API, token: await token(user), ...extra });
  await page.goto(`${ORIGIN}/${version}.html?${params}`);
  return { context, page, log };
}

/** One line for a request: who it went to, what it was, how it ended. */
function describe(request, answer) {
  const url = new URL(request.url());
  const method = request.method();
  if (url.origin === ORIGIN) return null;
  if (url.href.startsWith(API)) {
    let what = `${method} ${url.pathname}`;
    if (url.pathname === "/uploads/sign" && method === "POST") {
      const r = JSON.parse(request.postData() ?? "{}");
      what += ` {method: ${r.method}${r.uploadId ? ", uploadId" : ""}${r.partNumber ? `, partNumber: ${r.partNumber}` : ""}}`;
    }
    return `API ${what} -> ${answer}`;
  }
  const q = url.searchParams;
  const kind = q.has("uploads")
    ? "CreateMultipartUpload"
    : q.has("partNumber")
      ? `UploadPart ${q.get("partNumber")}`
      : q.has("uploadId")
        ? { GET: "ListParts", POST: "CompleteMultipartUpload", DELETE: "AbortMultipartUpload" }[method]
        : `${method} object`;
  return `S3 ${method} ${kind} -> ${answer}`;
}

const requests = (log) => log.filter(Boolean);

async function waitOutcome(page, timeout = 180_000) {
  await page.waitForFunction(() => window.outcome !== undefined, null, { timeout });
  return page.evaluate(() => ({ ...window.outcome, errors: window.errors }));
}

test("Uppy 6 with signRequest: a 30 MB JPEG is published, byte-identical in S3", async () => {
  const { context, page, log } = await uppyPage("v6", "uppy6-alice");
  const created = page.waitForResponse((r) => r.url() === `${API}/posts` && r.request().method() === "POST");
  await page.setInputFiles("#file", BIG_JPEG);
  const { post } = await (await created).json();
  const outcome = await waitOutcome(page);
  assert.deepEqual(outcome, { successful: 1, failed: 0, errors: [] });
  const done = await waitFinal("uppy6-alice", post.id);
  assert.equal(done.status, "published", JSON.stringify(done));
  assert.equal(await originalMd5(`originals/${post.id}`), md5(readFileSync(BIG_JPEG)), "byte-identical in S3");

  const lines = requests(log);
  writeFileSync(join(ARTIFACTS, "uppy6-requests.txt"), lines.join("\n") + "\n");
  console.log(`Uppy 6.3.1's requests:\n  ${lines.join("\n  ")}`);
  // Every S3 request was signed by the route first, and each part went
  // once: create, parts 1..6 in order, complete.
  const s3 = lines.filter((l) => l.startsWith("S3"));
  const parts = Math.ceil(readFileSync(BIG_JPEG).length / (5 * 1024 * 1024));
  assert.deepEqual(s3, [
    "S3 POST CreateMultipartUpload -> 200",
    ...Array.from({ length: parts }, (_, i) => `S3 PUT UploadPart ${i + 1} -> 200`),
    "S3 POST CompleteMultipartUpload -> 200",
  ]);
  assert.equal(lines.filter((l) => l.startsWith("API POST /uploads/sign") && l.endsWith("-> 200")).length, s3.length);
  await context.close();
});

test("Uppy 6: S3 refused for a few seconds mid-upload, retried, resumes from its parts and completes", async () => {
  const { context, page, log } = await uppyPage("v6", "uppy6-bob");
  let refuseUntil = 0;
  await page.route(`${S3}/**`, async (route) => {
    const url = new URL(route.request().url());
    if (url.searchParams.get("partNumber") === "3" && refuseUntil === 0) refuseUntil = Date.now() + 6000;
    if (Date.now() < refuseUntil) return route.abort("connectionrefused");
    return route.continue();
  });
  const created = page.waitForResponse((r) => r.url() === `${API}/posts` && r.request().method() === "POST");
  await page.setInputFiles("#file", BIG_JPEG);
  const { post } = await (await created).json();
  // Uppy 6 retries an S3 request 3 times within about a second, then
  // gives the file up: the upload errors, it does not hang.
  await page.waitForFunction(() => window.errors.length > 0, null, { timeout: 60_000 });
  assert.ok(Date.now() < refuseUntil, "Uppy gave up while S3 still refused");
  // What a user's "Retry" does (Dashboard's button), once S3 answers again.
  await new Promise((s) => setTimeout(s, refuseUntil - Date.now() + 200));
  await page.evaluate(() => {
    window.outcome = undefined;
    window.uppy.retryAll().then((r) => (window.outcome = { successful: r.successful.length, failed: r.failed.length }));
  });
  const outcome = await waitOutcome(page);
  assert.equal(outcome.successful, 1, JSON.stringify(outcome));
  const done = await waitFinal("uppy6-bob", post.id);
  assert.equal(done.status, "published", JSON.stringify(done));
  assert.equal(await originalMd5(`originals/${post.id}`), md5(readFileSync(BIG_JPEG)));
  const lines = requests(log);
  writeFileSync(join(ARTIFACTS, "uppy6-refused-requests.txt"), lines.join("\n") + "\n");
  // The retry listed the parts S3 had and sent only the rest: parts 1 and
  // 2 went once, and one upload was created.
  const sent = (n) => lines.filter((l) => l === `S3 PUT UploadPart ${n} -> 200`).length;
  assert.equal(sent(1), 1, lines.join("\n"));
  assert.equal(sent(2), 1, lines.join("\n"));
  assert.equal(lines.filter((l) => l.startsWith("S3 POST CreateMultipartUpload")).length, 1);
  assert.ok(lines.includes("S3 GET ListParts -> 200"), lines.join("\n"));
  await context.close();
});

test("Uppy 6: another user's post is refused at signing and Uppy shows the error", async () => {
  const theirs = await apiCall("uppy6-carol", "POST", "/posts", { caption: "", content_type: "image/jpeg", size_bytes: readFileSync(BIG_JPEG).length });
  assert.equal(theirs.status, 201);
  const { context, page, log } = await uppyPage("v6", "uppy6-mallory", { key: theirs.body.upload.key });
  await page.setInputFiles("#file", BIG_JPEG);
  const outcome = await waitOutcome(page, 60_000);
  assert.equal(outcome.failed, 1, JSON.stringify(outcome));
  assert.match(outcome.errors.join(" "), /only the author/);
  await page.locator("#status", { hasText: "failed" }).waitFor();
  const lines = requests(log);
  assert.ok(lines.includes("API POST /uploads/sign {method: POST} -> 403"), lines.join("\n"));
  assert.equal(lines.filter((l) => l.startsWith("S3")).length, 0, "nothing reached S3");
  const still = await apiCall("uppy6-carol", "GET", `/posts/${theirs.body.post.id}/upload`);
  assert.equal(still.body.upload_id, theirs.body.upload.upload_id, "carol's upload untouched");
  await context.close();
});

test("Uppy 6: an upload past its deadline ends with Uppy showing an error, not a hang", async () => {
  const { context, page, log } = await uppyPage("v6", "uppy6-dave");
  // Hold the page's first signing until the post's deadline has passed.
  let release;
  const expired = new Promise((ok) => (release = ok));
  await page.route(`${API}/uploads/sign`, async (route) => {
    await expired;
    return route.continue();
  });
  const created = page.waitForResponse((r) => r.url() === `${API}/posts` && r.request().method() === "POST");
  await page.setInputFiles("#file", BIG_JPEG);
  const { post } = await (await created).json();
  execFileSync("sh", ["-c", `${DB_SQL} -e "UPDATE posts SET upload_expires_at = NOW(3) - INTERVAL 1 SECOND WHERE id = UNHEX('${post.id}')"`]);
  release();
  const started = Date.now();
  const outcome = await waitOutcome(page, 60_000);
  assert.equal(outcome.failed, 1, JSON.stringify(outcome));
  assert.match(outcome.errors.join(" "), /expired/);
  assert.ok(Date.now() - started < 30_000, "an error, at once");
  const lines = requests(log);
  assert.ok(lines.includes("API POST /uploads/sign {method: POST} -> 409"), lines.join("\n"));
  await context.close();
});

test("Uppy 5 with the five callbacks over the native routes: a 30 MB JPEG is published, byte-identical", async () => {
  const { context, page, log } = await uppyPage("v5", "uppy5-erin");
  const created = page.waitForResponse((r) => r.url() === `${API}/posts` && r.request().method() === "POST");
  await page.setInputFiles("#file", BIG_JPEG);
  const { post } = await (await created).json();
  const outcome = await waitOutcome(page);
  assert.deepEqual(outcome, { successful: 1, failed: 0, errors: [] });
  const done = await waitFinal("uppy5-erin", post.id);
  assert.equal(done.status, "published", JSON.stringify(done));
  assert.equal(await originalMd5(`originals/${post.id}`), md5(readFileSync(BIG_JPEG)));
  const lines = requests(log);
  writeFileSync(join(ARTIFACTS, "uppy5-requests.txt"), lines.join("\n") + "\n");
  assert.ok(lines.includes(`API POST /posts/${post.id}/upload/complete -> 202`), lines.join("\n"));
  assert.equal(lines.filter((l) => l.startsWith("S3 POST")).length, 0, "the server created and completed the upload");
  await context.close();
});
