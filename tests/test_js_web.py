"""The web platform APIs in a script's context (js/web/*.js), checked against the specs' behaviour
through a real server and connection."""

from __future__ import annotations

import asyncio
import json
import re

import websockets

from conftest import write_scripts

# Each message names a check; the script answers with its result as JSON.
CHECKS = r'''
const te = new TextEncoder();
const hex = (buf) => [...new Uint8Array(buf)].map((b) => b.toString(16).padStart(2, "0")).join("");
const checks = {
  encode: () => [...te.encode("h€😀")],
  encodeInto: () => { const d = new Uint8Array(4); return [te.encodeInto("a€b", d), [...d]]; },
  loneSurrogate: () => [...te.encode("\ud800")],
  decode: () => new TextDecoder().decode(new Uint8Array([0x68, 0xe2, 0x82, 0xac, 0xf0, 0x9f, 0x98, 0x80])),
  replacement: () => new TextDecoder().decode(new Uint8Array([0x61, 0xff, 0x62, 0xe2, 0x82, 0x63, 0xed, 0xa0, 0x80])),
  fatal: () => { try { new TextDecoder("utf-8", { fatal: true }).decode(new Uint8Array([0xc3])); return "no error"; }
                 catch (e) { return e.name; } },
  stream: () => { const d = new TextDecoder(); return [d.decode(new Uint8Array([0xe2, 0x82]), { stream: true }),
                  d.decode(new Uint8Array([0xac, 0x21]), { stream: true }), d.decode()]; },
  bom: () => [new TextDecoder().decode(new Uint8Array([0xef, 0xbb, 0xbf, 0x41])),
              new TextDecoder("utf8", { ignoreBOM: true }).decode(new Uint8Array([0xef, 0xbb, 0xbf, 0x41])).length],
  badLabel: () => { try { new TextDecoder("latin1"); return "no error"; } catch (e) { return e.name; } },
  urls: () => [
    ["../c/d?x=1#f", "https://User:pw@Example.COM:443/a/b/"], ["//h/p", "https://x/"], ["?q", "http://a/b?c#d"],
    ["g", "http://a/b/c/d;p?q"], ["../../../g", "http://a/b/c/d;p?q"], ["http://[1:0::]:8080/"],
    ["http://0x7f.1/"], ["https://ex.com/ä?ä#ä"], ["non-special://h:1/p/../q"], ["file:///C:/x/../y"],
    ["http://h/\\x\\y"], ["ws://x:80/"], ["http://1.2.3.4.5/"], ["nope"], ["https://x:99999/"],
  ].map(([u, b]) => { try { const x = new URL(u, b); return [x.href, x.origin, x.host, x.pathname, x.search, x.hash]; }
                      catch (e) { return e.name; } }),
  searchParams: () => {
    const u = new URL("https://e.com/p?a=1&b=x+y&a=2&c=%F0%9F%98%80");
    const p = u.searchParams;
    const before = [p.get("a"), p.getAll("a"), p.get("b"), p.get("c"), p.has("z"), p.size];
    p.append("d", "é &="); p.delete("a"); p.sort();
    return [before, u.href, u.search, new URLSearchParams({ x: "1", y: "2" }).toString(),
            [...new URLSearchParams([["k", "v"], ["k", "w"]])]];
  },
  clone: () => {
    const m = new Map([["k", { d: new Date(1e12) }]]);
    const o = { m, s: new Set([1, 2]), a: [1, , 3], r: /x/gi, b: new Uint8Array([1, 2]).buffer, e: new RangeError("no") };
    o.self = o;
    const c = structuredClone(o);
    let fn = "";
    try { structuredClone({ f() {} }); } catch (e) { fn = e.name; }
    return [c !== o, c.self === c, c.m !== m, c.m.get("k").d instanceof Date, c.m.get("k").d.getTime(),
            [...c.s], 1 in c.a, c.r.flags, new Uint8Array(c.b)[1], c.e instanceof RangeError, c.e.message, fn];
  },
  base64: () => [btoa("hello"), atob("aGVsbG8=")],
  uuid: () => Array.from({ length: 200 }, () => crypto.randomUUID()),
  random: () => { const a = crypto.getRandomValues(new Uint8Array(64)); let quota = "";
                  try { crypto.getRandomValues(new Uint8Array(65537)); } catch (e) { quota = e.name; }
                  let type = ""; try { crypto.getRandomValues(new Float32Array(1)); } catch (e) { type = e.name; }
                  return [a.length, new Set(a).size > 16, quota, type]; },
  digest: async () => Promise.all(["SHA-1", "SHA-256", "SHA-384", "SHA-512"].map(
    async (alg) => hex(await crypto.subtle.digest(alg, te.encode("abc"))))),
  hmac: async () => {
    // RFC 4231 test case 2
    const key = await crypto.subtle.importKey("raw", te.encode("Jefe"), { name: "HMAC", hash: "SHA-256" }, false, ["sign", "verify"]);
    const data = te.encode("what do ya want for nothing?");
    const sig = await crypto.subtle.sign("HMAC", key, data);
    const bad = new Uint8Array(sig.slice(0)); bad[0] ^= 1;
    return [hex(sig), await crypto.subtle.verify("HMAC", key, sig, data), await crypto.subtle.verify("HMAC", key, bad, data),
            key.algorithm.hash.name, key.extractable,
            await crypto.subtle.exportKey("raw", key).then(() => "exported", (e) => e.name)];
  },
  events: () => {
    const log = [];
    const t = new EventTarget();
    const once = () => log.push("once");
    t.addEventListener("x", once, { once: true });
    t.addEventListener("x", { handleEvent: (e) => log.push(e.type + ":" + (e.target === t)) });
    t.addEventListener("y", (e) => e.preventDefault());
    t.dispatchEvent(new Event("x")); t.dispatchEvent(new Event("x"));
    const canceled = !t.dispatchEvent(new Event("y", { cancelable: true }));
    const ac = new AbortController();
    let aborted = 0;
    ac.signal.onabort = () => aborted++;
    ac.abort(); ac.abort();
    let thrown = "";
    try { ac.signal.throwIfAborted(); } catch (e) { thrown = e.name; }
    return [log, canceled, aborted, ac.signal.aborted, ac.signal.reason.name, thrown,
            AbortSignal.abort("why").reason, new DOMException("m", "NotFoundError").code];
  },
  timeout: () => new Promise((resolve) => {
    const s = AbortSignal.timeout(10);
    s.addEventListener("abort", () => resolve([s.aborted, s.reason.name]));
  }),
  performance: () => { const a = performance.now(); const b = performance.now(); return [typeof a, b >= a]; },
  fetchTypes: async () => {
    const h = new Headers({ "Content-Type": "a", "X-B": "1" }); h.append("x-b", "2");
    const r = new Response(JSON.stringify({ a: 1 }), { status: 201, headers: { "x-y": "z" } });
    const req = new Request("https://e.com/x", { method: "post", body: "b", headers: [["a", "1"]] });
    return [[...h], r.status, r.ok, await r.json(), r.bodyUsed, r.headers.get("X-Y"), req.method,
            await req.text(), Response.json({ b: 2 }).headers.get("content-type"),
            await new Response(null).text().then((t) => t === "")];
  },
};
export async function onMessage(session, name) {
  if (name === "throw") new URL("no base");
  try {
    session.send(JSON.stringify(await checks[name]()));
  } catch (e) {
    session.send(JSON.stringify("threw " + e));
  }
}
'''


def test_web_apis_behave_as_specified(serve, tmp_path):
    server = serve(write_scripts(tmp_path / "app", {"web.js": CHECKS}))
    results = {}

    async def main():
        async with websockets.connect(server.url("/ws/web"), max_size=None) as ws:
            for name in ("encode", "encodeInto", "loneSurrogate", "decode", "replacement", "fatal", "stream", "bom",
                         "badLabel", "urls", "searchParams", "clone", "base64", "uuid", "random", "digest", "hmac",
                         "events", "timeout", "performance", "fetchTypes"):
                await ws.send(name)
                results[name] = json.loads(await ws.recv())

            await ws.send("throw")  # an uncaught error thrown inside the web APIs' code
            await ws.send("base64")
            results["after throw"] = json.loads(await ws.recv())

    asyncio.run(asyncio.wait_for(main(), 30))
    log = server.wait_log(r"uncaught error in the message handler.*\n.*\n.*\n").group(0)
    # located in the script, without the server's own frames
    assert 'TypeError: Invalid URL: "no base" (a relative URL needs a base)' in log and "web.js:" in log, log
    assert "<null>" not in log and "<input>" not in log, log
    r = results
    # TextEncoder / TextDecoder
    assert r["encode"] == list("h€😀".encode())
    assert r["encodeInto"] == [{"read": 2, "written": 4}, [0x61, 0xE2, 0x82, 0xAC]]
    assert r["loneSurrogate"] == [0xEF, 0xBF, 0xBD]
    assert r["decode"] == "h€😀"
    # invalid bytes: one U+FFFD per maximal subpart (WHATWG Encoding; the same as Python's "replace")
    assert r["replacement"] == bytes([0x61, 0xFF, 0x62, 0xE2, 0x82, 0x63, 0xED, 0xA0, 0x80]).decode("utf-8", "replace")
    assert r["fatal"] == "TypeError"
    assert r["stream"] == ["", "€!", ""]
    assert r["bom"] == ["A", 2]
    assert r["badLabel"] == "RangeError"
    # URL: relative resolution, hosts, percent-encoding, errors (results as WHATWG URL / Node give them)
    urls = r["urls"]
    assert urls[0] == ["https://User:pw@example.com/a/c/d?x=1#f", "https://example.com", "example.com", "/a/c/d",
                       "?x=1", "#f"]
    assert urls[1][0] == "https://h/p"
    assert urls[2][0] == "http://a/b?q"
    assert urls[3][0] == "http://a/b/c/g"
    assert urls[4][0] == "http://a/g"
    assert urls[5][:3] == ["http://[1::]:8080/", "http://[1::]:8080", "[1::]:8080"]
    assert urls[6][0] == "http://127.0.0.1/"
    assert urls[7][0] == "https://ex.com/%C3%A4?%C3%A4#%C3%A4"
    assert urls[8][:2] == ["non-special://h:1/q", "null"]
    assert urls[9][0] == "file:///C:/y"
    assert urls[10][0] == "http://h//x/y"
    assert urls[11][0] == "ws://x/"
    assert urls[12:] == ["TypeError", "TypeError", "TypeError"]
    before, href, search, from_record, pairs = r["searchParams"]
    assert before == ["1", ["1", "2"], "x y", "😀", False, 4]
    assert href == "https://e.com/p?b=x+y&c=%F0%9F%98%80&d=%C3%A9+%26%3D" and search == href[href.index("?"):]
    assert from_record == "x=1&y=2" and pairs == [["k", "v"], ["k", "w"]]
    # structuredClone: a copy, cycles and shared references kept, functions refused
    assert r["clone"] == [True, True, True, True, 10**12, [1, 2], False, "gi", 2, True, "no", "DataCloneError"]
    assert r["base64"] == ["aGVsbG8=", "hello"]
    # crypto
    uuids = r["uuid"]
    assert len(set(uuids)) == 200
    assert all(re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", u) for u in uuids)
    assert r["random"] == [64, True, "QuotaExceededError", "TypeMismatchError"]
    assert r["digest"] == [
        "a9993e364706816aba3e25717850c26c9cd0d89d",
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
        "cb00753f45a35e8bb5a03d699ac65007272c32ab0eded1631a8b605a43ff5bed8086072ba1e7cc2358baeca134c825a7",
        "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a2192992a274fc1a836ba3c23a3feebbd"
        "454d4423643ce80e2a9ac94fa54ca49f",
    ]
    assert r["hmac"] == ["5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843", True, False,
                         "SHA-256", False, "InvalidAccessError"]
    # events and abort
    assert r["events"] == [["once", "x:true", "x:true"], True, 1, True, "AbortError", "AbortError", "why", 8]
    assert r["timeout"] == [True, "TimeoutError"]
    assert r["performance"] == ["number", True]
    headers, status, ok, body, used, header, method, text, json_type, empty = r["fetchTypes"]
    assert headers == [["content-type", "a"], ["x-b", "1, 2"]]
    assert (status, ok, body, used, header, method, text) == (201, True, {"a": 1}, True, "z", "POST", "b")
    assert json_type == "application/json" and empty is True
