// The web client in a real Chromium (Debian's, driven by playwright-core)
// against a running local stack. Run by scripts/test with:
//   WEB      the page's origin (the local stack's web server)
//   API      the API (to look behind the page's back)
//   S3       moto's endpoint, BUCKET the stack's bucket (to read originals)
//   BIG_JPEG a ~30 MB 6000x4000 JPEG
//   ARTIFACTS where screenshots go

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { readFileSync, writeFileSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { launchChromium, devToken, callApi } from "./browser.js";

const { WEB, API, S3, BUCKET, BIG_JPEG } = process.env;
const ARTIFACTS = process.env.ARTIFACTS ?? "target/web";
for (const [k, v] of Object.entries({ WEB, API, S3, BUCKET, BIG_JPEG })) {
  if (!v) throw new Error(`${k} is not set: run through scripts/test`);
}
mkdirSync(ARTIFACTS, { recursive: true });

let browser;

before(async () => {
  browser = await launchChromium();
});

after(async () => {
  await browser?.close();
});

const token = (user) => devToken(WEB, user);

/** A page signed in as `user` through the "Mint a dev token" button. */
async function signedIn(user) {
  const context = await browser.newContext({ viewport: { width: 1000, height: 900 } });
  const page = await context.newPage();
  page.on("pageerror", (e) => console.error(`page error: ${e.message}`));
  await page.goto(WEB);
  await page.getByLabel("Local user").fill(user);
  await page.getByRole("button", { name: "Mint a dev token" }).click();
  await page.getByText(`Signed in as ${user}`).waitFor();
  return { context, page };
}

const apiCall = (user, method, path, body) => callApi(WEB, API, user, method, path, body);

/** MD5 of the original S3 holds for a post (moto answers unsigned GETs). */
async function originalMd5(postId) {
  const r = await fetch(`${S3}/${BUCKET}/originals/${postId}`);
  assert.equal(r.status, 200);
  return createHash("md5").update(Buffer.from(await r.arrayBuffer())).digest("hex");
}

const fileMd5 = (path) => createHash("md5").update(readFileSync(path)).digest("hex");

async function waitForStatus(page, text, timeout = 180_000) {
  await page.locator("#status", { hasText: text }).waitFor({ timeout });
}

async function newestPostOf(user) {
  // The post the page created: the author's, found through the feed or by
  // the upload state the page keeps.
  for (let i = 0; i < 50; i++) {
    const r = await apiCall(user, "GET", "/posts?limit=100");
    const mine = r.body.posts.filter((p) => p.author === user);
    if (mine.length) return mine.sort((a, b) => (a.id < b.id ? 1 : -1))[0];
    await new Promise((s) => setTimeout(s, 500));
  }
  throw new Error(`no post of ${user}`);
}

test("a 30 MB photo is posted through the page and appears in the feed at 600x600", async () => {
  const { context, page } = await signedIn("web-alice");
  // The served image arrives slowly, so its placeholder shows first.
  let slowImage = true;
  await page.route(/\/converted\//, async (route) => {
    if (slowImage) await new Promise((r) => setTimeout(r, 2000));
    return route.continue().catch(() => {});
  });
  await page.setInputFiles("#file", BIG_JPEG);
  await page.getByLabel("Caption").fill("From the browser");
  await page.getByRole("button", { name: "Post" }).click();
  // The progress bar moves.
  await page.waitForFunction(() => document.getElementById("progress").value > 0);
  await page.waitForFunction(() => {
    const p = document.getElementById("progress");
    return p.value > p.max * 0.2;
  }, null, { timeout: 120_000 });
  await page.screenshot({ path: join(ARTIFACTS, "upload-in-progress.png"), fullPage: true });
  await waitForStatus(page, "Published.");
  const img = page.locator("#result img");
  await img.waitFor();
  // While the JPEG loads: the post's ThumbHash as the image's background.
  const placeholder = await img.evaluate((i) => [i.dataset.placeholder, i.complete, i.style.backgroundImage]);
  assert.equal(placeholder[0], "thumbhash");
  assert.equal(placeholder[1], false, "still loading");
  assert.match(placeholder[2], /^url\("data:image\/png;base64,/);
  slowImage = false;
  const size = await img.evaluate((i) => new Promise((ok) => (i.complete ? ok([i.naturalWidth, i.naturalHeight]) : (i.onload = () => ok([i.naturalWidth, i.naturalHeight])))));
  assert.deepEqual(size, [600, 600]);
  assert.equal(await img.evaluate((i) => i.style.backgroundImage), "", "the placeholder goes once loaded");
  const post = await newestPostOf("web-alice");
  assert.ok(post.thumbhash, "a published post has its thumbhash");
  assert.equal(post.caption, "From the browser");
  await page.locator(`#posts li[data-id="${post.id}"] img`).waitFor();
  assert.equal(await originalMd5(post.id), fileMd5(BIG_JPEG), "byte-identical in S3");
  await page.screenshot({ path: join(ARTIFACTS, "feed.png"), fullPage: true });
  await context.close();
});

test("S3 unreachable for a few seconds mid-upload: parts are retried and the upload completes", async () => {
  const { context, page } = await signedIn("web-bob");
  let blocked = false;
  let puts = 0;
  let refused = 0;
  await page.route(/\/originals\//, async (route) => {
    if (route.request().method() !== "PUT") return route.continue();
    puts++;
    if (puts === 3) {
      blocked = true;
      setTimeout(() => (blocked = false), 4000);
    }
    if (blocked) {
      refused++;
      return route.abort("connectionreset");
    }
    return route.continue();
  });
  await page.setInputFiles("#file", BIG_JPEG);
  await page.getByRole("button", { name: "Post" }).click();
  await waitForStatus(page, "Published.");
  assert.ok(refused > 0, "some PUTs were refused");
  const post = await newestPostOf("web-bob");
  assert.equal(await originalMd5(post.id), fileMd5(BIG_JPEG));
  console.log(`S3 blocked 4 s: ${puts} PUT attempts, ${refused} refused, published`);
  await context.close();
});

test("reloaded mid-upload, the same file picked again sends only the parts S3 lacks", async () => {
  const { context, page } = await signedIn("web-carol");
  // Parts 1 and 2 go through; the others are held until the reload, so it
  // always lands in the middle (whatever the machine's speed).
  let release;
  const released = new Promise((r) => (release = r));
  await page.route(/\/originals\//, async (route) => {
    const part = Number(new URL(route.request().url()).searchParams.get("partNumber"));
    if (route.request().method() === "PUT" && part > 2) await released;
    // The page may have been reloaded meanwhile: the request is gone.
    return route.continue().catch(() => {});
  });
  await page.setInputFiles("#file", BIG_JPEG);
  await page.getByRole("button", { name: "Post" }).click();
  const saved = () => page.evaluate(() => JSON.parse(localStorage.getItem("imagegram.upload")));
  let state = null;
  let held = 0;
  for (let i = 0; i < 200 && held < 2; i++) {
    await new Promise((r) => setTimeout(r, 250));
    state = await saved();
    if (state?.postId) {
      const r = await apiCall("web-carol", "GET", `/posts/${state.postId}/upload`);
      held = r.body.uploaded_parts?.length ?? 0;
    }
  }
  assert.ok(held >= 2, "two parts in S3 before the reload");
  await page.reload();
  release();
  await page.unroute(/\/originals\//);
  await page.getByText("was interrupted").waitFor();
  // What S3 holds now (a part in flight may have landed).
  const before = (await apiCall("web-carol", "GET", `/posts/${state.postId}/upload`)).body;
  assert.ok(before.uploaded_parts, `the upload after the reload: ${JSON.stringify(before)}`);
  const partCount = before.part_count;
  const heldNow = before.uploaded_parts.length;
  let puts = 0;
  page.on("request", (r) => {
    if (r.method() === "PUT" && /\/originals\//.test(r.url())) puts++;
  });
  await page.setInputFiles("#resume-file", BIG_JPEG);
  await waitForStatus(page, "Published.");
  console.log(`reloaded with ${heldNow} of ${partCount} parts in S3; ${puts} PUTs after`);
  assert.equal(puts, partCount - heldNow, "only the missing parts");
  assert.equal(await originalMd5(state.postId), fileMd5(BIG_JPEG));
  await context.close();
});

test("a comment is added and deleted; another user's has no delete button and a forged DELETE is refused", async () => {
  // A published post to comment on (the first test's, or any).
  const post = (await apiCall("web-dave", "GET", "/posts?limit=1")).body.posts[0];
  assert.ok(post, "a published post exists");
  const theirs = await apiCall("web-erin", "POST", `/posts/${post.id}/comments`, { content: "erin was here" });
  assert.equal(theirs.status, 201);
  const { context, page } = await signedIn("web-dave");
  const card = page.locator(`#posts li[data-id="${post.id}"]`);
  await card.waitFor();
  await card.getByLabel("Comment", { exact: true }).fill("dave was here");
  await card.getByRole("button", { name: "Send" }).click();
  const mine = card.locator("li.comment", { hasText: "dave was here" });
  await mine.waitFor();
  await card.getByRole("button", { name: "All comments" }).click();
  const erin = card.locator("li.comment", { hasText: "erin was here" });
  await erin.waitFor();
  assert.equal(await erin.getByRole("button", { name: /Delete/ }).count(), 0, "no delete button on another's comment");
  // A forged DELETE from the page, with dave's token: refused.
  const forged = await page.evaluate(async ({ api, postId, commentId }) => {
    const t = sessionStorage.getItem("imagegram.token");
    const r = await fetch(`${api}/posts/${postId}/comments/${commentId}`, { method: "DELETE", headers: { Authorization: `Bearer ${t}` } });
    return r.status;
  }, { api: API, postId: post.id, commentId: theirs.body.id });
  assert.equal(forged, 403);
  await mine.getByRole("button", { name: /Delete/ }).click();
  await page.locator("#status", { hasText: "Comment deleted." }).waitFor();
  const left = await apiCall("web-dave", "GET", `/posts/${post.id}/comments?limit=100`);
  assert.ok(!left.body.comments.some((c) => c.content === "dave was here"));
  assert.ok(left.body.comments.some((c) => c.content === "erin was here"));
  await context.close();
});

test("the page learns of its published post from the notifications socket, without polling", async () => {
  const { context, page } = await signedIn("web-nora");
  // Every request for the post after the socket opened, and what the
  // socket carried.
  let socketOpened = false;
  const reads = [];
  const frames = [];
  page.on("websocket", (ws) => {
    socketOpened = true;
    ws.on("framereceived", (f) => frames.push(String(f.payload)));
  });
  page.on("request", (r) => {
    if (socketOpened && r.method() === "GET" && /\/posts\/[0-9a-f]{32}$/.test(new URL(r.url()).pathname)) reads.push(r.url());
  });
  await page.setInputFiles("#file", BIG_JPEG);
  await page.getByRole("button", { name: "Post" }).click();
  await waitForStatus(page, "Published.");
  await page.locator("#result img").waitFor();
  assert.ok(socketOpened, "the page opened the notifications socket");
  assert.ok(frames.some((f) => f.includes('"type":"post"') && f.includes('"status":"published"')), `pushed: ${frames}`);
  assert.deepEqual(reads, [], "no GET /posts/{id} after the socket opened");
  await context.close();
});

test("a notifications socket that drops mid-upload is opened again, the post read once, and the outcome pushed", async () => {
  const { context, page } = await signedIn("web-olga");
  const sockets = [];
  const readsAfter = [];
  page.on("websocket", (ws) => sockets.push(ws));
  page.on("request", (r) => {
    if (sockets.length >= 2 && r.method() === "GET" && /\/posts\/[0-9a-f]{32}$/.test(new URL(r.url()).pathname)) readsAfter.push(r.url());
  });
  // The parts wait until the first socket has dropped.
  let release;
  const released = new Promise((r) => (release = r));
  await page.route(/\/originals\//, async (route) => {
    if (route.request().method() === "PUT") await released;
    return route.continue().catch(() => {});
  });
  await page.setInputFiles("#file", BIG_JPEG);
  await page.getByRole("button", { name: "Post" }).click();
  await page.waitForFunction(() => window.__imagegramSocket?.readyState === 1);
  await page.evaluate(() => window.__imagegramSocket.close());
  release();
  await waitForStatus(page, "Published.");
  await page.locator("#result img").waitFor();
  assert.equal(sockets.length, 2, "opened again after the drop");
  assert.ok(readsAfter.length <= 1, `read once after reconnecting, not polled: ${readsAfter}`);
  await page.unroute(/\/originals\//);
  await context.close();
});

test("a text file named .jpg ends failed, with its reason on screen", async () => {
  const { context, page } = await signedIn("web-frank");
  const path = join(ARTIFACTS, "notes.jpg");
  writeFileSync(path, "these are not pixels\n".repeat(100));
  await page.setInputFiles("#file", path);
  await page.getByRole("button", { name: "Post" }).click();
  const failure = page.locator("#result .failure");
  await failure.waitFor({ timeout: 60_000 });
  assert.match(await failure.textContent(), /not a PNG, JPEG or BMP/);
  await context.close();
});

test("the page works at phone width and by keyboard", async () => {
  const context = await browser.newContext({ viewport: { width: 375, height: 800 } });
  const page = await context.newPage();
  await page.goto(WEB);
  // Every control has a label.
  for (const id of ["token", "dev-name", "file", "caption"]) {
    assert.equal(await page.locator(`label[for="${id}"]`).count(), 1, id);
  }
  // Sign in with the keyboard alone.
  await page.getByLabel("Local user").focus();
  await page.keyboard.press("Control+A");
  await page.keyboard.type("web-gina");
  await page.keyboard.press("Tab");
  await page.keyboard.press("Enter");
  await page.getByText("Signed in as web-gina").waitFor();
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth > window.innerWidth);
  assert.equal(overflow, false, "no horizontal scrolling at 375 px");
  await page.screenshot({ path: join(ARTIFACTS, "phone.png"), fullPage: true });
  await context.close();
});
