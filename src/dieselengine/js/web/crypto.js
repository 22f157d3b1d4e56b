// crypto (Web Crypto): getRandomValues and randomUUID from the operating system's CSPRNG, and in
// crypto.subtle the digests SHA-1/256/384/512 and HMAC keys (importKey, exportKey, sign, verify,
// generateKey). The work is done by the server (Python's `secrets`, `hashlib`, `hmac`), reached
// through `host(op, ...)`; nothing here computes a cryptographic function itself.
{
  const HASHES = { "SHA-1": 1, "SHA-256": 1, "SHA-384": 1, "SHA-512": 1 };
  const BLOCK = { "SHA-1": 512, "SHA-256": 512, "SHA-384": 1024, "SHA-512": 1024 };
  const INTEGER_ARRAYS = [Int8Array, Uint8Array, Uint8ClampedArray, Int16Array, Uint16Array, Int32Array,
                          Uint32Array, BigInt64Array, BigUint64Array];
  const hex = [];
  for (let i = 0; i < 256; i++) hex.push((i < 16 ? "0" : "") + i.toString(16));

  function random(n) {
    return fromBase64(host("random", n));
  }

  function bytesOf(data, what) {
    if (data instanceof ArrayBuffer) return new Uint8Array(data);
    if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    throw new TypeError(`${what}: the data must be an ArrayBuffer, a typed array or a DataView`);
  }

  function b64(bytes) { return toBase64.call(bytes); }

  function hashName(alg, what) {
    const name = typeof alg === "string" ? alg : alg?.name;
    const upper = String(name).toUpperCase();
    if (!HASHES[upper]) throw new DOMException(`${what}: unsupported hash ${name} (SHA-1, SHA-256, SHA-384 or SHA-512)`, "NotSupportedError");
    return upper;
  }

  const KEY = Symbol("key");
  class CryptoKey {
    #type; #extractable; #algorithm; #usages;
    constructor(key, type, extractable, algorithm, usages, raw) {
      if (key !== KEY) throw new TypeError("CryptoKey: use crypto.subtle.importKey() or generateKey()");
      this.#type = type; this.#extractable = extractable; this.#algorithm = algorithm; this.#usages = usages;
      keys.set(this, raw);
    }
    get type() { return this.#type; }
    get extractable() { return this.#extractable; }
    get algorithm() { return { ...this.#algorithm, hash: { ...this.#algorithm.hash } }; }
    get usages() { return [...this.#usages]; }
  }
  const keys = new WeakMap();  // CryptoKey -> base64 of its raw bytes, out of the script's reach

  function hmacKey(key, usage, what) {
    if (!(key instanceof CryptoKey) || key.algorithm.name !== "HMAC") throw new DOMException(`${what}: the key is not an HMAC key`, "InvalidAccessError");
    if (!key.usages.includes(usage)) throw new DOMException(`${what}: the key cannot be used to ${usage}`, "InvalidAccessError");
    return [key.algorithm.hash.name, keys.get(key)];
  }

  function algName(alg) {
    return String(typeof alg === "string" ? alg : alg?.name).toUpperCase();
  }

  function usagesOf(usages, what) {
    const list = [...usages].map(String);
    for (const u of list) if (u !== "sign" && u !== "verify") throw new SyntaxError(`${what}: an HMAC key's usages are "sign" and "verify", not "${u}"`);
    return list;
  }

  // Each method is async: its errors reject its promise, as the spec has it.
  class SubtleCrypto {
    async digest(algorithm, data) {
      const name = hashName(algorithm, "digest");
      return fromBase64(host("digest", name, b64(bytesOf(data, "digest")))).buffer;
    }
    async importKey(format, keyData, algorithm, extractable, usages) {
      if (algName(algorithm) !== "HMAC") throw new DOMException(`importKey: unsupported algorithm ${algorithm?.name ?? algorithm} (HMAC)`, "NotSupportedError");
      if (format !== "raw") throw new DOMException(`importKey: unsupported format ${format} ("raw")`, "NotSupportedError");
      const hash = hashName(algorithm.hash, "importKey");
      const raw = bytesOf(keyData, "importKey");
      if (raw.length === 0) throw new DOMException("importKey: the key is empty", "DataError");
      const length = algorithm.length === undefined ? raw.length * 8 : Number(algorithm.length);
      return new CryptoKey(KEY, "secret", Boolean(extractable), { name: "HMAC", hash: { name: hash }, length },
                           usagesOf(usages, "importKey"), b64(raw));
    }
    async generateKey(algorithm, extractable, usages) {
      if (algName(algorithm) !== "HMAC") throw new DOMException(`generateKey: unsupported algorithm (HMAC)`, "NotSupportedError");
      const hash = hashName(algorithm.hash, "generateKey");
      const length = algorithm.length === undefined ? BLOCK[hash] : Number(algorithm.length);
      return new CryptoKey(KEY, "secret", Boolean(extractable), { name: "HMAC", hash: { name: hash }, length },
                           usagesOf(usages, "generateKey"), b64(random(Math.ceil(length / 8))));
    }
    async exportKey(format, key) {
      if (!(key instanceof CryptoKey)) throw new TypeError("exportKey: not a CryptoKey");
      if (format !== "raw") throw new DOMException(`exportKey: unsupported format ${format} ("raw")`, "NotSupportedError");
      if (!key.extractable) throw new DOMException("exportKey: the key is not extractable", "InvalidAccessError");
      return fromBase64(keys.get(key)).buffer;
    }
    async sign(algorithm, key, data) {
      if (algName(algorithm) !== "HMAC") throw new DOMException("sign: unsupported algorithm (HMAC)", "NotSupportedError");
      const [hash, raw] = hmacKey(key, "sign", "sign");
      return fromBase64(host("hmac", hash, raw, b64(bytesOf(data, "sign")))).buffer;
    }
    async verify(algorithm, key, signature, data) {
      if (algName(algorithm) !== "HMAC") throw new DOMException("verify: unsupported algorithm (HMAC)", "NotSupportedError");
      const [hash, raw] = hmacKey(key, "verify", "verify");
      return host("verify", hash, raw, b64(bytesOf(data, "verify")), b64(bytesOf(signature, "verify")));
    }
  }

  const subtle = new SubtleCrypto();
  class Crypto {
    get subtle() { return subtle; }
    getRandomValues(array) {
      if (!INTEGER_ARRAYS.some((T) => array instanceof T)) {
        throw new DOMException("getRandomValues: the array must be an integer typed array", "TypeMismatchError");
      }
      if (array.byteLength > 65536) {
        throw new DOMException(`getRandomValues: ${array.byteLength} bytes asked for, at most 65536`, "QuotaExceededError");
      }
      if (array.byteLength) new Uint8Array(array.buffer, array.byteOffset, array.byteLength).set(random(array.byteLength));
      return array;
    }
    randomUUID() {
      const b = random(16);
      b[6] = (b[6] & 0x0f) | 0x40;
      b[8] = (b[8] & 0x3f) | 0x80;
      let s = "";
      for (let i = 0; i < 16; i++) s += (i === 4 || i === 6 || i === 8 || i === 10 ? "-" : "") + hex[b[i]];
      return s;
    }
  }

  define("crypto", new Crypto());
  define("Crypto", Crypto);
  define("CryptoKey", CryptoKey);
  define("SubtleCrypto", SubtleCrypto);
}
