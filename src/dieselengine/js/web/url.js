// URL and URLSearchParams (WHATWG URL Standard): the basic URL parser's state machine, special
// schemes, IPv4 and IPv6 hosts, percent-encoding sets, relative resolution, and
// application/x-www-form-urlencoded. Missing: international domain names (IDNA); a host with
// non-ASCII characters is rejected as invalid.
{
  const SPECIAL = { "ftp": 21, "file": null, "http": 80, "https": 443, "ws": 80, "wss": 443 };
  const isSpecial = (scheme) => Object.hasOwn(SPECIAL, scheme);
  const ALPHA = /[A-Za-z]/, ALNUM_PLUS = /[A-Za-z0-9+\-.]/, HEX = /^[0-9A-Fa-f]$/;
  const encoder = new TextEncoder(), decoder = new TextDecoder();

  // Percent-encode sets, as predicates over a code point.
  const c0 = (c) => c < 0x20 || c > 0x7e;
  const fragmentSet = (c) => c0(c) || c === 0x20 || c === 0x22 || c === 0x3c || c === 0x3e || c === 0x60;
  const querySet = (c) => c0(c) || c === 0x20 || c === 0x22 || c === 0x23 || c === 0x3c || c === 0x3e;
  const specialQuerySet = (c) => querySet(c) || c === 0x27;
  const pathSet = (c) => querySet(c) || c === 0x3f || c === 0x5e || c === 0x60 || c === 0x7b || c === 0x7d;
  const userinfoSet = (c) => pathSet(c) || c === 0x2f || c === 0x3a || c === 0x3b || c === 0x3d || c === 0x40 ||
                             (c >= 0x5b && c <= 0x5d) || c === 0x7c;
  const componentSet = (c) => userinfoSet(c) || (c >= 0x24 && c <= 0x26) || c === 0x2b || c === 0x2c;
  const formSet = (c) => componentSet(c) || c === 0x21 || (c >= 0x27 && c <= 0x29) || c === 0x7e;

  function encode(s, set, spaceAsPlus = false) {
    let out = "";
    for (const ch of s) {
      const c = ch.codePointAt(0);
      if (spaceAsPlus && c === 0x20) out += "+";
      else if (!set(c)) out += ch;
      else for (const b of encoder.encode(ch)) out += "%" + (b < 16 ? "0" : "") + b.toString(16).toUpperCase();
    }
    return out;
  }

  function percentDecode(s) {
    const bytes = encoder.encode(s);
    const out = [];
    for (let i = 0; i < bytes.length; i++) {
      const b = bytes[i];
      if (b === 0x25 && i + 2 < bytes.length && HEX.test(String.fromCharCode(bytes[i + 1])) && HEX.test(String.fromCharCode(bytes[i + 2]))) {
        out.push(parseInt(String.fromCharCode(bytes[i + 1], bytes[i + 2]), 16));
        i += 2;
      } else out.push(b);
    }
    return new Uint8Array(out);
  }

  function invalid(input, why) {
    return new TypeError(`Invalid URL: ${JSON.stringify(String(input))}${why ? " (" + why + ")" : ""}`);
  }

  // ---- hosts --------------------------------------------------------------------------------

  function parseIPv4Number(s) {
    if (s === "") return NaN;
    let radix = 10;
    if (s.length >= 2 && (s.startsWith("0x") || s.startsWith("0X"))) { s = s.slice(2); radix = 16; }
    else if (s.length >= 2 && s[0] === "0") { s = s.slice(1); radix = 8; }
    if (s === "") return 0;
    const re = radix === 10 ? /^[0-9]+$/ : radix === 16 ? /^[0-9A-Fa-f]+$/ : /^[0-7]+$/;
    return re.test(s) ? parseInt(s, radix) : NaN;
  }

  function endsInNumber(host) {
    const parts = host.split(".");
    if (parts[parts.length - 1] === "") { if (parts.length === 1) return false; parts.pop(); }
    const last = parts[parts.length - 1];
    if (last !== "" && /^[0-9]+$/.test(last)) return true;
    return !Number.isNaN(parseIPv4Number(last)) && /^0[xX]/.test(last);
  }

  function parseIPv4(host, input) {
    const parts = host.split(".");
    if (parts[parts.length - 1] === "" && parts.length > 1) parts.pop();
    if (parts.length > 4) throw invalid(input, "bad IPv4 address");
    const nums = parts.map(parseIPv4Number);
    if (nums.some(Number.isNaN)) throw invalid(input, "bad IPv4 address");
    if (nums.slice(0, -1).some((n) => n > 255) || nums[nums.length - 1] >= 256 ** (5 - nums.length)) throw invalid(input, "bad IPv4 address");
    let ipv4 = nums[nums.length - 1];
    for (let i = 0; i < nums.length - 1; i++) ipv4 += nums[i] * 256 ** (3 - i);
    const out = [];
    for (let i = 0; i < 4; i++) { out.unshift(ipv4 % 256); ipv4 = Math.floor(ipv4 / 256); }
    return out.join(".");
  }

  function parseIPv6(s, input) {
    const a = [0, 0, 0, 0, 0, 0, 0, 0];
    let piece = 0, compress = null, i = 0;
    const cp = (k) => s.charCodeAt(k);
    const bad = () => invalid(input, "bad IPv6 address");
    if (s[0] === ":") { if (s[1] !== ":") throw bad(); i = 2; compress = ++piece; }
    while (i < s.length) {
      if (piece === 8) throw bad();
      if (s[i] === ":") { if (compress !== null) throw bad(); i++; compress = ++piece; continue; }
      let value = 0, length = 0;
      while (length < 4 && i < s.length && HEX.test(s[i])) { value = value * 16 + parseInt(s[i], 16); i++; length++; }
      if (s[i] === ".") {
        if (length === 0 || piece > 6) throw bad();
        i -= length;
        let seen = 0;
        while (i < s.length) {
          let v4 = null;
          if (seen > 0) { if (s[i] === "." && seen < 4) i++; else throw bad(); }
          if (!(cp(i) >= 0x30 && cp(i) <= 0x39)) throw bad();
          while (cp(i) >= 0x30 && cp(i) <= 0x39) {
            const n = cp(i) - 0x30;
            if (v4 === null) v4 = n; else if (v4 === 0) throw bad(); else v4 = v4 * 10 + n;
            if (v4 > 255) throw bad();
            i++;
          }
          a[piece] = a[piece] * 256 + v4;
          seen++;
          if (seen === 2 || seen === 4) piece++;
        }
        if (seen !== 4) throw bad();
        break;
      } else if (s[i] === ":") { i++; if (i >= s.length) throw bad(); }
      else if (i < s.length) throw bad();
      a[piece++] = value;
    }
    if (compress !== null) {
      let swaps = piece - compress;
      piece = 7;
      while (piece !== 0 && swaps > 0) { const t = a[compress + swaps - 1]; a[compress + swaps - 1] = a[piece]; a[piece] = t; piece--; swaps--; }
    } else if (piece !== 8) throw bad();
    return a;
  }

  function serializeIPv6(a) {
    let best = -1, bestLen = 1;
    for (let i = 0; i < 8;) {
      if (a[i] !== 0) { i++; continue; }
      let j = i; while (j < 8 && a[j] === 0) j++;
      if (j - i > bestLen) { best = i; bestLen = j - i; }
      i = j;
    }
    let out = "";
    for (let i = 0; i < 8; i++) {
      if (i === best) { out += i === 0 ? "::" : ":"; i += bestLen - 1; continue; }
      out += a[i].toString(16) + (i < 7 ? ":" : "");
    }
    return "[" + out + "]";
  }

  const FORBIDDEN_HOST = /[\0\t\n\r #/:<>?@[\\\]^|]/;
  const FORBIDDEN_DOMAIN = /[\0-\x1f\t\n\r #%/:<>?@[\\\]^|\x7f]/;

  function parseHost(s, special, input) {
    if (s.startsWith("[")) {
      if (!s.endsWith("]")) throw invalid(input, "bad IPv6 address");
      return serializeIPv6(parseIPv6(s.slice(1, -1), input));
    }
    if (!special) {
      if (FORBIDDEN_HOST.test(s)) throw invalid(input, "forbidden host code point");
      return encode(s, c0);
    }
    const domain = decoder.decode(percentDecode(s));
    if (/[^\x00-\x7f]/.test(domain)) throw invalid(input, "international domain names are not supported");
    const ascii = domain.toLowerCase();
    if (ascii === "" || FORBIDDEN_DOMAIN.test(ascii)) throw invalid(input, "forbidden host code point");
    return endsInNumber(ascii) ? parseIPv4(ascii, input) : ascii;
  }

  // ---- the parser -----------------------------------------------------------------------------

  const isWinLetter = (s, normalizedOnly) => s.length === 2 && ALPHA.test(s[0]) && (s[1] === ":" || (!normalizedOnly && s[1] === "|"));
  const startsWithWinLetter = (cps, i) => cps.length - i >= 2 && isWinLetter(cps[i] + cps[i + 1], false) &&
    (cps.length - i === 2 || "/\\?#".includes(cps[i + 2]));

  function shorten(url) {
    const path = url.path;
    if (url.scheme === "file" && path.length === 1 && isWinLetter(path[0], true)) return;
    path.pop();
  }

  const SINGLE_DOT = [".", "%2e"], DOUBLE_DOT = ["..", ".%2e", "%2e.", "%2e%2e"];

  function parse(input, base) {
    const original = input;
    input = String(input).replace(/^[\0-\x20]+|[\0-\x20]+$/g, "").replace(/[\t\n\r]/g, "");
    const cps = Array.from(input);
    const url = { scheme: "", username: "", password: "", host: null, port: null, path: [], opaque: null, query: null, fragment: null };
    let state = "scheme start", buffer = "", atSign = false, inBrackets = false, passwordToken = false;
    let p = 0;
    for (; p <= cps.length; p++) {
      const c = cps[p];  // undefined: the end of the input (a state may step back to it)
      switch (state) {
        case "scheme start":
          if (c !== undefined && ALPHA.test(c)) { buffer += c.toLowerCase(); state = "scheme"; }
          else { state = "no scheme"; p--; }
          break;
        case "scheme":
          if (c !== undefined && ALNUM_PLUS.test(c)) buffer += c.toLowerCase();
          else if (c === ":") {
            url.scheme = buffer; buffer = "";
            if (url.scheme === "file") state = "file";
            else if (isSpecial(url.scheme) && base && base.scheme === url.scheme) state = "special relative or authority";
            else if (isSpecial(url.scheme)) state = "special authority slashes";
            else if (cps[p + 1] === "/") { state = "path or authority"; p++; }
            else { url.opaque = ""; state = "opaque path"; }
          } else { buffer = ""; state = "no scheme"; p = -1; }
          break;
        case "no scheme":
          if (!base || (base.opaque !== null && c !== "#")) throw invalid(original, base ? "" : "a relative URL needs a base");
          if (base.opaque !== null && c === "#") {
            url.scheme = base.scheme; url.opaque = base.opaque; url.query = base.query; url.fragment = ""; state = "fragment";
          } else if (base.scheme !== "file") { state = "relative"; p--; }
          else { state = "file"; p--; }
          break;
        case "special relative or authority":
          if (c === "/" && cps[p + 1] === "/") { state = "special authority ignore slashes"; p++; }
          else { state = "relative"; p--; }
          break;
        case "path or authority":
          if (c === "/") state = "authority"; else { state = "path"; p--; }
          break;
        case "relative":
          url.scheme = base.scheme;
          if (c === "/") state = "relative slash";
          else if (isSpecial(url.scheme) && c === "\\") state = "relative slash";
          else {
            url.username = base.username; url.password = base.password; url.host = base.host; url.port = base.port;
            url.path = base.path.slice(); url.query = base.query;
            if (c === "?") { url.query = ""; state = "query"; }
            else if (c === "#") { url.fragment = ""; state = "fragment"; }
            else if (c !== undefined) { url.query = null; shorten(url); state = "path"; p--; }
          }
          break;
        case "relative slash":
          if (isSpecial(url.scheme) && (c === "/" || c === "\\")) state = "special authority ignore slashes";
          else if (c === "/") state = "authority";
          else {
            url.username = base.username; url.password = base.password; url.host = base.host; url.port = base.port;
            state = "path"; p--;
          }
          break;
        case "special authority slashes":
          if (c === "/" && cps[p + 1] === "/") { state = "special authority ignore slashes"; p++; }
          else { state = "special authority ignore slashes"; p--; }
          break;
        case "special authority ignore slashes":
          if (c !== "/" && c !== "\\") { state = "authority"; p--; }
          break;
        case "authority":
          if (c === "@") {
            if (atSign) buffer = "%40" + buffer;
            atSign = true;
            for (const ch of buffer) {
              if (ch === ":" && !passwordToken) { passwordToken = true; continue; }
              const enc = encode(ch, userinfoSet);
              if (passwordToken) url.password += enc; else url.username += enc;
            }
            buffer = "";
          } else if (c === undefined || c === "/" || c === "?" || c === "#" || (isSpecial(url.scheme) && c === "\\")) {
            if (atSign && buffer === "") throw invalid(original, "credentials without a host");
            p -= Array.from(buffer).length + 1;
            buffer = "";
            state = "host";
          } else buffer += c;
          break;
        case "host":
          if (c === ":" && !inBrackets) {
            if (buffer === "") throw invalid(original, "no host");
            url.host = parseHost(buffer, isSpecial(url.scheme), original); buffer = ""; state = "port";
          } else if (c === undefined || c === "/" || c === "?" || c === "#" || (isSpecial(url.scheme) && c === "\\")) {
            p--;
            if (isSpecial(url.scheme) && buffer === "") throw invalid(original, "no host");
            url.host = parseHost(buffer, isSpecial(url.scheme), original); buffer = ""; state = "path start";
          } else {
            if (c === "[") inBrackets = true;
            if (c === "]") inBrackets = false;
            buffer += c;
          }
          break;
        case "port":
          if (c !== undefined && /[0-9]/.test(c)) buffer += c;
          else if (c === undefined || c === "/" || c === "?" || c === "#" || (isSpecial(url.scheme) && c === "\\")) {
            if (buffer !== "") {
              const port = parseInt(buffer, 10);
              if (port > 65535) throw invalid(original, "port out of range");
              url.port = SPECIAL[url.scheme] === port ? null : port;
              buffer = "";
            }
            state = "path start"; p--;
          } else throw invalid(original, "bad port");
          break;
        case "file":
          url.scheme = "file"; url.host = "";
          if (c === "/" || c === "\\") state = "file slash";
          else if (base && base.scheme === "file") {
            url.host = base.host; url.path = base.path.slice(); url.query = base.query;
            if (c === "?") { url.query = ""; state = "query"; }
            else if (c === "#") { url.fragment = ""; state = "fragment"; }
            else if (c !== undefined) {
              url.query = null;
              if (!startsWithWinLetter(cps, p)) shorten(url); else url.path = [];
              state = "path"; p--;
            }
          } else { state = "path"; p--; }
          break;
        case "file slash":
          if (c === "/" || c === "\\") state = "file host";
          else {
            if (base && base.scheme === "file") {
              url.host = base.host;
              if (!startsWithWinLetter(cps, p) && base.path.length && isWinLetter(base.path[0], true)) url.path.push(base.path[0]);
            }
            state = "path"; p--;
          }
          break;
        case "file host":
          if (c === undefined || c === "/" || c === "\\" || c === "?" || c === "#") {
            p--;
            if (isWinLetter(buffer, false)) state = "path";
            else if (buffer === "") { url.host = ""; state = "path start"; }
            else {
              let host = parseHost(buffer, true, original);
              if (host === "localhost") host = "";
              url.host = host; buffer = ""; state = "path start";
            }
          } else buffer += c;
          break;
        case "path start":
          if (isSpecial(url.scheme)) { state = "path"; if (c !== "/" && c !== "\\") p--; }
          else if (c === "?") { url.query = ""; state = "query"; }
          else if (c === "#") { url.fragment = ""; state = "fragment"; }
          else if (c !== undefined) { state = "path"; if (c !== "/") p--; }
          break;
        case "path":
          if (c === undefined || c === "/" || (isSpecial(url.scheme) && c === "\\") || c === "?" || c === "#") {
            const lower = buffer.toLowerCase();
            const slash = c === "/" || (isSpecial(url.scheme) && c === "\\");
            if (DOUBLE_DOT.includes(lower)) {
              shorten(url);
              if (!slash) url.path.push("");
            } else if (SINGLE_DOT.includes(lower) && !slash) url.path.push("");
            else if (!SINGLE_DOT.includes(lower)) {
              if (url.scheme === "file" && url.path.length === 0 && isWinLetter(buffer, false)) buffer = buffer[0] + ":";
              url.path.push(buffer);
            }
            buffer = "";
            if (c === "?") { url.query = ""; state = "query"; }
            if (c === "#") { url.fragment = ""; state = "fragment"; }
          } else buffer += encode(c, pathSet);
          break;
        case "opaque path":
          if (c === "?") { url.query = ""; state = "query"; }
          else if (c === "#") { url.fragment = ""; state = "fragment"; }
          else if (c !== undefined) url.opaque += encode(c, c0);
          break;
        case "query":
          if (c === "#" || c === undefined) {
            url.query += encode(buffer, isSpecial(url.scheme) ? specialQuerySet : querySet);
            buffer = "";
            if (c === "#") { url.fragment = ""; state = "fragment"; }
          } else buffer += c;
          break;
        case "fragment":
          if (c !== undefined) url.fragment += encode(c, fragmentSet);
          break;
      }
    }
    return url;
  }

  function pathname(url) {
    return url.opaque !== null ? url.opaque : url.path.length ? "/" + url.path.join("/") : isSpecial(url.scheme) ? "/" : "";
  }

  function serialize(url, excludeFragment = false) {
    let out = url.scheme + ":";
    if (url.host !== null) {
      out += "//";
      if (url.username !== "" || url.password !== "") {
        out += url.username + (url.password !== "" ? ":" + url.password : "") + "@";
      }
      out += url.host + (url.port !== null ? ":" + url.port : "");
    } else if (url.opaque === null && url.path.length > 1 && url.path[0] === "") out += "/.";
    out += pathname(url);
    if (url.query !== null) out += "?" + url.query;
    if (!excludeFragment && url.fragment !== null) out += "#" + url.fragment;
    return out;
  }

  // ---- URLSearchParams ----------------------------------------------------------------------

  function formDecode(s) {
    return decoder.decode(percentDecode(s.replace(/\+/g, " ")));
  }
  function formParse(s) {
    const list = [];
    for (const part of s.split("&")) {
      if (part === "") continue;
      const i = part.indexOf("=");
      list.push(i < 0 ? [formDecode(part), ""] : [formDecode(part.slice(0, i)), formDecode(part.slice(i + 1))]);
    }
    return list;
  }
  const toUSV = (s) => String(s).toWellFormed();

  const LINK = Symbol("url");
  class URLSearchParams {
    #list = []; [LINK] = null;
    constructor(init = "") {
      if (init instanceof URLSearchParams) this.#list = init.#list.map((p) => p.slice());
      else if (init !== null && typeof init === "object") {
        if (typeof init[Symbol.iterator] === "function") {
          for (const pair of init) {
            const p = [...pair];
            if (p.length !== 2) throw new TypeError("URLSearchParams: each pair must have a name and a value");
            this.#list.push([toUSV(p[0]), toUSV(p[1])]);
          }
        } else for (const k of Object.keys(init)) this.#list.push([toUSV(k), toUSV(init[k])]);
      } else {
        const s = toUSV(init);
        this.#list = formParse(s.startsWith("?") ? s.slice(1) : s);
      }
    }
    #update() {
      const url = this[LINK];
      if (url) setQuery(url, this.#list.length ? this.toString() : null);
    }
    static _reset(params, query) { params.#list = query ? formParse(query) : []; }
    get size() { return this.#list.length; }
    append(name, value) { this.#list.push([toUSV(name), toUSV(value)]); this.#update(); }
    delete(name, value = undefined) {
      name = toUSV(name);
      const v = value === undefined ? undefined : toUSV(value);
      this.#list = this.#list.filter(([k, x]) => !(k === name && (v === undefined || x === v)));
      this.#update();
    }
    get(name) { name = toUSV(name); const p = this.#list.find(([k]) => k === name); return p ? p[1] : null; }
    getAll(name) { name = toUSV(name); return this.#list.filter(([k]) => k === name).map(([, v]) => v); }
    has(name, value = undefined) {
      name = toUSV(name);
      const v = value === undefined ? undefined : toUSV(value);
      return this.#list.some(([k, x]) => k === name && (v === undefined || x === v));
    }
    set(name, value) {
      name = toUSV(name); value = toUSV(value);
      const i = this.#list.findIndex(([k]) => k === name);
      if (i < 0) this.#list.push([name, value]);
      else {
        this.#list[i][1] = value;
        this.#list = this.#list.filter(([k], j) => j <= i || k !== name);
      }
      this.#update();
    }
    sort() {
      this.#list = this.#list.map((p, i) => [p, i]).sort(([a, i], [b, j]) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : i - j)).map(([p]) => p);
      this.#update();
    }
    forEach(callback, thisArg) { for (const [k, v] of this.#list.slice()) callback.call(thisArg, v, k, this); }
    *entries() { for (const [k, v] of this.#list) yield [k, v]; }
    *keys() { for (const [k] of this.#list) yield k; }
    *values() { for (const [, v] of this.#list) yield v; }
    [Symbol.iterator]() { return this.entries(); }
    toString() { return this.#list.map(([k, v]) => encode(k, formSet, true) + "=" + encode(v, formSet, true)).join("&"); }
    get [Symbol.toStringTag]() { return "URLSearchParams"; }
  }
  const resetParams = URLSearchParams._reset;
  delete URLSearchParams._reset;

  // ---- URL ------------------------------------------------------------------------------------

  class URL {
    #u; #params = null;
    constructor(url, base = undefined) {
      let b = null;
      if (base !== undefined) b = base instanceof URL ? base.#u : parse(toUSV(base), null);
      this.#u = parse(toUSV(url), b);
    }
    static canParse(url, base = undefined) {
      try { new URL(url, base); return true; } catch { return false; }
    }
    static parse(url, base = undefined) {
      try { return new URL(url, base); } catch { return null; }
    }
    #reparse(text) {
      const u = parse(text, null);
      this.#u = u;
      if (this.#params) resetParams(this.#params, u.query);
    }
    get href() { return serialize(this.#u); }
    set href(v) { this.#reparse(toUSV(v)); }
    get origin() {
      const u = this.#u;
      if (u.scheme === "blob") { try { return new URL(pathname(u)).origin; } catch { return "null"; } }
      if (!isSpecial(u.scheme) || u.scheme === "file") return "null";
      return u.scheme + "://" + u.host + (u.port !== null ? ":" + u.port : "");
    }
    get protocol() { return this.#u.scheme + ":"; }
    set protocol(v) {
      const scheme = toUSV(v).replace(/:.*$/, "").toLowerCase();
      if (!/^[a-z][a-z0-9+\-.]*$/.test(scheme) || isSpecial(scheme) !== isSpecial(this.#u.scheme)) return;
      if (scheme === "file" && (this.#u.username || this.#u.password || this.#u.port !== null)) return;
      this.#u.scheme = scheme;
      if (this.#u.port === SPECIAL[scheme]) this.#u.port = null;
    }
    get username() { return this.#u.username; }
    set username(v) { if (this.#u.host && this.#u.scheme !== "file") this.#u.username = encode(toUSV(v), userinfoSet); }
    get password() { return this.#u.password; }
    set password(v) { if (this.#u.host && this.#u.scheme !== "file") this.#u.password = encode(toUSV(v), userinfoSet); }
    get host() { const u = this.#u; return u.host === null ? "" : u.host + (u.port !== null ? ":" + u.port : ""); }
    set host(v) { this.#setAuthority(toUSV(v), true); }
    get hostname() { return this.#u.host ?? ""; }
    set hostname(v) { this.#setAuthority(toUSV(v), false); }
    #setAuthority(v, withPort) {
      const u = this.#u;
      if (u.opaque !== null || v === "") return;
      try {
        const probe = parse(u.scheme + "://" + (withPort ? v : v.split(":")[0] + (u.port !== null ? ":" + u.port : "")) + "/", null);
        u.host = probe.host;
        if (withPort && /:\d/.test(v.replace(/^\[.*\]/, ""))) u.port = probe.port;
      } catch { /* an invalid host leaves the URL as it was */ }
    }
    get port() { return this.#u.port === null ? "" : String(this.#u.port); }
    set port(v) {
      const u = this.#u;
      if (u.host === null || u.host === "" || u.scheme === "file") return;
      const s = toUSV(v);
      if (s === "") { u.port = null; return; }
      const m = /^[0-9]+/.exec(s);
      if (!m) return;
      const port = parseInt(m[0], 10);
      if (port > 65535) return;
      u.port = SPECIAL[u.scheme] === port ? null : port;
    }
    get pathname() { return pathname(this.#u); }
    set pathname(v) {
      const u = this.#u;
      if (u.opaque !== null) return;
      const probe = parse(u.scheme + "://h/" + toUSV(v).replace(/^[/\\]/, "").replace(/[?#]/g, (c) => encodeURIComponent(c)), null);
      u.path = probe.path;
    }
    get search() { const q = this.#u.query; return q === null || q === "" ? "" : "?" + q; }
    set search(v) {
      const s = toUSV(v);
      this.#u.query = (s === "" ? null : encode(s.startsWith("?") ? s.slice(1) : s, isSpecial(this.#u.scheme) ? specialQuerySet : querySet));
      if (this.#params) resetParams(this.#params, this.#u.query);
    }
    static _setQuery(url, q) { url.#u.query = q; }
    get searchParams() {
      if (!this.#params) {
        this.#params = new URLSearchParams(this.#u.query ?? "");
        this.#params[LINK] = this;
      }
      return this.#params;
    }
    get hash() { const f = this.#u.fragment; return f === null || f === "" ? "" : "#" + f; }
    set hash(v) {
      const s = toUSV(v);
      this.#u.fragment = s === "" ? null : encode(s.startsWith("#") ? s.slice(1) : s, fragmentSet);
    }
    toString() { return this.href; }
    toJSON() { return this.href; }
    get [Symbol.toStringTag]() { return "URL"; }
  }
  const setQuery = URL._setQuery;
  delete URL._setQuery;

  define("URL", URL);
  define("URLSearchParams", URLSearchParams);
}
