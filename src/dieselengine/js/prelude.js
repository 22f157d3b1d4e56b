// dieselengine's JavaScript prelude: the handler API (WebSocketSession, WebSocketRoom, console,
// timers) on top of a flat outbox. Evaluated once per script context, before the script's modules;
// it returns the functions the Python side calls (`api(name)`), which user code cannot reach.
//
// Why an outbox: quickjs-ng refuses calls into Python while a time limit is set, so every host
// operation (send, join, broadcast, log, timer) is appended to OUT as [opcode, args...] and the
// Python side executes them, in order, after the call returns. Values a script must read
// synchronously (room member counts, the session's own data) are mirrored into this context.
//
// The common cases do not go through JSON: a hook whose only effect is one broadcast, one send,
// one join or one leave by its own session returns an int (the payload is the incoming message)
// or "code * 2**32 + length:text" (see short()). Sessions are known to Python by their handle.
(function () {
"use strict";

// Opcodes; keep in sync with script.py.
const OP_SEND = 1, OP_SEND_BIN = 2, OP_SEND_MSG = 3, OP_CLOSE = 4, OP_JOIN = 5, OP_LEAVE = 6,
      OP_BCAST = 7, OP_BCAST_BIN = 8, OP_BCAST_MSG = 9, OP_LOG = 10, OP_TIMER = 11,
      OP_CLEAR = 12, OP_SETTLE = 13, OP_ROOM_ID = 14;
// Fast-path kinds, the low two bits of an int result (the rest is a room id). Kind 0 is a join
// (or with M_LEAVE a leave) of the room named by a "code:text" result.
const K_BCAST = 1, K_EXCEPT = 2, K_SEND = 3, M_JOIN = 0, M_LEAVE = 4;
const MAX_ROOM_IDS = 4096, MAX_TIMERS = 100000;
let maxRooms = 128;              // --max-rooms-per-session (init)
// Status bits of a JSON result: the hook returned a promise; promise jobs may be pending.
const S_PROMISE = 1, S_JOBS = 2;

// Intrinsics, captured before any user code runs: a script may replace any built-in method, and
// must not reach the prelude's tables, its outbox or its functions that way. A method is called
// through `uncurry` (a bound Function.prototype.call: nothing is looked up at call time).
const uncurry = (f) => Function.prototype.call.bind(f);
const getter = (o, k) => uncurry(Object.getOwnPropertyDescriptor(o, k).get);
const mapGet = uncurry(Map.prototype.get), mapSet = uncurry(Map.prototype.set),
      mapDelete = uncurry(Map.prototype.delete), mapSize = getter(Map.prototype, "size");
const setHas = uncurry(Set.prototype.has), setAdd = uncurry(Set.prototype.add),
      setDelete = uncurry(Set.prototype.delete), setSize = getter(Set.prototype, "size");
const toWellFormed = uncurry(String.prototype.toWellFormed), isWellFormed = uncurry(String.prototype.isWellFormed);
const strIndexOf = uncurry(String.prototype.indexOf);
const promiseThen = uncurry(Promise.prototype.then), promiseResolve = Promise.resolve.bind(Promise);
const isPrototypeOf = uncurry(Object.prototype.isPrototypeOf), objectToString = uncurry(Object.prototype.toString);
const ErrorPrototype = Error.prototype, defineProperty = Object.defineProperty, objectKeys = Object.keys;
const stringify = JSON.stringify, parse = JSON.parse, hasOwn = Object.hasOwn;
const toBase64 = uncurry(Uint8Array.prototype.toBase64), fromBase64 = Uint8Array.fromBase64;
const isView = ArrayBuffer.isView, apply = Reflect.apply;
const NONE = {};                 // "no incoming message": never === a script's value

const OUT = [];
// Own `push` and `toJSON` (none), so that replacing Array.prototype.push or adding a toJSON there
// cannot reach or rewrite the outbox. Whatever gets through anyway (setters on the prototypes'
// indices) is the script's own outbox: the server checks every value it finds there.
defineProperty(OUT, "push", { value: Array.prototype.push });
defineProperty(OUT, "toJSON", { value: undefined });

// Room -> members, for the rooms this script has named (members(), join()): the server pushes
// changes to these alone, and `countOf` asks it for a room not mirrored yet. Without host calls
// (the binding's own time limit) the server mirrors every room instead and countOf returns 0.
const counts = new Map();
const hostCount = globalThis.__diesel_count__;
delete globalThis.__diesel_count__;
function countOf(n) {
  let c = mapGet(counts, n);
  if (c === undefined) {
    // As JSON: the binding passes strings as C strings (a U+0000 would cut the name short).
    c = typeof hostCount === "function" ? hostCount(stringify(n)) : 0;
    if (c > 0) mapSet(counts, n, c);
  }
  return c;
}
const roomIds = new Map();       // room -> small int known to the Python side
let nextRoomId = 0;
// handle -> live session; a plain object: quickjs-ng's Map costs 1.3-2.4 us per set with integer
// keys at 10k entries, a null-prototype object 0.3 us
const byHandle = Object.create(null);
const hooks = { onOpen: undefined, onMessage: undefined, onClose: undefined, onUpgrade: undefined };
let flags = 0;                   // S_JOBS when promise jobs may have been queued
let curH = -1;                   // handle of the session whose hook is running
let curMsg = NONE;               // the text message of the running onMessage (its synchronous part)
let lastShort = "";              // the text of the last "code:text" result (see short())
// Set by the server while it stops a promise-job loop that used up its CPU time: no new jobs.
let halted = false, haltedAt = null;

const functionSource = uncurry(Function.prototype.toString);

function isNative(f) {
  return typeof f === "function" && strIndexOf(functionSource(f), "[native code]") >= 0;
}

function haltedError() {
  const e = new RangeError("promise jobs are stopped: a chain of jobs used more than its CPU time (--script-timeout)");
  haltedAt ??= String(e) + "\n" + e.stack;
  return e;
}

// Promise jobs queued by `.then` must run right after the handler returns, as in any JS host.
Object.defineProperty(Promise.prototype, "then", {
  value: function then(onFulfilled, onRejected) {
    // While halted the engine's own calls (resolving a promise with a promise) go through, so
    // that the refusal happens in the script's code and its position can be logged.
    if (halted && !(isNative(onFulfilled) && isNative(onRejected))) throw haltedError();
    flags |= S_JOBS;
    return promiseThen(this, onFulfilled, onRejected);
  },
  writable: true, configurable: true,
});

function b64(m) {
  if (m instanceof ArrayBuffer) return toBase64(new Uint8Array(m));
  if (isView(m)) return toBase64(new Uint8Array(m.buffer, m.byteOffset, m.byteLength));
  return null;
}

function badPayload(what) {
  return new TypeError(what + ": message must be a string, an ArrayBuffer or a typed array");
}

function toRoom(h, name, m, skip, what) {
  if (m === curMsg) OUT.push(OP_BCAST_MSG, h, name, skip);
  else if (typeof m === "string") OUT.push(OP_BCAST, h, name, m, skip);
  else {
    const b = b64(m);
    if (b === null) throw badPayload(what);
    OUT.push(OP_BCAST_BIN, h, name, b, skip);
  }
}

function parseHeaders(blob) {
  const map = new Map();
  if (blob) {
    for (const line of blob.split("\n")) {
      const i = line.indexOf("\0");
      const key = line.slice(0, i).toLowerCase();
      if (!map.has(key)) map.set(key, line.slice(i + 1));
    }
  }
  return map;
}

// ---- the session and room API (spec/websocket-session.txt) ----------------------------------

let WebSocketRoom, newSession, exportAttrs, openSession, callMessage, callMessageBinary, callClose, markClosed;
// The attributes an upgrade hook set (a Map), for the session openSession makes next (adoptUpgrade).
let upgradeAttrs = null;

// The request as the server sends it, "id\0addr\0path", split on first read into
// [id, addr, path, params, headers]: params is the query (JSON or null) until getParameter parses
// it, headers the header blob until getHeader does. Only scripts that read them get them.
function requestOf(text, query, headers) {
  const a = text.indexOf("\0"), b = text.indexOf("\0", a + 1);
  return [text.slice(0, a), text.slice(a + 1, b), text.slice(b + 1), query, headers];
}

// Three fields, as each costs memory per idle session and time per handshake (about 800
// instructions each to make; seven took 0.5 us more than four): #req is the request (see
// requestOf); #st is null while the session is open and has stored no attribute and named no
// room, then its state (see #state).
class WebSocketSession {
  #h; #req; #st = null;

  constructor(h, req) {
    this.#h = h; this.#req = req;
  }

  // attrs: null or a Map. rooms: null (no room), the name of its one room (the common case: a Set
  // costs a few hundred bytes), a Set, or false once the session is dead (its onClose ran).
  // room, roomName: the handle room() returned last, so that a handler calling
  // session.room("chat") on every message gets the same one. open: false once it closed.
  #state() {
    return this.#st ??= { attrs: null, rooms: null, room: null, roomName: NONE, open: true };
  }

  #request() {
    const r = this.#req;
    return typeof r === "string" ? (this.#req = requestOf(r, null, "")) : r;
  }

  get id() { return this.#request()[0]; }

  send(message) {
    const st = this.#st;
    if (st !== null && !st.open) return;
    if (message === curMsg) OUT.push(OP_SEND_MSG, this.#h);
    else if (typeof message === "string") OUT.push(OP_SEND, this.#h, message);
    else {
      const b = b64(message);
      if (b === null) throw badPayload("send(message)");
      OUT.push(OP_SEND_BIN, this.#h, b);
    }
  }

  // The close codes the wire accepts (wire.frames.valid_close_code); the wire cuts the reason to 123 bytes.
  close(code = 1000, reason = "") {
    code = Number(code);
    if (!Number.isInteger(code) || !(code >= 1000 && code <= 1003 || code >= 1007 && code <= 1014 ||
                                     code >= 3000 && code <= 4999)) {
      throw new RangeError("close(code, reason): code must be 1000-1003, 1007-1014 or 3000-4999, not " + code);
    }
    reason = String(reason);
    const st = this.#state();
    if (!st.open) return;
    st.open = false;
    OUT.push(OP_CLOSE, this.#h, code, reason);
  }

  isOpen() {
    const st = this.#st;
    return st === null || st.open;
  }

  getParameter(name) {
    const r = this.#request();
    let p = r[3];
    if (p === null || typeof p === "string") p = r[3] = p ? parse(p) : {};
    name = String(name);
    return hasOwn(p, name) ? p[name] : null;
  }

  getHeader(name) {
    const r = this.#request();
    let h = r[4];
    if (typeof h === "string") h = r[4] = parseHeaders(h);
    const v = h.get(String(name).toLowerCase());
    return v === undefined ? null : v;
  }

  getRequestPath() { return this.#request()[2]; }

  getRemoteAddr() { return this.#request()[1]; }

  setAttribute(key, value) {
    const st = this.#state();
    (st.attrs ??= new Map()).set(typeof key === "string" ? key : String(key), value);
  }

  getAttribute(key) {
    const a = this.#st?.attrs ?? null;
    if (a === null) return null;
    const v = a.get(key);
    if (v !== undefined) return v;
    key = String(key);
    return a.has(key) ? a.get(key) : null;
  }

  getAttributes() {
    const a = this.#st?.attrs ?? null;
    return a === null ? {} : Object.fromEntries(a);
  }

  room(name) {
    const st = this.#state();
    if (name === st.roomName) return st.room;
    name = typeof name === "string" ? name : String(name);
    st.roomName = name;
    return st.room = new WebSocketRoom(this, name);
  }

  toJSON() { return { id: this.#request()[0] }; }

  get [Symbol.toStringTag]() { return "WebSocketSession"; }

  static {
    WebSocketRoom = class WebSocketRoom {
      #s; #n;
      constructor(s, n) { this.#s = s; this.#n = n; }

      join() {
        const s = this.#s, n = this.#n, st = s.#state(), rooms = st.rooms;
        if (rooms === false || rooms === n || typeof rooms === "object" && rooms !== null && setHas(rooms, n)) return;
        const held = rooms === null ? 0 : typeof rooms === "string" ? 1 : setSize(rooms);
        if (held >= maxRooms) {
          throw new RangeError("join(): the session is already in " + held + " rooms, the most a session may " +
                               "join (--max-rooms-per-session)");
        }
        if (rooms === null) st.rooms = n;
        else if (typeof rooms === "string") {
          const set = st.rooms = new Set();
          setAdd(set, rooms); setAdd(set, n);
        } else setAdd(rooms, n);
        mapSet(counts, n, countOf(n) + 1);
        OUT.push(OP_JOIN, s.#h, n);
      }

      leave() {
        const s = this.#s, n = this.#n, st = s.#st, rooms = st === null ? null : st.rooms;
        if (rooms === n) st.rooms = null;
        else if (!rooms || typeof rooms === "string" || !setDelete(rooms, n)) return;
        const c = countOf(n) - 1;
        if (c > 0) mapSet(counts, n, c); else mapDelete(counts, n);
        OUT.push(OP_LEAVE, s.#h, n);
      }

      broadcast(message) { toRoom(this.#s.#h, this.#n, message, 0, "broadcast(message)"); }

      broadcastExcept(message) { toRoom(this.#s.#h, this.#n, message, 1, "broadcastExcept(message)"); }

      members() { return countOf(this.#n); }

      getName() { return this.#n; }

      get [Symbol.toStringTag]() { return "WebSocketRoom"; }
    };

    // Reload: a live session of the replaced script, with its attributes and rooms (JSON).
    newSession = (h, req, query, headers, attrs, rooms, open) => {
      const s = new WebSocketSession(h, requestOf(req, query, headers));
      if (attrs !== null) s.#state().attrs = new Map(Object.entries(parse(attrs)));
      if (rooms !== null) {
        const names = parse(rooms);
        let rs = null;
        if (names.length === 1) rs = names[0];
        else if (names.length > 1) {
          rs = new Set();
          for (let i = 0; i < names.length; i++) setAdd(rs, names[i]);
        }
        s.#state().rooms = rs;
      }
      if (!open) s.#state().open = false;
      byHandle[h] = s;
    };

    // Reload: the attributes JSON can carry; the others are dropped with a warning. null for a
    // session whose onClose has run (no hook sees it again).
    exportAttrs = (h) => {
      const s = byHandle[h];
      if (s === undefined) return null;
      const parts = [];
      const a = s.#st?.attrs ?? null;
      if (a !== null) {
        for (const [k, v] of a) {
          let json;
          try { json = stringify(v); } catch (e) { json = undefined; }
          if (json === undefined) {
            OUT.push(OP_LOG, 30, "reload: attribute " + stringify(k) + " of session " + s.#request()[0] +
                     " cannot be carried over (not JSON)");
          } else parts.push(stringify(k) + ":" + json);
        }
      }
      return "{" + parts.join(",") + "}";
    };

    // The session's object and its onOpen in one entry into the engine.
    openSession = (h, req, query, headers, sync, count) => {
      if (sync !== null) applySync(sync, count);
      const s = byHandle[h] = new WebSocketSession(
        h, query === null && headers === "" ? req : requestOf(req, query, headers));
      if (upgradeAttrs !== null) {
        s.#state().attrs = upgradeAttrs;
        upgradeAttrs = null;
      }
      const f = hooks.onOpen;
      if (f === undefined) return undefined;
      curH = h; curMsg = NONE;
      let r;
      try {
        r = f(s);
      } catch (e) {
        throw thrown(e);
      }
      // An onOpen that did nothing the server must hear of (the commonest case, and a call to
      // finish() was a fifth of a bare openSession).
      if (r === undefined && flags === 0 && OUT.length === 0) return undefined;
      return finish(r);
    };

    callMessage = (h, m, sync, count) => {
      if (sync !== null) applySync(sync, count);
      curH = h;
      curMsg = m;
      let r;
      try {
        r = hooks.onMessage(byHandle[h], m);
      } catch (e) {
        throw thrown(e);
      }
      // The commonest cases inline (finish() has them all): one send of the message itself (an
      // echo), one broadcast of it (a relay) or of a new text (the seed's chat), to a room that
      // has an id.
      if (r === undefined && flags === 0 && OUT[1] === h) {
        const n = OUT.length;
        if (n === 2 && OUT[0] === OP_SEND_MSG) {
          OUT.length = 0;
          curMsg = NONE;
          return K_SEND;
        } else if (n === 4 && OUT[0] === OP_BCAST_MSG) {
          const id = mapGet(roomIds, OUT[2]);
          if (id !== undefined) {
            const code = (id << 2) | (OUT[3] ? K_EXCEPT : K_BCAST);
            OUT.length = 0;
            curMsg = NONE;
            return code;
          }
        } else if (n === 5 && OUT[0] === OP_BCAST) {
          const id = mapGet(roomIds, OUT[2]);
          if (id !== undefined) {
            const p = lastShort = OUT[3];
            const code = (id << 2) | (OUT[4] ? K_EXCEPT : K_BCAST);
            OUT.length = 0;
            curMsg = NONE;
            return toWellFormed(code * 4294967296 + p.length + ":" + p);
          }
        }
      }
      return finish(r);
    };

    callMessageBinary = (h, data, sync, count) => {
      if (sync !== null) applySync(sync, count);
      // curMsg stays NONE: a Uint8Array can be changed before it is sent on.
      curH = h; curMsg = NONE;
      let r;
      try {
        r = hooks.onMessage(byHandle[h], fromBase64(data));
      } catch (e) {
        throw thrown(e);
      }
      return finish(r);
    };

    // After onClose returns the server removes the session from its rooms; it is dead from then.
    callClose = (h, sync, count) => {
      if (sync !== null) applySync(sync, count);
      const s = byHandle[h];
      s.#state().open = false;
      curH = h; curMsg = NONE;
      let r;
      try {
        if (hooks.onClose !== undefined) r = hooks.onClose(s);
      } catch (e) {
        throw thrown(e);
      } finally {
        const st = s.#state();
        st.rooms = false;
        // The cached room points back at the session: without this cycle both are freed at once
        // rather than by a garbage collection pass.
        st.room = null; st.roomName = NONE;
        delete byHandle[h];
      }
      return finish(r);
    };

    markClosed = (h) => {
      const s = byHandle[h];
      if (s !== undefined) s.#state().open = false;
    };
  }
}

// What changed in the server since the last call: one room's count (the room's name, count >= 0),
// or as JSON (count < 0) [counts {room: n}, handles of sessions whose connection is closing].
function applySync(sync, count) {
  if (count >= 0) {
    if (count > 0) mapSet(counts, sync, count); else mapDelete(counts, sync);
    return;
  }
  const parsed = parse(sync), c = parsed[0], closed = parsed[1], rooms = objectKeys(c);
  for (let i = 0; i < rooms.length; i++) {
    const room = rooms[i], n = c[room];
    if (n > 0) mapSet(counts, room, n); else mapDelete(counts, room);
  }
  for (let i = 0; i < closed.length; i++) markClosed(closed[i]);
}

function roomId(name) {
  let id = mapGet(roomIds, name);
  if (id !== undefined) return id;
  if (nextRoomId < MAX_ROOM_IDS) {
    id = nextRoomId++;
    mapSet(roomIds, name, id);
    OUT.push(OP_ROOM_ID, id, name);
  }
  return -1;
}

let promiseSeq = 0;

// The end of a hook's synchronous part: hand the outbox to Python, by the cheapest encoding.
function finish(r) {
  curMsg = NONE;
  if (r !== undefined && r !== null && typeof r.then === "function") {
    const pid = ++promiseSeq;
    promiseThen(promiseResolve(r),
      () => { OUT.push(OP_SETTLE, pid, 1, ""); },
      (e) => { OUT.push(OP_SETTLE, pid, 0, describe(e, "(in promise) ")); });
    return general(S_PROMISE | S_JOBS, pid);
  }
  if (flags !== 0) return general(0, 0);
  const n = OUT.length;
  if (n === 0) return undefined;
  const op = OUT[0];
  if (OUT[1] === curH) {
    if (n === 4 && op === OP_BCAST_MSG) {
      const id = roomId(OUT[2]);
      if (id >= 0) {
        const code = (id << 2) | (OUT[3] ? K_EXCEPT : K_BCAST);
        OUT.length = 0;
        return code;
      }
    } else if (n === 5 && op === OP_BCAST) {
      const id = roomId(OUT[2]);
      if (id >= 0) return short(((id << 2) | (OUT[4] ? K_EXCEPT : K_BCAST)), OUT[3]);
    } else if (n === 2 && op === OP_SEND_MSG) {
      OUT.length = 0;
      return K_SEND;
    } else if (n === 3 && op === OP_SEND) {
      return short(K_SEND, OUT[2]);
    } else if (n === 3 && (op === OP_JOIN || op === OP_LEAVE) && isWellFormed(OUT[2])) {
      // A room name must arrive unchanged: one with a lone surrogate goes as JSON.
      return short(op === OP_JOIN ? M_JOIN : M_LEAVE, OUT[2]);
    }
  }
  return general(0, 0);
}

// "code * 2**32 + length:text" (a message or a room name). The engine hands strings to Python as
// C strings, so a text with a U+0000 arrives cut short: the Python side compares the length and
// then asks for it as JSON (`refetch`). toWellFormed() replaces lone surrogates and flattens a
// rope (which the binding cannot convert).
function short(code, p) {
  OUT.length = 0;
  lastShort = p;
  return toWellFormed(code * 4294967296 + p.length + ":" + p);
}

function refetch() { return stringify(lastShort); }

// [status, promise id, OUT] as JSON, from an array of the prelude's own without a prototype (no
// toJSON of the script's can reach it) whose elements are set, never added (no setter either).
const RESULT = [0, 0, OUT];
Object.setPrototypeOf(RESULT, null);

function general(status, pid) {
  RESULT[0] = status | flags;
  RESULT[1] = pid;
  const s = stringify(RESULT);
  OUT.length = 0;
  flags = 0;
  return s;
}

// Whatever is queued (after an error, promise jobs, a timer); undefined when nothing is.
function drain(sync, count) {
  if (sync !== null) applySync(sync, count);
  curMsg = NONE; curH = -1;
  if (OUT.length === 0 && flags === 0) return undefined;
  return general(0, 0);
}

function isError(e) {
  try {
    return typeof e === "object" && e !== null && isPrototypeOf(ErrorPrototype, e);
  } catch (_) {
    return false;  // a Proxy whose getPrototypeOf throws
  }
}

// A thrown value that is not an Error as the log shows it: the engine records no position for it.
function notAnError(e, how) {
  let text;
  try {
    text = typeof e === "string" ? stringify(e) : typeof e === "symbol" ? String(e) : inspect(e, 1);
  } catch (_) {
    text = "a value that cannot be printed";
  }
  return "Uncaught " + how + text + " (thrown as it is, not as an Error, so without a position: " +
         "throw new Error(...) to get one)";
}

// What a hook threw, made an Error when it was not one, so that the server's log says what it was.
function thrown(e) {
  if (isError(e)) return e;
  const error = new Error(notAnError(e, ""));
  error.name = "";
  return error;
}

function describe(e, how = "") {
  try {
    if (isError(e)) return String(e) + "\n" + (e.stack ?? "");
    return notAnError(e, how) + "\n";
  } catch (_) {
    return "Uncaught exception (cannot be printed)\n";
  }
}

// ---- console -----------------------------------------------------------------------------------

function inspect(v, depth) {
  switch (typeof v) {
    case "string": return depth === 0 ? v : stringify(v);
    case "function": return "[Function: " + (v.name || "(anonymous)") + "]";
    case "object":
      if (v === null) return "null";
      if (isError(v)) return v.stack ? String(v) + "\n" + v.stack.replace(/\n$/, "") : String(v);
      try {
        const s = stringify(v, (k, x) => typeof x === "bigint" ? x.toString() + "n" : x);
        if (s !== undefined) return s;
      } catch (_) { /* cyclic */ }
      return objectToString(v);
    default: return String(v);
  }
}

function logger(level) {
  return function (...args) {
    let text = "";
    for (let i = 0; i < args.length; i++) text += (i ? " " : "") + inspect(args[i], 0);
    OUT.push(OP_LOG, level, text);
  };
}

const console = {
  log: logger(20), info: logger(20), debug: logger(10), trace: logger(10),
  warn: logger(30), error: logger(40),
};

// ---- timers: scheduled on the server's event loop --------------------------------------------

const timers = new Map();        // id -> [fn, args, interval ms or 0]
let timerSeq = 0;

function delay(ms) {
  ms = Number(ms);
  return ms >= 1 ? Math.min(ms, 2147483647) : 1;
}

function addTimer(fn, ms, args, repeat) {
  if (typeof fn !== "function") throw new TypeError("the callback must be a function");
  if (mapSize(timers) >= MAX_TIMERS) throw new RangeError("too many timers (" + MAX_TIMERS + ")");
  const id = ++timerSeq, d = delay(ms);
  mapSet(timers, id, [fn, args, repeat ? d : 0]);
  OUT.push(OP_TIMER, id, d);
  return id;
}

function clearTimer(id) {
  id = Number(id);
  if (mapDelete(timers, id)) OUT.push(OP_CLEAR, id);
}

function fire(id, sync, count) {
  if (sync !== null) applySync(sync, count);
  curMsg = NONE; curH = -1;
  const t = mapGet(timers, id);
  if (t !== undefined) {
    if (t[2]) OUT.push(OP_TIMER, id, t[2]); else mapDelete(timers, id);
    try {
      apply(t[0], undefined, t[1]);
    } catch (e) {
      throw thrown(e);
    }
  }
  return drain(null, 0);
}

function queueMicrotask(fn) {
  if (typeof fn !== "function") throw new TypeError("queueMicrotask: the callback must be a function");
  if (halted) throw haltedError();
  flags |= S_JOBS;
  promiseThen(promiseResolve(), () => {
    try {
      fn();
    } catch (e) {
      // A refused job while a runaway chain is stopped: the server logs the chain once.
      if (!halted) OUT.push(OP_LOG, 40, "uncaught error in a microtask\n" + describe(e));
    }
  });
}

// ---- server: rooms reached without a session (module code, timers, handlers) -----------------
// A broadcast goes out as a session's would, with no session (handle -1) and nobody skipped. No
// listing of rooms: a sandboxed script reaches only the rooms it names.

class ServerRoom {
  #n;
  constructor(n) { this.#n = n; }
  broadcast(message) { toRoom(-1, this.#n, message, 0, "broadcast(message)"); }
  members() { return countOf(this.#n); }
  getName() { return this.#n; }
  get [Symbol.toStringTag]() { return "ServerRoom"; }
}

const server = Object.freeze({
  room(name) { return new ServerRoom(typeof name === "string" ? name : String(name)); },
  [Symbol.toStringTag]: "Server",
});

// ---- native work the engine does not interrupt ------------------------------------------------
//
// The engine checks its interrupt handler (the CPU-time limit) as it runs bytecode, in regular
// expressions and in most built-ins, but only every 10,000 or so operations, and a few built-ins
// loop in C without checking it at all: a string search with a string pattern (indexOf,
// includes, split, replace, replaceAll) costs text x pattern steps ("a".repeat(1e6).indexOf(
// "a".repeat(1e4) + "b"): 23 s in one call), and reverse, copyWithin, shift, unshift, splice,
// sort, join, slice, concat, fill and flat walk every index of an array, sparse or not (2^26:
// 1-2 s). One such call, or a loop of 10,000 shorter ones between two checks, would stall the
// server's event loop. So: a call costing more than LIGHT steps is followed by `check()`, which
// makes the engine consult the handler at once; a search costing more than HEAVY runs in
// JavaScript (a loop over the candidates, interruptible); an array longer than HEAVY is refused
// with a RangeError (it can only be sparse: dense, it would not fit the default memory limit).
// What slips past these, the server's watchdog reports.
const LIGHT = 1 << 16, HEAVY = 1 << 24;
const isArray = Array.isArray;
const startsWith = uncurry(String.prototype.startsWith), strSlice = uncurry(String.prototype.slice);

// The engine consults the interrupt handler when its countdown of 10,000 checks runs out.
function check() {
  for (let i = 0; i < 10001; i++);
}

function guardSearch(name, length, heavy) {
  const call = uncurry(String.prototype[name]);
  const matcher = name === "split" ? Symbol.split : name === "includes" || name === "indexOf" ? Symbol.match
                  : Symbol.replace;
  const wrapper = {
    [name](pattern, arg) {
      let s = this, p = pattern;
      if (typeof s !== "string" || typeof p !== "string") {
        if (s === null || s === undefined) throw new TypeError("String.prototype." + name + " called on " + s);
        // A RegExp (anything with its own matcher) runs as the engine runs it: interruptibly.
        if (p === null || p === undefined ||
            (typeof p === "object" || typeof p === "function") && p[matcher] != null) return call(s, p, arg);
        s = `${s}`;
        p = `${p}`;
      }
      const cost = s.length * (p.length - 1);
      if (cost <= LIGHT) return call(s, p, arg);
      if (cost > HEAVY) return heavy(s, p, arg);
      const r = call(s, p, arg);
      check();
      return r;
    },
  }[name];
  defineProperty(wrapper, "length", { value: length });
  defineProperty(String.prototype, name, { value: wrapper, writable: true, configurable: true });
}

// indexOf in JavaScript: the native search finds the candidates (the pattern's first character),
// startsWith checks each, a piece of at most PIECE characters at a time, so that the engine consults
// its interrupt handler every 10,000 pieces or so (a regular expression of a long pattern checks only
// between start positions: 10,000 of a 10,000-character pattern took 0.1 s, a call overran its CPU
// time by that much, and every other route waited that much longer).
const PIECE = 256;

function searchFrom(s, p, position) {
  let from = Math.trunc(+position) || 0;
  from = from < 0 ? 0 : from > s.length ? s.length : from;
  const pieces = [];
  for (let k = 0; k < p.length; k += PIECE) defineProperty(pieces, pieces.length, { value: strSlice(p, k, k + PIECE) });
  const first = p[0], last = s.length - p.length;
  for (let i = strIndexOf(s, first, from); i >= 0 && i <= last; i = strIndexOf(s, first, i + 1)) {
    let k = 0;
    while (k < pieces.length && startsWith(s, pieces[k], i + k * PIECE)) k++;
    if (k === pieces.length) return i;
  }
  return -1;
}

guardSearch("indexOf", 1, searchFrom);
guardSearch("includes", 1, (s, p, position) => searchFrom(s, p, position) >= 0);

// split, replace and replaceAll over the positions searchFrom finds, as the built-ins would.
guardSearch("split", 2, (s, p, limit) => {
  const max = limit === undefined ? 4294967295 : limit >>> 0, parts = [];
  let from = 0;
  while (parts.length < max) {
    const at = searchFrom(s, p, from);
    if (at < 0) break;
    defineProperty(parts, parts.length, { value: strSlice(s, from, at), writable: true, enumerable: true, configurable: true });
    from = at + p.length;
  }
  if (parts.length < max) {
    defineProperty(parts, parts.length, { value: strSlice(s, from), writable: true, enumerable: true, configurable: true });
  }
  return parts;
});

function substitute(s, p, at, by) {
  if (typeof by === "function") return `${by(p, at, s)}`;
  let out = "";
  for (let i = 0; i < by.length; i++) {
    const c = by[i], d = by[i + 1];
    if (c !== "$" || d === undefined) out += c;
    else if (d === "$") { out += "$"; i++; }
    else if (d === "&") { out += p; i++; }
    else if (d === "`") { out += strSlice(s, 0, at); i++; }
    else if (d === "'") { out += strSlice(s, at + p.length); i++; }
    else out += c;
  }
  return out;
}

function replaceFrom(s, p, by, all) {
  if (typeof by !== "function") by = `${by}`;
  let out = "", from = 0, at = searchFrom(s, p, 0);
  while (at >= 0) {
    out += strSlice(s, from, at) + substitute(s, p, at, by);
    from = at + p.length;
    if (!all) break;
    at = searchFrom(s, p, from);
  }
  return out + strSlice(s, from);
}

guardSearch("replace", 2, (s, p, by) => replaceFrom(s, p, by, false));
guardSearch("replaceAll", 2, (s, p, by) => replaceFrom(s, p, by, true));

function tooLong(name, n) {
  return new RangeError("Array.prototype." + name + " on " + n + " elements: dieselengine allows it up to " +
                        HEAVY + " (the engine cannot interrupt it, and a longer call would stall the server)");
}

for (const name of ["reverse", "copyWithin", "shift", "unshift", "splice", "sort", "join", "slice", "concat",
                    "fill", "flat"]) {
  const native = Array.prototype[name];
  const wrapper = {
    [name](...args) {
      let n = 0;
      if (typeof this === "object" && this !== null) {
        n = +this.length;
        if (n > HEAVY) throw tooLong(name, n);
      }
      if (name === "concat") {
        for (let i = 0; i < args.length; i++) {
          const a = args[i];
          if (isArray(a)) {
            if (a.length > HEAVY) throw tooLong(name, a.length);
            n += a.length;
          }
        }
      }
      const r = apply(native, this, args);
      if (n > LIGHT) check();
      return r;
    },
  }[name];
  defineProperty(wrapper, "length", { value: native.length });
  defineProperty(Array.prototype, name, { value: wrapper, writable: true, configurable: true });
}

// ---- Error.prepareStackTrace ---------------------------------------------------------------------
//
// quickjs-ng has V8's stack trace API: the engine calls Error.prepareStackTrace(error, callSites),
// and a call site's getFunction() is the function of its frame, the prelude's own included. The
// engine only calls a data property there: as an accessor, what a script assigns is kept (and
// read back) but never called, and `error.stack` stays the engine's text.

let userPrepare;
defineProperty(Error, "prepareStackTrace", {
  get() { return userPrepare; },
  set(f) { userPrepare = f; },
  configurable: false,
});

// ---- Error.stackTraceLimit -----------------------------------------------------------------------
//
// The engine converts its stack trace limit to a number at the start of every stack it builds. Just
// after the server stops a call over its CPU time, and until that stack is started, the limit is
// `limitHook` (put there from Python), whose valueOf has the server put the script's own limit back
// and make the stack name the loop that ran (stopped_frame.py).
const hostWhere = globalThis.__diesel_where__;
delete globalThis.__diesel_where__;
const limitOf = getter(Error, "stackTraceLimit"), toNumber = Number;
const limitHook = Object.create(null);
limitHook.valueOf = function () {
  if (typeof hostWhere === "function") hostWhere();
  return toNumber(limitOf(Error));
};
defineProperty(globalThis, "__diesel_limit_hook__", { value: limitHook, configurable: true });

const globals = {
  console,
  server,
  setTimeout: (fn, ms, ...args) => addTimer(fn, ms, args, false),
  setInterval: (fn, ms, ...args) => addTimer(fn, ms, args, true),
  clearTimeout: clearTimer,
  clearInterval: clearTimer,
  queueMicrotask,
};
for (const name in globals) {
  Object.defineProperty(globalThis, name, { value: globals[name], writable: true, configurable: true });
}

// ---- the upgrade hook: onUpgrade(request), before the 101 ----------------------------------

// u -> the request of an upgrade in progress (until its session adopts it, or it is forgotten).
const upgrades = Object.create(null);
const arrayIncludes = Array.prototype.includes, arraySlice = Array.prototype.slice;

class WebSocketUpgradeRequest {
  #req; #protocols; #attrs = null; #protocol = null; #rejection = null;

  constructor(req, protocols) { this.#req = req; this.#protocols = protocols; }

  getParameter(name) {
    const r = this.#req;
    if (r[3] === null || typeof r[3] === "string") r[3] = r[3] ? parse(r[3]) : {};
    name = String(name);
    return hasOwn(r[3], name) ? r[3][name] : null;
  }

  getHeader(name) {
    const r = this.#req;
    if (typeof r[4] === "string") r[4] = parseHeaders(r[4]);
    const v = mapGet(r[4], String(name).toLowerCase());
    return v === undefined ? null : v;
  }

  getRequestPath() { return this.#req[2]; }

  getRemoteAddr() { return this.#req[1]; }

  // The offered Sec-WebSocket-Protocol values, in the client's order.
  getProtocols() { return apply(arraySlice, this.#protocols, []); }

  // Becomes a session attribute, the very value (seen in onOpen and later).
  setAttribute(key, value) { mapSet(this.#attrs ??= new Map(), typeof key === "string" ? key : String(key), value); }

  getAttribute(key) {
    const v = this.#attrs === null ? undefined : mapGet(this.#attrs, String(key));
    return v === undefined ? null : v;
  }

  // (The server checks again that the client offered it.)
  acceptProtocol(name) {
    name = String(name);
    if (!apply(arrayIncludes, this.#protocols, [name])) {
      throw new TypeError("acceptProtocol(" + stringify(name) + "): the client offered " + stringify(this.#protocols));
    }
    this.#protocol = name;
  }

  // Refuse the upgrade: an HTTP response with this status (400-599) and the reason as its body.
  reject(status, reason = "") {
    status = Number(status);
    if (!Number.isInteger(status) || status < 400 || status > 599) {
      throw new RangeError("reject(status, reason): status must be an HTTP error, 400-599, not " + status);
    }
    this.#rejection = [status, String(reason)];
  }

  get [Symbol.toStringTag]() { return "WebSocketUpgradeRequest"; }

  // [rejection or null, accepted protocol or null]; the attributes wait for the session.
  static decision(r) { return stringify([r.#rejection, r.#protocol]); }

  static attributes(r) { return r.#attrs; }
}

// Run onUpgrade on a new request: "addr\0path" (as requestOf, without an id), the query (JSON or
// null), the headers, the offered protocols (JSON), and attributes set before it (JSON: the JWT's
// claims) or null. Returns like any hook (a promise is reported to Python, which waits for it).
function callUpgrade(u, req, query, headers, protocols, attrs) {
  const r = new WebSocketUpgradeRequest(requestOf("\0" + req, query, headers), parse(protocols));
  if (attrs !== null) for (const [k, v] of Object.entries(parse(attrs))) r.setAttribute(k, v);
  upgrades[u] = r;
  curH = -1; curMsg = NONE;
  let result;
  try {
    result = hooks.onUpgrade(r);
  } catch (e) {
    throw thrown(e);
  }
  return finish(result);
}

function upgradeDecision(u) {
  const r = upgrades[u];
  return r === undefined ? null : WebSocketUpgradeRequest.decision(r);
}

// The next session openSession makes takes the upgrade's attributes (the Map itself), or for a
// route without onUpgrade those the server set (JSON: the JWT's claims).
function adoptUpgrade(u, attrs) {
  const r = upgrades[u];
  delete upgrades[u];
  upgradeAttrs = r !== undefined ? WebSocketUpgradeRequest.attributes(r)
    : attrs !== null ? new Map(Object.entries(parse(attrs))) : null;
}

function forgetUpgrade(u) { delete upgrades[u]; }

// ---- modules: the engine loads them (modules.py); the entry module hands over the main one's
// namespace through a global that exists only until the hooks are bound.

let mainNs = null;
Object.defineProperty(globalThis, "__diesel_main__", { value: (ns) => { mainNs = ns; }, configurable: true });

// The main module is loaded: take its hooks. Returns a bit mask of the hooks it defines.
function bindHooks() {
  delete globalThis.__diesel_main__;
  const ns = mainNs;
  let mask = 0, bit = 1;
  for (const name of ["onOpen", "onMessage", "onClose", "onUpgrade"]) {
    const f = ns === null ? undefined : ns[name];
    if (f !== undefined && typeof f !== "function") {
      throw new TypeError("the export " + name + " must be a function, not " + (f === null ? "null" : typeof f));
    }
    hooks[name] = f;
    if (f !== undefined) mask |= bit;
    bit <<= 1;
  }
  return mask;
}

function exportNames() { return stringify(mainNs === null ? [] : Object.keys(mainNs)); }

// Host operations of the web APIs (fetch): they resolve later, so the call reports promise jobs.
function post(...op) {
  flags |= S_JOBS;
  for (let i = 0; i < op.length; i++) OUT.push(op[i]);
}

// A module's evaluation promise: returns a probe, "ok", "pending" or the error, once jobs ran.
function settled(p) {
  let state = "pending";
  promiseThen(p, () => { state = "ok"; }, (e) => { state = describe(e); });
  return () => state;
}

// Whether a session's object exists (openSession can fail before it is made).
function known(h) { return byHandle[h] !== undefined; }

function reset() { OUT.length = 0; flags = 0; curMsg = NONE; curH = -1; }

// sync: the counts to start from; max: --max-rooms-per-session.
function init(sync, max) {
  applySync(sync, -1);
  maxRooms = max;
}

// Returns where the first job refused while halted was queued from.
function halt(on) {
  const at = haltedAt;
  halted = on;
  haltedAt = null;
  return at;
}

// An entry into the engine that does nothing: one check of its interrupt countdown (stopped_frame.py).
function nudge() {}

const api = {
  openSession, callMessage, callMessageBinary, callClose, newSession, exportAttrs, drain, fire,
  bindHooks, exportNames, post, settled, reset, init, refetch, known, halt, nudge,
  callUpgrade, upgradeDecision, adoptUpgrade, forgetUpgrade,
  limitHook,  // held here too: the server's reference must never be the last one (it frees it unlocked)
};
return (name) => api[name];
})()
