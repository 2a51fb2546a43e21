// The Imagegram API from the browser: JSON with a bearer token; errors as
// the contract's message; what the network failed retried with backoff.

export class ApiError extends Error {
  constructor(status, code, message, retryAfter) {
    super(message);
    this.status = status;
    this.code = code;
    this.retryAfter = retryAfter;
  }
}

/** Full jitter exponential backoff: a wait in [cap/2, cap), cap doubling from 0.5 s to 30 s. */
export function backoff(attempt, retryAfterSecs) {
  if (retryAfterSecs) return retryAfterSecs * 1000;
  const cap = Math.min(30_000, 500 * 2 ** Math.min(attempt, 6));
  return cap / 2 + Math.random() * (cap / 2);
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export class Api {
  constructor(base, token) {
    this.base = base.replace(/\/$/, "");
    this.token = token;
  }

  /** The caller's `sub`, read from the token (the API checks it; this only decides which delete buttons to show). */
  get user() {
    try {
      const payload = this.token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
      return JSON.parse(atob(payload)).sub ?? null;
    } catch {
      return null;
    }
  }

  /**
   * Calls the API. Retries network failures, 502-504, and a 409 for an
   * Idempotency-Key whose first request still runs; otherwise a non-2xx is
   * an ApiError carrying the contract's message.
   */
  async call(method, path, { body, idempotencyKey, attempts = 5 } = {}) {
    for (let attempt = 1; ; attempt++) {
      const headers = { Authorization: `Bearer ${this.token}` };
      if (body !== undefined) headers["Content-Type"] = "application/json";
      if (idempotencyKey) headers["Idempotency-Key"] = idempotencyKey;
      let resp;
      try {
        resp = await fetch(this.base + path, {
          method,
          headers,
          body: body === undefined ? undefined : JSON.stringify(body),
        });
      } catch (e) {
        if (attempt < attempts) {
          await sleep(backoff(attempt));
          continue;
        }
        throw new ApiError(0, "network", `The API cannot be reached (${e.message}). Check your connection and try again.`);
      }
      const text = await resp.text();
      let value = null;
      try {
        value = text ? JSON.parse(text) : null;
      } catch {
        value = { error: { code: "unexpected", message: text.slice(0, 200) } };
      }
      if (resp.ok) return value;
      const retryAfter = Number(resp.headers.get("Retry-After")) || null;
      const inProgress = resp.status === 409 && idempotencyKey && value?.error?.reason === "in_progress";
      if ((resp.status >= 502 && resp.status <= 504) || inProgress) {
        if (attempt < attempts) {
          await sleep(backoff(attempt, retryAfter));
          continue;
        }
      }
      const code = value?.error?.code ?? "error";
      let message = value?.error?.message ?? value?.message ?? `HTTP ${resp.status}`;
      if (resp.status === 401) message = `${message}. Sign in again with a valid token.`;
      throw new ApiError(resp.status, code, message, retryAfter);
    }
  }
}

/**
 * The image types the API accepts, as its own document says
 * (`GET /openapi.json`, public): the page keeps no list of its own.
 */
export async function acceptedTypes(base) {
  for (let attempt = 1; ; attempt++) {
    try {
      const r = await fetch(`${base.replace(/\/$/, "")}/openapi.json`);
      if (r.ok) {
        const spec = await r.json();
        return spec.paths["/posts"].post.requestBody.content["application/json"].schema.properties.content_type.enum;
      }
    } catch (e) {
      if (attempt >= 5) throw e;
    }
    if (attempt >= 5) throw new Error("the API's document (/openapi.json) could not be read");
    await sleep(backoff(attempt));
  }
}
