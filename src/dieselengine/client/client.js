// dieselengine's client: a WebSocket that reconnects by itself (exponential backoff with jitter),
// queues what is sent while it is away, and speaks JSON if asked. Every server serves it at
// /_diesel/client.js; it is an ES module with no dependencies, for browsers and for Node (22+, or
// 20 with --experimental-websocket, or any WebSocket class passed as options.WebSocket).
//
//   import { connect } from "/_diesel/client.js";
//   const chat = connect("/ws/chat?user=alice");
//   chat.on("json", (message) => console.log(message));
//   chat.send("hello");            // queued until the connection is open
//
// Types: /_diesel/client.d.ts.

/** Close codes after which the server may well accept the same client again: reconnect. */
const TRANSIENT = new Set([1001, 1005, 1006, 1011, 1012, 1013, 1014]);

const DEFAULTS = {
  protocols: undefined,
  minDelay: 500,
  maxDelay: 15000,
  factor: 2,
  jitter: 0.5,
  maxQueue: 1000,
  connectTimeout: 10000,
  binaryType: "arraybuffer",
  shouldReconnect: (code) => TRANSIENT.has(code),
  WebSocket: undefined,
};

/** Resolves a path such as "/ws/chat" against the page's address (http -> ws, https -> wss). */
function resolveUrl(url) {
  const base = globalThis.location?.href;
  const resolved = base === undefined ? new URL(url) : new URL(url, base);
  if (resolved.protocol === "http:") resolved.protocol = "ws:";
  else if (resolved.protocol === "https:") resolved.protocol = "wss:";
  return resolved.href;
}

export class DieselClient {
  /**
   * @param {string} url  ws://, wss://, or (in a page) a path such as "/ws/chat?user=alice"
   * @param {object} [options]  see client.d.ts
   */
  constructor(url, options = {}) {
    this.url = resolveUrl(url);
    this.options = { ...DEFAULTS, ...options };
    /** "connecting" | "open" | "reconnecting" | "closed" */
    this.state = "connecting";
    /** Failed attempts since the last open connection. */
    this.attempts = 0;
    this._listeners = new Map();
    this._queue = [];
    this._socket = null;
    this._timer = null;
    this._onOnline = () => { if (this.state === "reconnecting") this.reconnect(); };
    globalThis.addEventListener?.("online", this._onOnline);
    this._open();
  }

  /** Calls `listener` for each event of `type`; returns a function that removes it. */
  on(type, listener) {
    if (!this._listeners.has(type)) this._listeners.set(type, new Set());
    this._listeners.get(type).add(listener);
    return () => this.off(type, listener);
  }

  off(type, listener) {
    this._listeners.get(type)?.delete(listener);
  }

  /** Messages waiting for the connection to (re)open. */
  get queued() {
    return this._queue.length;
  }

  /**
   * Sends a string or binary data now if the connection is open, else queues it (in order) until
   * it is. Returns false if it was dropped: the client is closed, or the queue is full.
   */
  send(data) {
    if (this.state === "closed") return false;
    if (this.state === "open" && this._queue.length === 0) {
      this._socket.send(data);
      return true;
    }
    if (this._queue.length >= this.options.maxQueue) return false;
    this._queue.push(data);
    return true;
  }

  /** `send(JSON.stringify(value))`. */
  sendJSON(value) {
    return this.send(JSON.stringify(value));
  }

  /** Closes for good: no reconnecting; what is queued is dropped. */
  close(code = 1000, reason = "") {
    if (this.state === "closed") return;
    this.state = "closed";
    clearTimeout(this._timer);
    this._queue = [];
    globalThis.removeEventListener?.("online", this._onOnline);
    const socket = this._socket;
    this._socket = null;
    if (socket !== null) {
      socket.onclose = null;
      if (socket.readyState <= 1) socket.close(code, reason);
    }
    this._emit("close", { code, reason, reconnecting: false, delay: 0 });
  }

  /** Reconnects now rather than when the backoff delay is over (e.g. on a "retry" button). */
  reconnect() {
    if (this.state !== "reconnecting") return;
    clearTimeout(this._timer);
    this._open();
  }

  _emit(type, value) {
    for (const listener of [...(this._listeners.get(type) ?? [])]) {
      try {
        listener(value);
      } catch (error) {
        setTimeout(() => { throw error; });  // reported, without breaking the other listeners
      }
    }
  }

  _open() {
    const WebSocketClass = this.options.WebSocket ?? globalThis.WebSocket;
    if (WebSocketClass === undefined) {
      throw new Error("no WebSocket: pass options.WebSocket (e.g. the `ws` package's) in this runtime");
    }
    let socket;
    try {
      socket = new WebSocketClass(this.url, this.options.protocols);
    } catch (error) {
      this._emit("error", error);
      this._closed(1006, String(error?.message ?? error));
      return;
    }
    this._socket = socket;
    socket.binaryType = this.options.binaryType;
    // A connection that never opens ends here: some runtimes (Node 20's) report the failure as an
    // error alone, with no close event, and a stalled attempt has neither.
    const failed = (reason) => {
      clearTimeout(timeout);
      if (this._socket !== socket) return;
      socket.onclose = socket.onerror = socket.onopen = socket.onmessage = null;
      try { socket.close(); } catch { /* already closing */ }
      this._closed(1006, reason);
    };
    const timeout = setTimeout(() => failed("connect timeout"), this.options.connectTimeout);
    socket.onopen = () => {
      clearTimeout(timeout);
      this.state = "open";
      this.attempts = 0;
      this._emit("open", { url: this.url });
      while (this.state === "open" && this._queue.length > 0 && this._socket === socket) {
        socket.send(this._queue.shift());
      }
    };
    socket.onmessage = (event) => {
      this._emit("message", event.data);
      if (typeof event.data === "string" && this._listeners.get("json")?.size) {
        let value;
        try {
          value = JSON.parse(event.data);
        } catch {
          return;  // not JSON: only "message" listeners see it
        }
        this._emit("json", value);
      }
    };
    socket.onerror = (event) => {
      this._emit("error", event);
      if (socket.readyState === 0) failed("connection failed");
    };
    socket.onclose = (event) => {
      clearTimeout(timeout);
      if (this._socket === socket) this._closed(event.code, event.reason);
    };
  }

  _closed(code, reason) {
    this._socket = null;
    const reconnecting = this.options.shouldReconnect(code, reason);
    if (!reconnecting) {
      this.state = "closed";
      this._queue = [];
      globalThis.removeEventListener?.("online", this._onOnline);
      this._emit("close", { code, reason, reconnecting: false, delay: 0 });
      return;
    }
    const { minDelay, maxDelay, factor, jitter } = this.options;
    const ceiling = Math.min(maxDelay, minDelay * factor ** this.attempts);
    const delay = Math.round(ceiling * (1 - jitter * Math.random()));
    this.attempts += 1;
    this.state = "reconnecting";
    this._emit("close", { code, reason, reconnecting: true, delay });
    this._timer = setTimeout(() => this._open(), delay);
  }
}

/** A connected (connecting) client: `new DieselClient(url, options)`. */
export function connect(url, options) {
  return new DieselClient(url, options);
}
