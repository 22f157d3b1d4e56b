// Types of dieselengine's client, served at /_diesel/client.d.ts beside /_diesel/client.js.

export interface ClientOptions {
  /** WebSocket subprotocols to offer. */
  protocols?: string | string[];
  /** Milliseconds before the first reconnect attempt (default 500). */
  minDelay?: number;
  /** The longest wait between attempts, in milliseconds (default 15000). */
  maxDelay?: number;
  /** Each failed attempt multiplies the wait by this (default 2). */
  factor?: number;
  /** 0..1: each wait is shortened by up to this fraction, at random, so that clients dropped
   *  together do not all come back at the same moment (default 0.5). */
  jitter?: number;
  /** Messages kept while disconnected; `send` returns false past it (default 1000). */
  maxQueue?: number;
  /** An attempt not open after this many milliseconds is abandoned and retried (default 10000). */
  connectTimeout?: number;
  /** How binary messages arrive (default "arraybuffer"). */
  binaryType?: "arraybuffer" | "blob";
  /** Whether to reconnect after the connection closed with this code. Default: only after the
   *  transient ones (1001 going away, 1005, 1006 dropped, 1011-1014 server trouble), not after a
   *  close the server meant (1000, 1008 policy, 1009 too big, 4000-4999 the application's). */
  shouldReconnect?: (code: number, reason: string) => boolean;
  /** The WebSocket class where the runtime has none (e.g. `ws`'s in Node 20). */
  WebSocket?: { new (url: string, protocols?: string | string[]): WebSocket };
}

export type ClientState = "connecting" | "open" | "reconnecting" | "closed";

export interface CloseInfo {
  code: number;
  reason: string;
  /** True if another attempt follows after `delay` milliseconds. */
  reconnecting: boolean;
  delay: number;
}

export interface ClientEvents {
  open: { url: string };
  close: CloseInfo;
  /** Every message as received: a string, or binary data (an ArrayBuffer by default). */
  message: string | ArrayBuffer | Blob;
  /** Text messages that parse as JSON, parsed. */
  json: any;
  error: unknown;
}

export declare class DieselClient {
  constructor(url: string, options?: ClientOptions);
  /** The resolved ws:// or wss:// address. */
  readonly url: string;
  readonly state: ClientState;
  /** Failed attempts since the last open connection. */
  readonly attempts: number;
  /** Messages waiting for the connection to (re)open. */
  readonly queued: number;
  /** Calls `listener` for each event of `type`; returns a function that removes it. */
  on<K extends keyof ClientEvents>(type: K, listener: (value: ClientEvents[K]) => void): () => void;
  off<K extends keyof ClientEvents>(type: K, listener: (value: ClientEvents[K]) => void): void;
  /** Sends now when open, else queues in order; false if dropped (closed, or the queue is full). */
  send(data: string | ArrayBuffer | ArrayBufferView | Blob): boolean;
  /** `send(JSON.stringify(value))`. */
  sendJSON(value: unknown): boolean;
  /** Closes for good (no reconnecting); what is queued is dropped. */
  close(code?: number, reason?: string): void;
  /** While waiting to reconnect: try now. */
  reconnect(): void;
}

/** `new DieselClient(url, options)`: a client that starts connecting at once. */
export declare function connect(url: string, options?: ClientOptions): DieselClient;
