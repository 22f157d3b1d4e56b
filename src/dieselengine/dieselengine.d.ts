// TypeScript declarations for dieselengine JavaScript handler scripts.
//
// A handler script is an ES module exporting any of onOpen, onMessage and onClose:
//
//   /// <reference path="dieselengine.d.ts" />
//   import type { WebSocketSession } from "dieselengine";
//   export function onMessage(session: WebSocketSession, message: string | Uint8Array) { ... }
//
// Or, in plain JavaScript, with JSDoc: `/** @param {WebSocketSession} session */`. The file ships in
// the Python package (`python -c "import dieselengine, pathlib; print(pathlib.Path(dieselengine.__file__).parent)"`).
//
// Scripts run in a sandbox: the JavaScript language, `console`, `server`, timers and `queueMicrotask`; no
// file system, network, process or environment. Only relative imports of `.js` helper modules
// inside the served folder (`import { fmt } from "./_util.js"`) are allowed.

/** What `send`, `broadcast` and `broadcastExcept` accept: a string is a text frame, bytes a binary frame. */
type WebSocketPayload = string | ArrayBuffer | ArrayBufferView;

/** A room handle, from `session.room(name)`. Rooms are server-wide: every route (JavaScript or
 * Python) shares one namespace, and across a cluster when the server runs with `--cluster`. */
interface WebSocketRoom {
  /** Join this room (idempotent). Rooms are created lazily on first join. */
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
