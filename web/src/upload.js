// The resumable upload, in the browser: parts straight to S3 through their
// presigned URLs, four at a time, each with Content-MD5; a failed or
// stalled part retried with backoff; an expired URL signed again; pause and
// resume; and after a reload or a crashed tab, the same file picked again
// finishes the upload, sending only the parts S3 lacks.

import SparkMD5 from "spark-md5";
import { ApiError, backoff, sleep } from "./api.js";

const STATE_KEY = "imagegram.upload";
const STALL_MS = 20_000;
const PART_ATTEMPTS = 8;

/** What identifies a file the user picks again: name, size, last-modified and a SHA-256 of its first MiB. */
export async function identify(file) {
  const head = await file.slice(0, 1 << 20).arrayBuffer();
  const digest = await crypto.subtle.digest("SHA-256", head);
  return {
    name: file.name,
    size: file.size,
    lastModified: file.lastModified,
    head: [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join(""),
  };
}

export function savedUpload() {
  try {
    return JSON.parse(localStorage.getItem(STATE_KEY));
  } catch {
    return null;
  }
}

export function forgetUpload() {
  localStorage.removeItem(STATE_KEY);
}

function save(state) {
  localStorage.setItem(STATE_KEY, JSON.stringify(state));
}

async function md5(blob) {
  const buf = await blob.arrayBuffer();
  return SparkMD5.ArrayBuffer.hash(buf);
}

function hexToBase64(hex) {
  return btoa(String.fromCharCode(...hex.match(/../g).map((h) => parseInt(h, 16))));
}

// The types the API accepts (from its /openapi.json, set by the page).
let accepted = [];
export function accept(types) {
  accepted = types;
}

/**
 * The type the API is told: the browser's, if accepted; else the accepted
 * type the name's ending names; else the browser's word (the API's 415
 * then lists what it takes).
 */
function contentType(file) {
  if (accepted.includes(file.type)) return file.type;
  const ending = /\.([a-z0-9]+)$/i.exec(file.name)?.[1].toLowerCase();
  return accepted.find((t) => t === `image/${ending}`) ?? (file.type || "application/octet-stream");
}

/** One PUT of a part, with upload progress; rejects on network failure or stall. */
function put(url, blob, md5b64, onProgress, control) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    let last = Date.now();
    const watchdog = setInterval(() => {
      if (Date.now() - last > STALL_MS) {
        xhr.abort();
        reject(new Error(`no progress for ${STALL_MS / 1000} s`));
      }
    }, 1000);
    const done = (f) => (v) => {
      clearInterval(watchdog);
      control.xhrs.delete(xhr);
      f(v);
    };
    xhr.open("PUT", url);
    xhr.setRequestHeader("Content-MD5", md5b64);
    xhr.upload.onprogress = (e) => {
      last = Date.now();
      onProgress(e.loaded);
    };
    xhr.onload = done(() => resolve({ status: xhr.status, etag: xhr.getResponseHeader("ETag"), text: xhr.responseText }));
    xhr.onerror = done(() => reject(new Error("network error")));
    xhr.onabort = done(() => reject(new Error("aborted")));
    control.xhrs.add(xhr);
    xhr.send(blob);
  });
}

export class Upload {
  /**
   * `events`: onProgress(sent, total, rate), onStatus(text), onPuts(n).
   */
  constructor(api, file, caption, events, parallel = 4) {
    this.api = api;
    this.file = file;
    this.caption = caption;
    this.events = events;
    this.parallel = parallel;
    this.paused = false;
    this.control = { xhrs: new Set() };
    this.resumeWaiters = [];
    this.tally = { sent: 0, skipped: 0, retries: 0, resigned: 0 };
  }

  pause() {
    this.paused = true;
    // In-flight parts are cancelled; they are sent again on resume.
    for (const xhr of this.control.xhrs) xhr.abort();
  }

  resume() {
    this.paused = false;
    for (const w of this.resumeWaiters.splice(0)) w();
  }

  async untilRunning() {
    while (this.paused) await new Promise((r) => this.resumeWaiters.push(r));
  }

  /** Runs the upload to the end; returns the post (processing or later). */
  async run(saved) {
    const identity = await identify(this.file);
    let state = saved;
    if (!state) {
      state = {
        api: this.api.base,
        identity,
        caption: this.caption,
        idempotencyKey: crypto.randomUUID(),
        postId: null,
      };
      save(state);
    } else if (JSON.stringify(state.identity) !== JSON.stringify(identity)) {
      throw new ApiError(0, "other_file", `That is not the file of the interrupted upload (${state.identity.name}, ${state.identity.size} bytes).`);
    }
    let urls = new Map();
    if (!state.postId) {
      this.events.onStatus("Creating the post…");
      const created = await this.api.call("POST", "/posts", {
        body: { caption: state.caption, content_type: contentType(this.file), size_bytes: this.file.size },
        idempotencyKey: state.idempotencyKey,
      });
      state.postId = created.post.id;
      save(state);
      for (const p of created.upload.parts) urls.set(p.part_number, p.url);
    }
    const id = state.postId;
    let upload;
    try {
      upload = await this.api.call("GET", `/posts/${id}/upload`);
    } catch (e) {
      if (e.status === 409) {
        // Completed before the interruption: only the wait is left.
        forgetUpload();
        return this.api.call("GET", `/posts/${id}`);
      }
      if (e.status === 404) forgetUpload();
      throw e;
    }
    const { part_size: partSize, part_count: partCount } = upload;
    const held = new Map(upload.uploaded_parts.map((p) => [p.part_number, p]));
    const todo = [];
    let sentBytes = 0;
    for (let n = 1; n <= partCount; n++) {
      const blob = this.file.slice((n - 1) * partSize, Math.min(n * partSize, this.file.size));
      const h = held.get(n);
      // What S3 holds counts only if it is this file's bytes.
      if (h && h.size === blob.size && h.etag.replaceAll('"', "") === (await md5(blob))) {
        sentBytes += blob.size;
        this.tally.skipped++;
      } else {
        todo.push({ n, blob });
      }
    }
    const missing = todo.map((t) => t.n).filter((n) => !urls.has(n));
    for (let i = 0; i < missing.length; i += 100) {
      const fresh = await this.api.call("POST", `/posts/${id}/upload/parts`, { body: { part_numbers: missing.slice(i, i + 100) } });
      for (const p of fresh.parts) urls.set(p.part_number, p.url);
    }
    const started = performance.now();
    const startBytes = sentBytes;
    const inFlight = new Map();
    const report = () => {
      const now = sentBytes + [...inFlight.values()].reduce((a, b) => a + b, 0);
      const secs = (performance.now() - started) / 1000;
      const rate = secs > 0.5 ? (now - startBytes) / secs : 0;
      this.events.onProgress(now, this.file.size, rate);
    };
    report();
    this.events.onStatus(`Uploading ${todo.length} of ${partCount} parts, ${this.parallel} at a time…`);
    const queue = [...todo];
    const worker = async () => {
      for (let job = queue.shift(); job; job = queue.shift()) {
        const digest = await md5(job.blob);
        for (let attempt = 1; ; attempt++) {
          await this.untilRunning();
          inFlight.set(job.n, 0);
          this.events.onPuts?.();
          let failure;
          try {
            const r = await put(urls.get(job.n), job.blob, hexToBase64(digest), (loaded) => {
              inFlight.set(job.n, loaded);
              report();
            }, this.control);
            inFlight.delete(job.n);
            if (r.status >= 200 && r.status < 300) {
              sentBytes += job.blob.size;
              this.tally.sent++;
              report();
              break;
            }
            if (r.status === 403 && /expired/i.test(r.text)) {
              this.tally.resigned++;
              const fresh = await this.api.call("POST", `/posts/${id}/upload/parts`, { body: { part_numbers: [job.n] } });
              for (const p of fresh.parts) urls.set(p.part_number, p.url);
              attempt--;
              continue;
            }
            if (!(r.status >= 500 || r.status === 408 || r.status === 429)) {
              throw new ApiError(r.status, "s3", `S3 refused part ${job.n} (${r.status}).`);
            }
            failure = `S3 answered ${r.status}`;
          } catch (e) {
            inFlight.delete(job.n);
            if (e instanceof ApiError) throw e;
            if (this.paused) {
              attempt--;
              continue;
            }
            failure = e.message;
          }
          report();
          if (attempt >= PART_ATTEMPTS) {
            throw new ApiError(0, "network", `Part ${job.n} failed ${PART_ATTEMPTS} times (${failure}). Reload the page to resume the upload.`);
          }
          this.tally.retries++;
          this.events.onStatus(`Part ${job.n}: ${failure}; retrying…`);
          await sleep(backoff(attempt));
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(this.parallel, todo.length) }, worker));
    this.events.onStatus("Completing the upload…");
    const post = await this.api.call("POST", `/posts/${id}/upload/complete`, { attempts: 6 });
    forgetUpload();
    return post;
  }
}
