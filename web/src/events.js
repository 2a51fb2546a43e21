// Notifications (the API's POST /events/ticket and its WebSocket): the
// page learns that its post was published or failed from a pushed message
// instead of polling. The socket is opened before the upload completes
// (messages are not replayed); after a drop it is opened again with a new
// ticket and the post read once; without a socket the page polls.

import { sleep } from "./api.js";

/** A ping this often keeps API Gateway's 10-minute idle close away. */
const KEEPALIVE_MS = 240_000;

export class Notifications {
  constructor(api) {
    this.api = api;
    this.ws = null;
    this.listeners = new Set();
    this.keepalive = null;
  }

  /** Opens the connection; false (and the reason logged) when it cannot. */
  async open() {
    try {
      const { url } = await this.api.call("POST", "/events/ticket", { attempts: 2 });
      const ws = new WebSocket(url);
      await new Promise((ok, fail) => {
        ws.onopen = ok;
        ws.onerror = () => fail(new Error("the notifications connection was refused"));
        setTimeout(() => fail(new Error("no handshake within 10 s")), 10_000);
      });
      ws.onmessage = (e) => {
        let m;
        try {
          m = JSON.parse(e.data);
        } catch {
          return;
        }
        for (const l of this.listeners) l(m);
      };
      ws.onclose = () => {
        clearInterval(this.keepalive);
        if (this.ws === ws) this.ws = null;
        for (const l of this.listeners) l({ type: "closed" });
      };
      this.keepalive = setInterval(() => ws.readyState === 1 && ws.send('{"type":"ping"}'), KEEPALIVE_MS);
      this.ws = ws;
      window.__imagegramSocket = ws;
      return true;
    } catch (e) {
      console.warn(`notifications unavailable: ${e.message}; polling instead`);
      return false;
    }
  }

  get isOpen() {
    return this.ws?.readyState === 1;
  }

  close() {
    clearInterval(this.keepalive);
    this.ws?.close();
    this.ws = null;
  }

  /** The next message about post `id` (or the socket closing). */
  next(id) {
    return new Promise((resolve) => {
      const l = (m) => {
        if (m.type === "closed" || (m.type === "post" && m.post?.id === id) || (m.type === "post_removed" && m.id === id)) {
          this.listeners.delete(l);
          resolve(m);
        }
      };
      this.listeners.add(l);
    });
  }
}

const isFinal = (post) => post.status === "published" || post.status === "failed";

/**
 * The post's outcome: `post` is what the page read after the socket
 * opened (complete's answer); then pushed messages; polling with backoff
 * when there is no socket.
 */
export async function outcome(api, notifications, post) {
  let reconnects = 0;
  for (;;) {
    if (isFinal(post)) return post;
    if (!notifications.isOpen) {
      // Closed (idle, the 2-hour limit, the network) or never opened: a
      // new ticket, then read once, as the contract says.
      if (reconnects++ >= 5 || !(await notifications.open())) break;
      post = await api.call("GET", `/posts/${post.id}`);
      continue;
    }
    const m = await notifications.next(post.id);
    if (m.type === "post" && isFinal(m.post)) return m.post;
    if (m.type === "post_removed") throw new Error("The upload expired before it completed; the post was removed.");
  }
  for (let i = 0; !isFinal(post); i++) {
    await sleep(Math.min(3000, 250 * 2 ** i));
    post = await api.call("GET", `/posts/${post.id}`);
  }
  return post;
}
