// TextEncoder and TextDecoder (WHATWG Encoding): UTF-8 only, the one encoding a server needs;
// TextDecoder has `fatal`, `ignoreBOM` and streaming decode (`{stream: true}`) as specified.
{
  const fromCharCode = String.fromCharCode;

  function bytesOf(input, what) {
    if (input === undefined) return new Uint8Array(0);
    if (input instanceof ArrayBuffer || input instanceof SharedArrayBuffer) return new Uint8Array(input);
    if (ArrayBuffer.isView(input)) return new Uint8Array(input.buffer, input.byteOffset, input.byteLength);
    throw new TypeError(what + ": the input must be an ArrayBuffer, a typed array or a DataView");
  }

  // UTF-8 of a string; lone surrogates become U+FFFD (USVString conversion).
  function encodeInto(s, out, limit) {
    let w = 0, i = 0;
    const n = s.length;
    for (; i < n; i++) {
      let c = s.charCodeAt(i);
      if (c < 0x80) {
        if (w >= limit) break;
        out[w++] = c;
        continue;
      }
      let size = 2;
      if (c >= 0xd800 && c <= 0xdfff) {
        const d = i + 1 < n ? s.charCodeAt(i + 1) : 0;
        if (c <= 0xdbff && d >= 0xdc00 && d <= 0xdfff) { c = 0x10000 + ((c - 0xd800) << 10) + (d - 0xdc00); size = 4; }
        else { c = 0xfffd; size = 3; }
      } else if (c >= 0x800) size = 3;
      if (w + size > limit) break;
      if (size === 2) { out[w++] = 0xc0 | (c >> 6); }
      else if (size === 3) { out[w++] = 0xe0 | (c >> 12); out[w++] = 0x80 | ((c >> 6) & 63); }
      else { out[w++] = 0xf0 | (c >> 18); out[w++] = 0x80 | ((c >> 12) & 63); out[w++] = 0x80 | ((c >> 6) & 63); i++; }
      out[w++] = 0x80 | (c & 63);
    }
    return [i, w];
  }

  class TextEncoder {
    get encoding() { return "utf-8"; }
    encode(input = "") {
      const s = String(input);
      const out = new Uint8Array(s.length * 3);
      const [, w] = encodeInto(s, out, out.length);
      return out.slice(0, w);
    }
    encodeInto(source, destination) {
      if (!(destination instanceof Uint8Array)) throw new TypeError("encodeInto: the destination must be a Uint8Array");
      const [read, written] = encodeInto(String(source), destination, destination.length);
      return { read, written };
    }
  }

  const LABELS = ["utf-8", "utf8", "unicode-1-1-utf-8", "unicode11utf8", "unicode20utf8", "x-unicode20utf8"];

  class TextDecoder {
    #fatal; #ignoreBOM; #need = 0; #seen = 0; #cp = 0; #lower = 0x80; #upper = 0xbf; #bomSeen = false;
    constructor(label = "utf-8", options = {}) {
      const l = String(label).trim().toLowerCase();
      if (!LABELS.includes(l)) throw new RangeError(`TextDecoder: the encoding "${label}" is not supported (only UTF-8)`);
      this.#fatal = Boolean(options?.fatal);
      this.#ignoreBOM = Boolean(options?.ignoreBOM);
    }
    get encoding() { return "utf-8"; }
    get fatal() { return this.#fatal; }
    get ignoreBOM() { return this.#ignoreBOM; }

    decode(input, options = {}) {
      const bytes = bytesOf(input, "TextDecoder.decode");
      const stream = Boolean(options?.stream);
      const units = [];
      let out = "";
      const error = () => {
        if (this.#fatal) {
          this.#need = this.#seen = 0; this.#lower = 0x80; this.#upper = 0xbf; this.#bomSeen = false;
          throw new TypeError("TextDecoder: the data is not valid UTF-8");
        }
        units.push(0xfffd);
      };
      for (let i = 0; i < bytes.length; i++) {
        const b = bytes[i];
        if (this.#need === 0) {
          if (b < 0x80) { units.push(b); }
          else if (b >= 0xc2 && b <= 0xdf) { this.#need = 1; this.#cp = b & 0x1f; }
          else if (b >= 0xe0 && b <= 0xef) {
            if (b === 0xe0) this.#lower = 0xa0;
            if (b === 0xed) this.#upper = 0x9f;
            this.#need = 2; this.#cp = b & 0xf;
          } else if (b >= 0xf0 && b <= 0xf4) {
            if (b === 0xf0) this.#lower = 0x90;
            if (b === 0xf4) this.#upper = 0x8f;
            this.#need = 3; this.#cp = b & 0x7;
          } else error();
        } else if (b < this.#lower || b > this.#upper) {
          this.#need = this.#seen = this.#cp = 0; this.#lower = 0x80; this.#upper = 0xbf;
          error();
          i--;  // the byte is processed again as the start of a sequence
        } else {
          this.#lower = 0x80; this.#upper = 0xbf;
          this.#cp = (this.#cp << 6) | (b & 0x3f);
          if (++this.#seen === this.#need) {
            const cp = this.#cp;
            this.#need = this.#seen = this.#cp = 0;
            if (cp > 0xffff) units.push(0xd800 + ((cp - 0x10000) >> 10), 0xdc00 + ((cp - 0x10000) & 0x3ff));
            else units.push(cp);
          }
        }
        if (units.length >= 8192) { out += fromCharCode.apply(null, units); units.length = 0; }
      }
      if (!stream && this.#need !== 0) {
        this.#need = this.#seen = this.#cp = 0; this.#lower = 0x80; this.#upper = 0xbf;
        error();
      }
      out += fromCharCode.apply(null, units);
      if (!this.#bomSeen && out.length) {
        this.#bomSeen = true;
        if (!this.#ignoreBOM && out.charCodeAt(0) === 0xfeff) out = out.slice(1);
      }
      if (!stream) this.#bomSeen = false;
      return out;
    }
  }

  define("TextEncoder", TextEncoder);
  define("TextDecoder", TextDecoder);
}
