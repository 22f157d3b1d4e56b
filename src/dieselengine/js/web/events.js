// Event, EventTarget, AbortController and AbortSignal (WHATWG DOM), without a DOM: no capture or
// bubbling phases, a target is its own only node. Errors thrown by listeners are reported on the
// console, as browsers do, and never reach the code that dispatched the event.
{
  const NONE_PHASE = 0, AT_TARGET = 2;

  class Event {
    #type; #bubbles; #cancelable; #composed; #canceled = false; #stop = false; #stopNow = false;
    #target = null; #current = null; #phase = NONE_PHASE; #dispatching = false; #passive = false;
    #time = performance.now();
    constructor(type, init = {}) {
      if (arguments.length === 0) throw new TypeError("Event: the type is required");
      this.#type = String(type);
      this.#bubbles = Boolean(init?.bubbles);
      this.#cancelable = Boolean(init?.cancelable);
      this.#composed = Boolean(init?.composed);
    }
    get type() { return this.#type; }
    get target() { return this.#target; }
    get srcElement() { return this.#target; }
    get currentTarget() { return this.#current; }
    get eventPhase() { return this.#phase; }
    get bubbles() { return this.#bubbles; }
    get cancelable() { return this.#cancelable; }
    get composed() { return this.#composed; }
    get defaultPrevented() { return this.#canceled; }
    get returnValue() { return !this.#canceled; }
    get isTrusted() { return false; }
    get timeStamp() { return this.#time; }
    get cancelBubble() { return this.#stop; }
    set cancelBubble(v) { if (v) this.#stop = true; }
    composedPath() { return this.#current ? [this.#current] : []; }
    preventDefault() { if (this.#cancelable && !this.#passive) this.#canceled = true; }
    stopPropagation() { this.#stop = true; }
    stopImmediatePropagation() { this.#stop = this.#stopNow = true; }

    static dispatch(event, target, listeners) {
      if (event.#dispatching) throw new DOMException("The event is already being dispatched", "InvalidStateError");
      event.#dispatching = true;
      event.#target = event.#current = target;
      event.#phase = AT_TARGET;
      try {
        for (const entry of listeners) {
          if (entry.removed) continue;
          if (entry.once) entry.remove();
          event.#passive = entry.passive;
          try {
            const l = entry.listener;
            if (typeof l === "function") l.call(target, event);
            else if (l && typeof l.handleEvent === "function") l.handleEvent(event);
          } catch (error) {
            reportError(error);
          }
          event.#passive = false;
          if (event.#stopNow) break;
        }
      } finally {
        event.#dispatching = false;
        event.#current = null;
        event.#phase = NONE_PHASE;
        event.#stop = event.#stopNow = false;
      }
      return !event.#canceled;
    }
  }
  Object.assign(Event, { NONE: 0, CAPTURING_PHASE: 1, AT_TARGET: 2, BUBBLING_PHASE: 3 });
  const dispatch = Event.dispatch;
  delete Event.dispatch;

  function flags(options) {
    if (typeof options === "boolean") return { capture: options, once: false, passive: false, signal: undefined };
    return { capture: Boolean(options?.capture), once: Boolean(options?.once), passive: Boolean(options?.passive),
             signal: options?.signal };
  }

  class EventTarget {
    #listeners = new Map();  // type -> [{listener, capture, once, passive, removed, remove}]
    addEventListener(type, listener, options) {
      if (listener == null) return;
      const f = flags(options);
      if (f.signal !== undefined && !(f.signal instanceof AbortSignal)) {
        throw new TypeError("addEventListener: options.signal must be an AbortSignal");
      }
      if (f.signal?.aborted) return;
      type = String(type);
      let list = this.#listeners.get(type);
      if (!list) this.#listeners.set(type, list = []);
      if (list.some((e) => e.listener === listener && e.capture === f.capture)) return;
      const entry = { listener, capture: f.capture, once: f.once, passive: f.passive, removed: false,
                      remove: () => this.removeEventListener(type, listener, { capture: f.capture }) };
      list.push(entry);
      f.signal?.addEventListener("abort", entry.remove);
    }
    removeEventListener(type, listener, options) {
      const capture = typeof options === "boolean" ? options : Boolean(options?.capture);
      const list = this.#listeners.get(String(type));
      if (!list) return;
      const i = list.findIndex((e) => e.listener === listener && e.capture === capture);
      if (i >= 0) { list[i].removed = true; list.splice(i, 1); }
    }
    dispatchEvent(event) {
      if (!(event instanceof Event)) throw new TypeError("dispatchEvent: the argument must be an Event");
      const list = this.#listeners.get(event.type);
      return dispatch(event, this, list ? list.slice() : []);
    }
  }

  function reportError(error) {
    console.error("uncaught error in an event listener:", error instanceof Error ? (error.stack ? `${error}\n${error.stack}` : error) : error);
  }

  let makeSignal;
  class AbortSignal extends EventTarget {
    #aborted = false; #reason = undefined; #onabort = null;
    constructor(key) {
      if (key !== makeSignal) throw new TypeError("AbortSignal: use an AbortController or AbortSignal.abort()/timeout()");
      super();
    }
    get aborted() { return this.#aborted; }
    get reason() { return this.#reason; }
    get onabort() { return this.#onabort; }
    set onabort(f) {
      if (this.#onabort) this.removeEventListener("abort", this.#onabort);
      this.#onabort = typeof f === "function" ? f : null;
      if (this.#onabort) this.addEventListener("abort", this.#onabort);
    }
    throwIfAborted() { if (this.#aborted) throw this.#reason; }
    static abort(reason) {
      const s = new AbortSignal(makeSignal);
      s.#signal(reason === undefined ? new DOMException("This operation was aborted", "AbortError") : reason, false);
      return s;
    }
    static timeout(ms) {
      ms = Number(ms);
      if (!(ms >= 0) || ms > Number.MAX_SAFE_INTEGER) throw new TypeError("AbortSignal.timeout: ms must be a non-negative number");
      const s = new AbortSignal(makeSignal);
      setTimeout(() => s.#signal(new DOMException("The operation timed out.", "TimeoutError"), true), ms);
      return s;
    }
    static any(signals) {
      const s = new AbortSignal(makeSignal);
      for (const other of signals) {
        if (!(other instanceof AbortSignal)) throw new TypeError("AbortSignal.any: every element must be an AbortSignal");
        if (other.aborted) { s.#signal(other.reason, false); return s; }
      }
      for (const other of signals) other.addEventListener("abort", () => s.#signal(other.reason, true), { once: true });
      return s;
    }
    #signal(reason, fire) {
      if (this.#aborted) return;
      this.#aborted = true;
      this.#reason = reason;
      if (fire) this.dispatchEvent(new Event("abort"));
    }
    static _abort(signal, reason) { signal.#signal(reason, true); }
  }
  const abortSignal = AbortSignal._abort;
  delete AbortSignal._abort;
  makeSignal = Symbol("AbortSignal");

  class AbortController {
    #signal = new AbortSignal(makeSignal);
    get signal() { return this.#signal; }
    abort(reason) {
      abortSignal(this.#signal, reason === undefined ? new DOMException("This operation was aborted", "AbortError") : reason);
    }
  }

  define("Event", Event);
  define("EventTarget", EventTarget);
  define("AbortSignal", AbortSignal);
  define("AbortController", AbortController);
}
