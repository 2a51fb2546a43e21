// What the browser tests share: Debian's Chromium as the tests start it,
// and dev tokens from the local stack's web server.
import assert from "node:assert/strict";
import { chromium } from "playwright-core";

/**
 * Headless Chromium with a fresh profile and no background networking
 * (this machine's closed network refuses Chromium's own connections).
 */
export function launchChromium() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    headless: true,
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
}

/** A dev token for `user`, minted by the local stack's web server `web`. */
export async function devToken(web, user) {
  const r = await fetch(`${web}/dev/token?sub=${user}`);
  assert.equal(r.status, 200);
  return (await r.text()).trim();
}

/**
 * The API at `api` called as `user` (a dev token from `web`): status and
 * JSON body. A 503 or 429 is retried after its Retry-After, as the contract
 * asks of clients (a loaded machine makes the stack's dependencies slow).
 */
export async function callApi(web, api, user, method, path, body) {
  for (let attempt = 1; ; attempt++) {
    const r = await fetch(`${api}${path}`, {
      method,
      headers: { Authorization: `Bearer ${await devToken(web, user)}`, "Content-Type": "application/json" },
      body: body ? JSON.stringify(body) : undefined,
    });
    const text = await r.text();
    if ([429, 503].includes(r.status) && attempt < 5) {
      const wait = Number(r.headers.get("retry-after") ?? "1");
      await new Promise((s) => setTimeout(s, Math.min(wait, 5) * 1000));
      continue;
    }
    return { status: r.status, body: text ? JSON.parse(text) : null };
  }
}
