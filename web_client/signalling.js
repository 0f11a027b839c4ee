// The /ws socket (docs/contract.md section 4): hello first, messages in order, and reconnection
// with backoff after a drop. Close codes that no retry can fix end it for good.
//
// Handlers are set synchronously in connect(), before anything is awaited, so no early
// message (welcome, an offer right behind it) is ever lost. Messages are handed over in
// arrival order; the caller queues them if its handling is asynchronous.

// After these, trying again cannot help (the same set as peer/client.py).
export const FATAL_CLOSE_CODES = new Set([1008, 1009, 4400, 4401, 4403, 4404, 4408, 4409,
  4410, 4429]);
const MIN_BACKOFF_MS = 250;
const MAX_BACKOFF_MS = 5000;
const MAX_QUEUED = 200;

export class Signalling {
  /**
   * @param {object} options
   * @param {string} options.url        ws(s)://host/ws?room=ROOM
   * @param {() => object} options.hello  the hello to send on each (re)connection
   * @param {(msg: object) => void} options.onMessage
   * @param {(open: boolean) => void} options.onOpenChange  true once welcomed, false on loss
   * @param {(refusal: {closeCode: number, code: string, message: string}) => void} options.onRefused
   */
  constructor({ url, hello, onMessage, onOpenChange, onRefused }) {
    this.url = url;
    this.hello = hello;
    this.onMessage = onMessage;
    this.onOpenChange = onOpenChange;
    this.onRefused = onRefused;
    this.ws = null;
    this.welcomed = false;
    this.stopped = false;
    this.backoff = MIN_BACKOFF_MS;
    this.timer = null;
    this.lastError = null;
    this.queue = [];  // messages sent while the socket is down
  }

  get open() {
    return this.welcomed && this.ws !== null && this.ws.readyState === WebSocket.OPEN;
  }

  connect() {
    clearTimeout(this.timer);
    this.timer = null;
    if (this.stopped || this.ws !== null) {
      return;
    }
    this.lastError = null;
    this.welcomed = false;
    const ws = new WebSocket(this.url);
    this.ws = ws;
    ws.onopen = () => ws.send(JSON.stringify(this.hello()));
    ws.onmessage = (event) => this.#receive(ws, event.data);
    ws.onerror = () => {};  // a close event always follows; it decides what to do
    ws.onclose = (event) => this.#closed(ws, event);
  }

  /** Send now, or keep it for after the next welcome when the socket is down. */
  send(message) {
    if (this.open) {
      this.ws.send(JSON.stringify(message));
      return true;
    }
    if (!this.stopped && this.queue.length < MAX_QUEUED) {
      this.queue.push(message);
    }
    return false;
  }

  /** After a welcome: deliver what waited (keep=true) or forget it (a fresh session). */
  flushQueue(keep) {
    const waiting = this.queue;
    this.queue = [];
    if (keep) {
      for (const message of waiting) {
        this.send(message);
      }
    }
  }

  /** Try at once instead of waiting out the backoff (the network came back). */
  reconnectNow() {
    if (!this.stopped && this.ws === null) {
      this.connect();
    }
  }

  /** A deliberate leave: bye, then close; never reconnect. */
  leave() {
    this.stopped = true;
    clearTimeout(this.timer);
    const ws = this.ws;
    if (ws !== null && ws.readyState === WebSocket.OPEN) {
      if (this.welcomed) {
        ws.send(JSON.stringify({ type: "bye" }));
      }
      ws.close(1000, "bye");
    } else if (ws !== null) {
      ws.close();
    }
    this.ws = null;
    this.queue = [];
  }

  #receive(ws, data) {
    if (ws !== this.ws) {
      return;
    }
    let message;
    try {
      message = JSON.parse(data);
    } catch {
      return;  // the server only sends JSON; nothing useful to do with anything else
    }
    if (message === null || typeof message !== "object") {
      return;
    }
    if (message.type === "error") {
      this.lastError = message;
    } else if (message.type === "welcome") {
      this.welcomed = true;
      this.backoff = MIN_BACKOFF_MS;
      this.onOpenChange(true);
    }
    this.onMessage(message);
  }

  #closed(ws, event) {
    if (ws !== this.ws) {
      return;
    }
    this.ws = null;
    const wasWelcomed = this.welcomed;
    this.welcomed = false;
    if (wasWelcomed) {
      this.onOpenChange(false);
    }
    if (this.stopped) {
      return;
    }
    if (FATAL_CLOSE_CODES.has(event.code)) {
      this.stopped = true;
      this.queue = [];
      const error = this.lastError ?? {};
      const refusal = { closeCode: event.code, code: error.code || event.reason || "",
        message: error.message || "" };
      this.onRefused(refusal);
      return;
    }
    // Dropped (network, 1001 server restart, 1006): come back with jitter so two parties
    // of a restarted node do not arrive in lock-step.
    const delay = this.backoff * (0.75 + Math.random() / 2);
    this.backoff = Math.min(this.backoff * 2, MAX_BACKOFF_MS);
    this.timer = setTimeout(() => this.connect(), delay);
  }
}
