// TypeScript declarations for dieselengine JavaScript handler scripts.
//
// A handler script is an ES module exporting any of onUpgrade, onOpen, onMessage and onClose:
//
//   /// <reference path="dieselengine.d.ts" />
//   import type { WebSocketSession } from "dieselengine";
//   export function onMessage(session: WebSocketSession, message: string | Uint8Array) { ... }
//
// Or, in plain JavaScript, with JSDoc: `/** @param {WebSocketSession} session */`. The file ships in
// the Python package (`python -c "import dieselengine, pathlib; print(pathlib.Path(dieselengine.__file__).parent)"`).
//
// Scripts run in a sandbox: the JavaScript language, `console`, `server`, timers, `queueMicrotask` and
// the web APIs declared at the end (TextEncoder, URL, crypto, fetch, ...); no file system, process or
// environment, no network but fetch() to the origins `--allow-fetch` names. Imports: helpers by a
// relative path (`import { fmt } from "./_util.js"`) and npm packages from the served folder's
// node_modules (`import { z } from "zod"`). Compile with `"lib": ["es2023"]` and without "dom":
// this file declares the web APIs the sandbox has, and lib.dom would promise many it has not.

/** What `send`, `broadcast` and `broadcastExcept` accept: a string is a text frame, bytes a binary frame. */
type WebSocketPayload = string | ArrayBuffer | ArrayBufferView;

/** A room handle, from `session.room(name)`. Rooms are server-wide: every route (JavaScript or
 * Python) shares one namespace, and across a cluster when the server runs with `--cluster`. */
interface WebSocketRoom {
  /** Join this room (idempotent). Rooms are created lazily on first join.
   * @throws RangeError when the session is already in `--max-rooms-per-session` rooms (default 128). */
  join(): void;
  /** Leave this room (idempotent). Rooms are deleted when empty. After onClose returns, the
   * session leaves all its rooms automatically. */
  leave(): void;
  /** Send to every member of the room, the sender included when it is a member. A non-member may broadcast. */
  broadcast(message: WebSocketPayload): void;
  /** Send to every member of the room but the sender. */
  broadcastExcept(message: WebSocketPayload): void;
  /** Sessions in the room now, including joins and leaves made earlier in this call and by other routes. */
  members(): number;
  /** The room's name. */
  getName(): string;
}

/** A room reached without a session, from `server.room(name)`. */
interface ServerRoom {
  /** Send to every member of the room (on every node with `--cluster`); a no-op for a room with no member. */
  broadcast(message: WebSocketPayload): void;
  /** Sessions in the room now, as `WebSocketRoom.members()` counts them. */
  members(): number;
  /** The room's name. */
  getName(): string;
}

/** The global `server`: rooms by name from anywhere in a script (module top level, timers, handlers). */
interface Server {
  /** A handle on a room; creates nothing, joins nothing. */
  room(roomName: string): ServerRoom;
}

/** One client connection, passed to onOpen, onMessage and onClose. */
interface WebSocketSession {
  /** The unique session ID (read-only). */
  readonly id: string;
  /** Queue a message to this client; never blocks. A no-op once the session is closed. */
  send(message: WebSocketPayload): void;
  /** Close the connection (idempotent); code 1000-4999, default 1000. Nothing sent after it reaches the client. */
  close(code?: number, reason?: string): void;
  /** False from the moment a close starts. */
  isOpen(): boolean;
  /** First value of a query parameter of the handshake URI, form-decoded; null when absent. */
  getParameter(name: string): string | null;
  /** A header of the handshake request (case-insensitive); null when absent. */
  getHeader(name: string): string | null;
  /** The URI path of the connection, without the query string, e.g. "/ws/chat". */
  getRequestPath(): string;
  /** The client's IP address (no port). */
  getRemoteAddr(): string;
  /** Store any value on the session; getAttribute returns the very same value. On `--reload`, values JSON can carry are kept. */
  setAttribute(key: string, value: unknown): void;
  /** The value stored under key, or null if it was never set. */
  getAttribute<T = any>(key: string): T | null;
  /** All attributes as a plain object. */
  getAttributes(): { [key: string]: any };
  /** A handle on a room; does not join it. */
  room(roomName: string): WebSocketRoom;
}

/** The upgrade request an `onUpgrade` hook decides on, before the 101 and before any session exists. */
interface WebSocketUpgradeRequest {
  /** First value of a query parameter of the handshake URI, form-decoded; null when absent. */
  getParameter(name: string): string | null;
  /** A header of the handshake request (case-insensitive); null when absent. */
  getHeader(name: string): string | null;
  /** The URI path, without the query string, e.g. "/ws/chat". */
  getRequestPath(): string;
  /** The client's IP address (no port; with `--trusted-proxy`, from X-Forwarded-For). */
  getRemoteAddr(): string;
  /** The subprotocols the client offered (`Sec-WebSocket-Protocol`), in its order. */
  getProtocols(): string[];
  /** Becomes a session attribute, the very value, seen by `session.getAttribute` from onOpen on. */
  setAttribute(key: string, value: unknown): void;
  /** An attribute set so far: the server's `claims` (with `--jwt-secret`/`--jwt-key`) or one set here. */
  getAttribute<T = any>(key: string): T | null;
  /** Answer with this subprotocol; a TypeError unless the client offered it. Without a call, the 101 names none. */
  acceptProtocol(protocol: string): void;
  /** Refuse: an HTTP response with this status (400-599, else a RangeError) and `reason` as a text/plain
   * body. No session is made: neither onOpen nor onClose runs. */
  reject(status: number, reason?: string): void;
}

/** `export async function onUpgrade(request)`: decide on a connection before the 101. Not rejected, the
 * upgrade proceeds; a throw answers 500 (logged with file:line:column); not settled within
 * `--handshake-timeout`, 503. */
type OnUpgrade = (request: WebSocketUpgradeRequest) => void | Promise<void>;
/** `export function onOpen(session)`: a client connected. An uncaught error closes the session with 1011. */
type OnOpen = (session: WebSocketSession) => void | Promise<void>;
/** `export function onMessage(session, message)`: a text frame arrives as a string, a binary frame as a Uint8Array. */
type OnMessage = (session: WebSocketSession, message: string | Uint8Array) => void | Promise<void>;
/** `export function onClose(session)`: the connection ended; the session is still in its rooms until it returns. */
type OnClose = (session: WebSocketSession) => void | Promise<void>;

type _WebSocketSession = WebSocketSession;
type _WebSocketRoom = WebSocketRoom;
type _ServerRoom = ServerRoom;
type _Server = Server;
type _WebSocketPayload = WebSocketPayload;
type _OnOpen = OnOpen;
type _WebSocketUpgradeRequest = WebSocketUpgradeRequest;
type _OnUpgrade = OnUpgrade;
type _OnMessage = OnMessage;
type _OnClose = OnClose;

/** The same types for `import type { WebSocketSession } from "dieselengine"`. */
declare module "dieselengine" {
  export type WebSocketSession = _WebSocketSession;
  export type WebSocketRoom = _WebSocketRoom;
  export type ServerRoom = _ServerRoom;
  export type Server = _Server;
  export type WebSocketPayload = _WebSocketPayload;
  export type OnOpen = _OnOpen;
  export type WebSocketUpgradeRequest = _WebSocketUpgradeRequest;
  export type OnUpgrade = _OnUpgrade;
  export type OnMessage = _OnMessage;
  export type OnClose = _OnClose;
}

// The sandbox's globals beyond the language itself (they merge with lib.dom's when it is loaded).
interface Console {
  /** Logged at INFO, tagged with the script's name (logger `dieselengine.script.<name>`). */
  log(...data: any[]): void;
  info(...data: any[]): void;
  /** Logged at DEBUG (shown with --log-level debug). */
  debug(...data: any[]): void;
  trace(...data: any[]): void;
  warn(...data: any[]): void;
  error(...data: any[]): void;
}
declare var console: Console;
/** Rooms by name without a session: `server.room("clock").broadcast(new Date().toISOString())`. */
declare var server: Server;
/** Runs on the server's event loop, under the same CPU-time limit as a handler call. */
declare function setTimeout<A extends any[]>(callback: (...args: A) => void, ms?: number, ...args: A): number;
declare function setInterval<A extends any[]>(callback: (...args: A) => void, ms?: number, ...args: A): number;
declare function clearTimeout(id: number | undefined): void;
declare function clearInterval(id: number | undefined): void;
declare function queueMicrotask(callback: () => void): void;

// ---- the web APIs (src/dieselengine/js/web/*.js), as the WHATWG and W3C specs define them ------

declare class TextEncoder {
  readonly encoding: "utf-8";
  encode(input?: string): Uint8Array;
  encodeInto(source: string, destination: Uint8Array): { read: number; written: number };
}
/** UTF-8 only: any other label is a RangeError. */
declare class TextDecoder {
  constructor(label?: "utf-8" | "utf8" | "unicode-1-1-utf-8", options?: { fatal?: boolean; ignoreBOM?: boolean });
  readonly encoding: "utf-8";
  readonly fatal: boolean;
  readonly ignoreBOM: boolean;
  decode(input?: ArrayBuffer | ArrayBufferView, options?: { stream?: boolean }): string;
}

/** The WHATWG URL parser, without international domain names (a non-ASCII host is a TypeError). */
declare class URL {
  constructor(url: string | URL, base?: string | URL);
  static canParse(url: string | URL, base?: string | URL): boolean;
  static parse(url: string | URL, base?: string | URL): URL | null;
  href: string;
  readonly origin: string;
  protocol: string;
  username: string;
  password: string;
  host: string;
  hostname: string;
  port: string;
  pathname: string;
  search: string;
  readonly searchParams: URLSearchParams;
  hash: string;
  toString(): string;
  toJSON(): string;
}
declare class URLSearchParams implements Iterable<[string, string]> {
  constructor(init?: string | Record<string, string> | Iterable<[string, string]> | URLSearchParams);
  readonly size: number;
  append(name: string, value: string): void;
  delete(name: string, value?: string): void;
  get(name: string): string | null;
  getAll(name: string): string[];
  has(name: string, value?: string): boolean;
  set(name: string, value: string): void;
  sort(): void;
  forEach(callback: (value: string, key: string, parent: URLSearchParams) => void, thisArg?: any): void;
  entries(): IterableIterator<[string, string]>;
  keys(): IterableIterator<string>;
  values(): IterableIterator<string>;
  [Symbol.iterator](): IterableIterator<[string, string]>;
  toString(): string;
}

/** Maps, Sets, Dates, RegExps, ArrayBuffers and views, Errors, plain objects and arrays, with cycles. */
declare function structuredClone<T>(value: T, options?: { transfer?: ArrayBuffer[] }): T;
declare function atob(data: string): string;
declare function btoa(data: string): string;

declare class CryptoKey {
  readonly type: "secret";
  readonly extractable: boolean;
  readonly algorithm: { name: "HMAC"; hash: { name: string }; length: number };
  readonly usages: ("sign" | "verify")[];
}
type HashAlgorithm = "SHA-1" | "SHA-256" | "SHA-384" | "SHA-512";
type HmacParams = { name: "HMAC"; hash: HashAlgorithm | { name: HashAlgorithm }; length?: number };
type BufferSource = ArrayBuffer | ArrayBufferView;
/** Digests and HMAC, computed by the server (Python's hashlib and hmac); other algorithms reject. */
declare class SubtleCrypto {
  digest(algorithm: HashAlgorithm | { name: HashAlgorithm }, data: BufferSource): Promise<ArrayBuffer>;
  importKey(format: "raw", keyData: BufferSource, algorithm: HmacParams, extractable: boolean,
            usages: ("sign" | "verify")[]): Promise<CryptoKey>;
  generateKey(algorithm: HmacParams, extractable: boolean, usages: ("sign" | "verify")[]): Promise<CryptoKey>;
  exportKey(format: "raw", key: CryptoKey): Promise<ArrayBuffer>;
  sign(algorithm: "HMAC" | { name: "HMAC" }, key: CryptoKey, data: BufferSource): Promise<ArrayBuffer>;
  verify(algorithm: "HMAC" | { name: "HMAC" }, key: CryptoKey, signature: BufferSource, data: BufferSource): Promise<boolean>;
}
/** Randomness from the operating system's CSPRNG. */
declare class Crypto {
  readonly subtle: SubtleCrypto;
  getRandomValues<T extends Int8Array | Uint8Array | Uint8ClampedArray | Int16Array | Uint16Array | Int32Array |
                  Uint32Array | BigInt64Array | BigUint64Array>(array: T): T;
  randomUUID(): `${string}-${string}-${string}-${string}-${string}`;
}
declare var crypto: Crypto;

interface Performance {
  now(): number;
  readonly timeOrigin: number;
}
declare var performance: Performance;

interface EventInit { bubbles?: boolean; cancelable?: boolean; composed?: boolean }
declare class Event {
  constructor(type: string, init?: EventInit);
  readonly type: string;
  readonly target: EventTarget | null;
  readonly currentTarget: EventTarget | null;
  readonly eventPhase: number;
  readonly bubbles: boolean;
  readonly cancelable: boolean;
  readonly composed: boolean;
  readonly defaultPrevented: boolean;
  readonly isTrusted: boolean;
  readonly timeStamp: number;
  composedPath(): EventTarget[];
  preventDefault(): void;
  stopPropagation(): void;
  stopImmediatePropagation(): void;
}
type EventListenerOrObject = ((event: Event) => void) | { handleEvent(event: Event): void };
declare class EventTarget {
  addEventListener(type: string, listener: EventListenerOrObject | null,
                   options?: boolean | { capture?: boolean; once?: boolean; passive?: boolean; signal?: AbortSignal }): void;
  removeEventListener(type: string, listener: EventListenerOrObject | null, options?: boolean | { capture?: boolean }): void;
  /** Listeners' errors are logged, not thrown; returns false when a listener called preventDefault(). */
  dispatchEvent(event: Event): boolean;
}
declare class AbortSignal extends EventTarget {
  static abort(reason?: any): AbortSignal;
  /** Aborts with a "TimeoutError" DOMException after ms (a timer on the server's event loop). */
  static timeout(ms: number): AbortSignal;
  static any(signals: Iterable<AbortSignal>): AbortSignal;
  readonly aborted: boolean;
  readonly reason: any;
  onabort: ((event: Event) => void) | null;
  throwIfAborted(): void;
}
declare class AbortController {
  readonly signal: AbortSignal;
  abort(reason?: any): void;
}
declare class DOMException extends Error {
  constructor(message?: string, name?: string);
  readonly code: number;
}

type HeadersInit = Headers | Record<string, string> | Iterable<[string, string]>;
declare class Headers implements Iterable<[string, string]> {
  constructor(init?: HeadersInit);
  append(name: string, value: string): void;
  delete(name: string): void;
  get(name: string): string | null;
  getSetCookie(): string[];
  has(name: string): boolean;
  set(name: string, value: string): void;
  forEach(callback: (value: string, key: string, parent: Headers) => void, thisArg?: any): void;
  entries(): IterableIterator<[string, string]>;
  keys(): IterableIterator<string>;
  values(): IterableIterator<string>;
  [Symbol.iterator](): IterableIterator<[string, string]>;
}
/** A body is held whole: there are no streams in the sandbox (`body` is always null). */
type BodyInit = string | ArrayBuffer | ArrayBufferView | URLSearchParams;
interface Body {
  readonly body: null;
  readonly bodyUsed: boolean;
  arrayBuffer(): Promise<ArrayBuffer>;
  bytes(): Promise<Uint8Array>;
  text(): Promise<string>;
  json(): Promise<any>;
}
interface RequestInit {
  method?: string;
  headers?: HeadersInit;
  body?: BodyInit | null;
  signal?: AbortSignal | null;
  redirect?: "follow" | "error" | "manual";
}
declare class Request implements Body {
  constructor(input: string | URL | Request, init?: RequestInit);
  readonly url: string;
  readonly method: string;
  readonly headers: Headers;
  readonly signal: AbortSignal;
  readonly redirect: "follow" | "error" | "manual";
  readonly body: null;
  readonly bodyUsed: boolean;
  arrayBuffer(): Promise<ArrayBuffer>;
  bytes(): Promise<Uint8Array>;
  text(): Promise<string>;
  json(): Promise<any>;
  clone(): Request;
}
interface ResponseInit { status?: number; statusText?: string; headers?: HeadersInit }
declare class Response implements Body {
  constructor(body?: BodyInit | null, init?: ResponseInit);
  static json(data: any, init?: ResponseInit): Response;
  static error(): Response;
  static redirect(url: string | URL, status?: 301 | 302 | 303 | 307 | 308): Response;
  readonly status: number;
  readonly statusText: string;
  readonly ok: boolean;
  readonly headers: Headers;
  readonly type: "default" | "basic" | "error";
  readonly url: string;
  readonly redirected: boolean;
  readonly body: null;
  readonly bodyUsed: boolean;
  arrayBuffer(): Promise<ArrayBuffer>;
  bytes(): Promise<Uint8Array>;
  text(): Promise<string>;
  json(): Promise<any>;
  clone(): Response;
}
/**
 * An HTTP request run by the server, to the origins `--allow-fetch` names only (else, and for a
 * redirect elsewhere, a TypeError), within `--fetch-timeout` and `--fetch-max-size`.
 */
declare function fetch(input: string | URL | Request, init?: RequestInit): Promise<Response>;
