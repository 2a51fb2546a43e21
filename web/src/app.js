// Imagegram in the browser: sign in, the feed (more on scroll), post a
// photo (resumable upload), comment, delete one's own comments.

import { thumbHashToDataURL } from "thumbhash";
import { Api, ApiError, acceptedTypes } from "./api.js";
import { Notifications, outcome } from "./events.js";
import { Upload, accept, forgetUpload, savedUpload } from "./upload.js";

const $ = (id) => document.getElementById(id);
const TOKEN_KEY = "imagegram.token"; // sessionStorage: gone with the tab

let config = { api: "http://127.0.0.1:3000", devTokens: false };
let api = null;
let cursor = null;
let loading = false;
let current = null; // the Upload in progress

function status(text, error = false) {
  const s = $("status");
  s.textContent = text;
  s.classList.toggle("error", error);
}

function showError(e) {
  status(e instanceof ApiError ? e.message : `Something went wrong: ${e.message}`, true);
}

function mb(n) {
  return `${(n / 1048576).toFixed(1)} MB`;
}

async function start() {
  try {
    const r = await fetch("config.json");
    if (r.ok) config = { ...config, ...(await r.json()) };
  } catch {
    // A static host without config.json: the defaults.
  }
  $("dev-token-form").hidden = !config.devTokens;
  // The file pickers offer what the API accepts, as it says itself.
  try {
    const types = await acceptedTypes(config.api);
    accept(types);
    for (const id of ["file", "resume-file"]) $(id).accept = types.join(",");
    const names = types.map((t) => t.split("/")[1].toUpperCase());
    $("file-label").textContent = `Photo (${names.join(", ")}, up to 100 MiB)`;
  } catch (e) {
    status(`The API at ${config.api} cannot be reached: ${e.message}`, true);
  }
  $("token-form").addEventListener("submit", (e) => {
    e.preventDefault();
    signIn($("token").value.trim());
  });
  $("dev-token-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const r = await fetch(`dev/token?sub=${encodeURIComponent($("dev-name").value.trim() || "local-user")}`);
    if (!r.ok) return status("The local stack did not mint a token.", true);
    signIn((await r.text()).trim());
  });
  $("signout").addEventListener("click", () => {
    sessionStorage.removeItem(TOKEN_KEY);
    location.reload();
  });
  wirePosting();
  const saved = sessionStorage.getItem(TOKEN_KEY);
  if (saved) signIn(saved);
}

function signIn(token) {
  if (!token) return status("Paste a token first.", true);
  sessionStorage.setItem(TOKEN_KEY, token);
  api = new Api(config.api, token);
  $("token-form").hidden = true;
  $("dev-token-form").hidden = true;
  $("who").hidden = false;
  $("who").textContent = `Signed in as ${api.user ?? "(unknown)"}`;
  $("signout").hidden = false;
  $("post").hidden = false;
  $("feed").hidden = false;
  status("");
  offerResume();
  reloadFeed();
}

// ---- Feed -----------------------------------------------------------------

async function reloadFeed() {
  $("posts").replaceChildren();
  cursor = null;
  $("feed-end").textContent = "";
  await loadMore(true);
  if (!window.__feedObserver) {
    window.__feedObserver = new IntersectionObserver((entries) => {
      if (entries.some((e) => e.isIntersecting)) loadMore(false);
    });
    window.__feedObserver.observe($("more"));
  }
}

async function loadMore(first) {
  if (loading || (!first && !cursor)) return;
  loading = true;
  try {
    const page = await api.call("GET", `/posts?limit=10${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ""}`);
    for (const p of page.posts) $("posts").append(postCard(p));
    cursor = page.next_cursor;
    if (!cursor) $("feed-end").textContent = $("posts").children.length ? "That is every post." : "No posts yet.";
  } catch (e) {
    showError(e);
  } finally {
    loading = false;
  }
}

function el(tag, props = {}, ...children) {
  const e = document.createElement(tag);
  Object.assign(e, props);
  e.append(...children);
  return e;
}

/**
 * A post's image, its ThumbHash shown behind it (a blurred preview of the
 * right colours) until the image has loaded.
 */
function postImage(post, alt, extra = {}) {
  const img = el("img", { src: post.image_url, alt, width: 600, height: 600, ...extra });
  if (post.thumbhash) {
    try {
      const bytes = Uint8Array.from(atob(post.thumbhash), (ch) => ch.charCodeAt(0));
      img.style.backgroundImage = `url(${thumbHashToDataURL(bytes)})`;
      img.style.backgroundSize = "cover";
      img.dataset.placeholder = "thumbhash";
      img.addEventListener("load", () => (img.style.backgroundImage = ""), { once: true });
    } catch {
      // A placeholder that does not decode: the image alone.
    }
  }
  return img;
}

function commentItem(post, c) {
  const li = el("li", { className: "comment" }, el("strong", {}, c.author), ": ", el("span", {}, c.content));
  li.dataset.id = c.id;
  if (c.author === api.user) {
    const del = el("button", { type: "button", className: "delete", textContent: "Delete" });
    del.setAttribute("aria-label", `Delete your comment "${c.content.slice(0, 40)}"`);
    del.addEventListener("click", async () => {
      try {
        await api.call("DELETE", `/posts/${post.id}/comments/${c.id}`);
        li.remove();
        status("Comment deleted.");
      } catch (e) {
        showError(e);
      }
    });
    li.append(" ", del);
  }
  return li;
}

function postCard(p) {
  const li = el("li", { className: "post" });
  li.dataset.id = p.id;
  if (p.image_url) {
    li.append(postImage(p, p.caption || "A photo", { loading: "lazy" }));
  }
  li.append(
    el("p", { className: "caption" }, p.caption),
    el("p", { className: "meta" }, `${p.author} · ${p.comment_count} comment${p.comment_count === 1 ? "" : "s"} · ${new Date(p.created_at).toLocaleString()}`),
  );
  const list = el("ul", { className: "comments" });
  list.setAttribute("aria-label", "Newest comments");
  for (const c of p.last_comments) list.append(commentItem(p, c));
  const all = el("button", { type: "button", textContent: "All comments" });
  all.addEventListener("click", async () => {
    try {
      const page = await api.call("GET", `/posts/${p.id}/comments?limit=100`);
      list.replaceChildren(...page.comments.map((c) => commentItem(p, c)));
    } catch (e) {
      showError(e);
    }
  });
  const form = el("form", { className: "comment-form" });
  const inputId = `comment-${p.id}`;
  const input = el("input", { id: inputId, name: "content", maxLength: 1000, required: true });
  form.append(el("label", { htmlFor: inputId, textContent: "Comment" }), input, el("button", { type: "submit", textContent: "Send" }));
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    try {
      const c = await api.call("POST", `/posts/${p.id}/comments`, { body: { content: input.value }, idempotencyKey: crypto.randomUUID() });
      list.prepend(commentItem(p, c));
      input.value = "";
      status("Comment added.");
    } catch (err) {
      showError(err);
    }
  });
  li.append(list, all, form);
  return li;
}

// ---- Posting ----------------------------------------------------------------

function wirePosting() {
  const drop = $("drop");
  drop.addEventListener("dragover", (e) => {
    e.preventDefault();
    drop.classList.add("over");
  });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    if (e.dataTransfer.files.length) {
      const dt = new DataTransfer();
      dt.items.add(e.dataTransfer.files[0]);
      $("file").files = dt.files;
    }
  });
  drop.addEventListener("keydown", (e) => {
    if (e.key === "Enter" || e.key === " ") {
      e.preventDefault();
      $("file").click();
    }
  });
  $("post-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const file = $("file").files[0];
    if (!file) return status("Pick a photo first.", true);
    if (file.size > 100 * 1048576) return status("Images may be at most 100 MiB.", true);
    forgetUpload();
    runUpload(file, $("caption").value, null);
  });
  $("pause").addEventListener("click", () => {
    if (!current) return;
    if (current.paused) {
      current.resume();
      $("pause").textContent = "Pause";
      status("Uploading…");
    } else {
      current.pause();
      $("pause").textContent = "Resume";
      status("Paused.");
    }
  });
  $("resume-file").addEventListener("change", () => {
    const saved = savedUpload();
    const file = $("resume-file").files[0];
    if (saved && file) runUpload(file, saved.caption, saved);
  });
  $("resume-drop").addEventListener("click", () => {
    forgetUpload();
    $("resume").hidden = true;
  });
}

function offerResume() {
  const saved = savedUpload();
  if (!saved || saved.api !== api.base) return;
  $("resume").hidden = false;
  $("resume-text").textContent = `The upload of ${saved.identity.name} (${mb(saved.identity.size)}) was interrupted.`;
}

async function runUpload(file, caption, saved) {
  $("upload").hidden = false;
  $("post-button").disabled = true;
  $("result").replaceChildren();
  $("pause").textContent = "Pause";
  const puts = { n: 0 };
  current = new Upload(api, file, caption, {
    onProgress(sent, total, rate) {
      $("progress").max = total;
      $("progress").value = sent;
      const left = rate > 0 ? Math.ceil((total - sent) / rate) : null;
      $("progress-text").textContent = `${mb(sent)} of ${mb(total)}${rate > 0 ? ` · ${mb(rate)}/s` : ""}${left !== null ? ` · ${left} s left` : ""}`;
    },
    onStatus: (text) => status(text),
    onPuts: () => puts.n++,
  });
  window.__imagegramUpload = current;
  status("Uploading…");
  // Open before the upload completes: a message is never replayed.
  const notifications = new Notifications(api);
  await notifications.open();
  try {
    // complete's answer is the one read after the socket opened.
    let post = await current.run(saved);
    $("resume").hidden = true;
    status("Processing…");
    post = await outcome(api, notifications, post);
    if (post.status === "published") {
      status("Published.");
      $("result").replaceChildren(postImage(post, post.caption || "Your photo"));
      reloadFeed();
    } else {
      status(`The photo was not published: ${post.failure_reason}`, true);
      $("result").replaceChildren(el("p", { className: "error failure" }, `Failed: ${post.failure_reason}`));
    }
  } catch (e) {
    showError(e);
  } finally {
    notifications.close();
    $("post-button").disabled = false;
    $("upload").hidden = true;
    current = null;
  }
}

start();
