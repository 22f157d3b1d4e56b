// Headers, Request, Response (WHATWG Fetch, without streams: a body is held whole) and fetch(),
// which the server runs (`--allow-fetch ORIGIN`): the request leaves through the outbox
// (OP_FETCH) and comes back by `fetchDone`/`fetchFailed`, which settle its promise.
{
  const OP_FETCH = 15, OP_FETCH_ABORT = 16;
  const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
  const FORBIDDEN_METHODS = ["CONNECT", "TRACE", "TRACK"];
  const NORMAL_METHODS = ["DELETE", "GET", "HEAD", "OPTIONS", "POST", "PUT", "PATCH"];
  const NULL_BODY_STATUS = [101, 103, 204, 205, 304];
  const REDIRECT_STATUS = [301, 302, 303, 307, 308];
  const encoder = new TextEncoder();

  function headerName(name) {
    name = String(name);
    if (!TOKEN.test(name)) throw new TypeError(`Headers: invalid header name "${name}"`);
    return name.toLowerCase();
  }
  function headerValue(value) {
    value = String(value).replace(/^[\t\n\r ]+|[\t\n\r ]+$/g, "");
    if (/[\0\r\n]/.test(value)) throw new TypeError("Headers: invalid header value");
    return value;
  }

  class Headers {
    #map = new Map();        // lower-case name -> [values]
    constructor(init = undefined) {
      if (init == null) return;
      if (init instanceof Headers) { for (const [k, v] of init.#pairs()) this.append(k, v); return; }
      if (typeof init !== "object") throw new TypeError("Headers: init must be an object, an array of pairs or Headers");
      if (typeof init[Symbol.iterator] === "function") {
        for (const pair of init) {
          const p = [...pair];
          if (p.length !== 2) throw new TypeError("Headers: each pair must have a name and a value");
          this.append(p[0], p[1]);
        }
      } else {
        for (const k of Object.keys(init)) this.append(k, init[k]);
      }
    }
    append(name, value) {
      const k = headerName(name), v = headerValue(value);
      const list = this.#map.get(k);
      if (list) list.push(v); else this.#map.set(k, [v]);
    }
    set(name, value) { this.#map.set(headerName(name), [headerValue(value)]); }
    delete(name) { this.#map.delete(headerName(name)); }
    has(name) { return this.#map.has(headerName(name)); }
    get(name) {
      const list = this.#map.get(headerName(name));
      return list ? list.join(", ") : null;
    }
    getSetCookie() { return [...(this.#map.get("set-cookie") ?? [])]; }
    #pairs() {
      const out = [];
      for (const k of [...this.#map.keys()].sort()) {
        if (k === "set-cookie") for (const v of this.#map.get(k)) out.push([k, v]);
        else out.push([k, this.#map.get(k).join(", ")]);
      }
      return out;
    }
    forEach(callback, thisArg) { for (const [k, v] of this.#pairs()) callback.call(thisArg, v, k, this); }
    *entries() { yield* this.#pairs(); }
    *keys() { for (const [k] of this.#pairs()) yield k; }
    *values() { for (const [, v] of this.#pairs()) yield v; }
    [Symbol.iterator]() { return this.entries(); }
    get [Symbol.toStringTag]() { return "Headers"; }
  }

  // A body as bytes and the content type it implies.
  function extract(body) {
    if (body == null) return [null, null];
    if (typeof body === "string") return [encoder.encode(body), "text/plain;charset=UTF-8"];
    if (body instanceof URLSearchParams) return [encoder.encode(String(body)), "application/x-www-form-urlencoded;charset=UTF-8"];
    if (body instanceof ArrayBuffer) return [new Uint8Array(body.slice(0)), null];
    if (ArrayBuffer.isView(body)) return [new Uint8Array(body.buffer.slice(body.byteOffset, body.byteOffset + body.byteLength)), null];
    return [encoder.encode(String(body)), "text/plain;charset=UTF-8"];
  }

  const BODY = Symbol("body");
  class Body {
    [BODY] = { bytes: null, used: false };
    get bodyUsed() { return this[BODY].used; }
    get body() { return null; }  // no ReadableStream in the sandbox: read it with text(), json(), arrayBuffer()
    #take(what) {
      const b = this[BODY];
      if (b.used) return Promise.reject(new TypeError(`${what}: the body has already been read`));
      b.used = b.bytes !== null;
      return Promise.resolve(b.bytes ?? new Uint8Array(0));
    }
    async arrayBuffer() { const b = await this.#take("arrayBuffer()"); return b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength); }
    async bytes() { return new Uint8Array(await this.arrayBuffer()); }
    async text() { return new TextDecoder().decode(await this.#take("text()")); }
    async json() { return JSON.parse(await this.text()); }
  }

  function method(m) {
    const upper = String(m).toUpperCase();
    if (!TOKEN.test(m)) throw new TypeError(`Request: invalid method "${m}"`);
    if (FORBIDDEN_METHODS.includes(upper)) throw new TypeError(`Request: the method ${upper} is forbidden`);
    return NORMAL_METHODS.includes(upper) ? upper : String(m);
  }

  class Request extends Body {
    #url; #method; #headers; #signal; #redirect;
    constructor(input, init = {}) {
      super();
      init ??= {};
      const from = input instanceof Request ? input : null;
      this.#url = from ? from.url : new URL(String(input)).href;
      this.#method = init.method !== undefined ? method(init.method) : from ? from.method : "GET";
      this.#headers = new Headers(init.headers !== undefined ? init.headers : from?.headers);
      this.#signal = init.signal !== undefined ? init.signal : from ? from.signal : null;
      if (this.#signal != null && !(this.#signal instanceof AbortSignal)) throw new TypeError("Request: signal must be an AbortSignal");
      this.#redirect = init.redirect ?? from?.redirect ?? "follow";
      if (!["follow", "error", "manual"].includes(this.#redirect)) throw new TypeError(`Request: invalid redirect mode "${this.#redirect}"`);
      const body = init.body !== undefined ? init.body : null;
      if (body !== null && (this.#method === "GET" || this.#method === "HEAD")) {
        throw new TypeError(`Request: a ${this.#method} request cannot have a body`);
      }
      if (body !== null) {
        const [bytes, type] = extract(body);
        this[BODY].bytes = bytes;
        if (type && !this.#headers.has("content-type")) this.#headers.set("content-type", type);
      } else if (from) {
        this[BODY].bytes = from[BODY].bytes;
      }
    }
    get url() { return this.#url; }
    get method() { return this.#method; }
    get headers() { return this.#headers; }
    get signal() { return this.#signal ?? (this.#signal = new AbortController().signal); }
    get redirect() { return this.#redirect; }
    clone() { return new Request(this); }
  }

  class Response extends Body {
    #status; #statusText; #headers; #type = "default"; #url = ""; #redirected = false;
    constructor(body = null, init = {}) {
      super();
      init ??= {};
      const status = init.status === undefined ? 200 : Number(init.status);
      if (!Number.isInteger(status) || status < 200 || status > 599) throw new RangeError(`Response: status ${init.status} is not in 200-599`);
      this.#status = status;
      this.#statusText = init.statusText === undefined ? "" : String(init.statusText);
      this.#headers = new Headers(init.headers);
      if (body !== null) {
        if (NULL_BODY_STATUS.includes(status)) throw new TypeError(`Response: a ${status} response cannot have a body`);
        const [bytes, type] = extract(body);
        this[BODY].bytes = bytes;
        if (type && !this.#headers.has("content-type")) this.#headers.set("content-type", type);
      }
    }
    get status() { return this.#status; }
    get statusText() { return this.#statusText; }
    get ok() { return this.#status >= 200 && this.#status <= 299; }
    get headers() { return this.#headers; }
    get type() { return this.#type; }
    get url() { return this.#url; }
    get redirected() { return this.#redirected; }
    clone() {
      if (this.bodyUsed) throw new TypeError("Response.clone: the body has already been read");
      const r = new Response(null, { status: this.#status === 0 ? 200 : this.#status, statusText: this.#statusText, headers: this.#headers });
      r[BODY].bytes = this[BODY].bytes;
      r.#status = this.#status; r.#type = this.#type; r.#url = this.#url; r.#redirected = this.#redirected;
      return r;
    }
    static json(data, init = {}) {
      const text = JSON.stringify(data);
      if (text === undefined) throw new TypeError("Response.json: the data cannot be serialized as JSON");
      const headers = new Headers(init?.headers);
      if (!headers.has("content-type")) headers.set("content-type", "application/json");
      return new Response(text, { ...init, headers });
    }
    static error() {
      const r = new Response(null, { status: 200 });
      r.#status = 0; r.#type = "error";
      return r;
    }
    static redirect(url, status = 302) {
      if (!REDIRECT_STATUS.includes(status)) throw new RangeError(`Response.redirect: ${status} is not a redirect status`);
      return new Response(null, { status, headers: { location: new URL(String(url)).href } });
    }
    static _received(status, statusText, headers, bytes, url, redirected) {
      const r = new Response(null, { status: 200, statusText, headers });
      r.#status = status;
      r[BODY].bytes = bytes;
      r.#type = "basic"; r.#url = url; r.#redirected = redirected;
      return r;
    }
  }
  const received = Response._received;
  delete Response._received;

  const pending = new Map();  // fetch id -> {resolve, reject}
  let nextFetch = 0;

  function fetch(input, init = undefined) {
    return new Promise((resolve, reject) => {
      const request = new Request(input, init);
      const signal = init?.signal ?? (input instanceof Request ? input.signal : null);
      if (signal?.aborted) throw signal.reason;
      const id = ++nextFetch;
      const headers = [];
      request.headers.forEach((v, k) => headers.push(k, v));
      const body = request[BODY].bytes;
      pending.set(id, { resolve, reject });
      post(OP_FETCH, id, request.url, request.method, headers, body === null ? null : toBase64.call(body), request.redirect);
      signal?.addEventListener("abort", () => {
        if (pending.delete(id)) {
          post(OP_FETCH_ABORT, id);
          reject(signal.reason);
        }
      }, { once: true });
    });
  }

  internal.fetchDone = (id, status, statusText, headers, body, url, redirected) => {
    const p = pending.get(id);
    if (!p) return;
    pending.delete(id);
    const h = new Headers(), list = JSON.parse(headers);
    for (let i = 0; i < list.length; i += 2) h.append(list[i], list[i + 1]);
    p.resolve(received(status, statusText, h, fromBase64(body), url, redirected));
  };
  internal.fetchFailed = (id, message) => {
    const p = pending.get(id);
    if (!p) return;
    pending.delete(id);
    p.reject(new TypeError(message));
  };

  define("Headers", Headers);
  define("Request", Request);
  define("Response", Response);
  define("fetch", fetch);
}
