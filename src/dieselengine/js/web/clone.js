// structuredClone (HTML's structured serialize/deserialize, in one pass): primitives, their wrapper
// objects, Date, RegExp, ArrayBuffer, typed arrays, DataView, Map, Set, Array, Error and plain
// objects (own enumerable string keys), with shared references and cycles kept. Functions,
// symbols, class instances' prototypes and other host objects throw a DataCloneError.
{
  const TYPED = [Int8Array, Uint8Array, Uint8ClampedArray, Int16Array, Uint16Array, Int32Array, Uint32Array,
                 Float16Array, Float32Array, Float64Array, BigInt64Array, BigUint64Array].filter(Boolean);
  const ERRORS = { Error, EvalError, RangeError, ReferenceError, SyntaxError, TypeError, URIError };
  const toString = Object.prototype.toString;

  function fail(what) {
    return new DOMException(`${what} could not be cloned.`, "DataCloneError");
  }

  function clone(value, memory) {
    if (value === null || (typeof value !== "object" && typeof value !== "function")) {
      if (typeof value === "symbol") throw fail(String(value));
      return value;
    }
    if (typeof value === "function") throw fail(`${value.name || "function"}()`);
    if (memory.has(value)) return memory.get(value);
    const tag = toString.call(value);
    let out;
    switch (tag) {
      case "[object Boolean]": out = Object(Boolean.prototype.valueOf.call(value)); break;
      case "[object Number]": out = Object(Number.prototype.valueOf.call(value)); break;
      case "[object String]": out = Object(String.prototype.valueOf.call(value)); break;
      case "[object BigInt]": out = Object(BigInt.prototype.valueOf.call(value)); break;
      case "[object Date]": out = new Date(Date.prototype.getTime.call(value)); break;
      case "[object RegExp]": out = new RegExp(value.source, value.flags); break;
      case "[object ArrayBuffer]": out = value.slice(0); break;
      case "[object DataView]":
        out = new DataView(clone(value.buffer, memory), value.byteOffset, value.byteLength); break;
      case "[object Map]":
        out = new Map(); memory.set(value, out);
        for (const [k, v] of value) out.set(clone(k, memory), clone(v, memory));
        return out;
      case "[object Set]":
        out = new Set(); memory.set(value, out);
        for (const v of value) out.add(clone(v, memory));
        return out;
      case "[object Array]":
        out = new Array(value.length); memory.set(value, out);
        for (const k of Object.keys(value)) out[k] = clone(value[k], memory);
        return out;
      case "[object Error]": {
        const C = ERRORS[value.name] || Error;
        out = Object.create(C.prototype);
        memory.set(value, out);
        const desc = { writable: true, configurable: true };
        if (value.message !== undefined) Object.defineProperty(out, "message", { ...desc, value: String(value.message) });
        if (value.stack !== undefined) Object.defineProperty(out, "stack", { ...desc, value: String(value.stack) });
        if ("cause" in value) Object.defineProperty(out, "cause", { ...desc, value: clone(value.cause, memory) });
        return out;
      }
      case "[object Object]": {
        const proto = Object.getPrototypeOf(value);
        if (proto !== Object.prototype && proto !== null && !ArrayBuffer.isView(value)) {
          // class instances lose their prototype, as in browsers; host objects cannot be cloned
          if (value instanceof EventTarget || value instanceof Event || value instanceof Promise ||
              value instanceof WeakMap || value instanceof WeakSet) throw fail(tag);
        }
        out = {}; memory.set(value, out);
        for (const k of Object.keys(value)) out[k] = clone(value[k], memory);
        return out;
      }
      default:
        if (ArrayBuffer.isView(value)) {
          const C = TYPED.find((T) => value instanceof T);
          if (!C) throw fail(tag);
          out = new C(clone(value.buffer, memory), value.byteOffset, value.length);
          break;
        }
        throw fail(tag);
    }
    memory.set(value, out);
    return out;
  }

  function structuredClone(value, options = undefined) {
    if (arguments.length === 0) throw new TypeError("structuredClone: 1 argument required");
    const transfer = options?.transfer ?? [];
    for (const t of transfer) {
      if (!(t instanceof ArrayBuffer)) throw new DOMException("Only ArrayBuffers can be transferred", "DataCloneError");
    }
    const memory = new Map();
    for (const t of transfer) memory.set(t, t.transfer());
    return clone(value, memory);
  }

  define("structuredClone", structuredClone);
}
