"""fetch() from scripts (js/fetch.py): allowed origins only, redirects checked, bounded in time and
size, non-blocking, counted in /metrics; against a real local HTTP server."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import websockets

from conftest import write_scripts

BURST = r'''
export async function onMessage(session, url) {
  const results = await Promise.allSettled(Array.from({ length: 70 }, () => fetch(url)));
  session.send(JSON.stringify(results.map((r) => r.status === "fulfilled" ? "ok" : r.reason.message)));
}
'''

SCRIPT = r'''
export async function onMessage(session, message) {
  const [url, init, abortAfter] = JSON.parse(message);
  const options = { ...init };
  if (abortAfter) {
    const controller = new AbortController();
    setTimeout(() => controller.abort(), abortAfter);
    options.signal = controller.signal;
  }
  try {
    const r = await fetch(url, options);
    const body = await r.text();
    session.send(JSON.stringify({ status: r.status, ok: r.ok, type: r.headers.get("content-type"), body,
                                  redirected: r.redirected, url: r.url, custom: r.headers.get("x-custom") }));
  } catch (e) {
    session.send(JSON.stringify({ error: e.name, message: e.message }));
  }
}
'''


class Backend(BaseHTTPRequestHandler):
    """The application's backend as a script would call it."""

    other = ""  # an origin the server is not allowed to reach

    def log_message(self, *args: object) -> None:
        pass

    def reply(self, status: int, body: bytes, kind: str = "application/json", **headers: str) -> None:
        self.send_response(status)
        self.send_header("content-type", kind)
        self.send_header("content-length", str(len(body)))
        self.send_header("x-custom", "yes")
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        if self.path == "/json":
            self.reply(200, b'{"hello": "world"}')
        elif self.path == "/fail":
            self.reply(500, b"broken", "text/plain")
        elif self.path == "/slow":
            time.sleep(3)
            self.reply(200, b"late", "text/plain")
        elif self.path == "/big":
            self.reply(200, b"x" * (2 << 20), "text/plain")
        elif self.path == "/in":
            self.reply(302, b"", location="/json")
        elif self.path == "/out":
            self.reply(302, b"", location=f"{self.other}/json")
        else:
            self.reply(404, b"no", "text/plain")

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        self.reply(201, json.dumps({"got": body, "type": self.headers["content-type"],
                                    "auth": self.headers.get("authorization")}).encode())


@pytest.fixture
def backend():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Backend)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_fetch_to_an_allowed_origin(serve, tmp_path, backend):
    Backend.other = backend.replace("127.0.0.1", "localhost")
    server = serve(write_scripts(tmp_path / "app", {"api.js": SCRIPT, "burst.js": BURST}), "--allow-fetch", backend,
                   "--fetch-timeout", "1", "--fetch-max-size", "1M")

    async def ask(ws, url, init=None, abort_after=0):
        await ws.send(json.dumps([url, init or {}, abort_after]))
        return json.loads(await asyncio.wait_for(ws.recv(), 10))

    async def main():
        async with websockets.connect(server.url("/ws/api")) as ws:
            r = await ask(ws, f"{backend}/json")
            assert r == {"status": 200, "ok": True, "type": "application/json", "body": '{"hello": "world"}',
                         "redirected": False, "url": f"{backend}/json", "custom": "yes"}
            r = await ask(ws, f"{backend}/post", {"method": "POST", "body": json.dumps({"n": 1}),
                                                  "headers": {"content-type": "application/json", "authorization": "t"}})
            assert r["status"] == 201 and json.loads(r["body"]) == {"got": {"n": 1}, "type": "application/json",
                                                                    "auth": "t"}
            r = await ask(ws, f"{backend}/fail")
            assert (r["status"], r["ok"], r["body"]) == (500, False, "broken")
            r = await ask(ws, f"{backend}/in")
            assert r["redirected"] is True and r["url"] == f"{backend}/json" and r["status"] == 200
            r = await ask(ws, f"{backend}/out")
            assert r["error"] == "TypeError" and "not allowed" in r["message"], r
            r = await ask(ws, f"{Backend.other}/json")
            assert r["error"] == "TypeError" and "origin http://localhost" in r["message"] and "not allowed" in r["message"]
            r = await ask(ws, "https://example.com/")
            assert r["error"] == "TypeError" and "not allowed" in r["message"]
            r = await ask(ws, f"{backend}/big")
            assert r["error"] == "TypeError" and "larger than 1048576 bytes (--fetch-max-size)" in r["message"], r
            r = await ask(ws, f"{backend}/slow")
            assert r["error"] == "TypeError" and "--fetch-timeout" in r["message"], r
            r = await ask(ws, f"{backend}/slow", abort_after=50)
            assert r["error"] == "AbortError", r

            # A pending fetch holds its own session's next message (order kept), no other session.
            async with websockets.connect(server.url("/ws/api")) as other:
                await ws.send(json.dumps([f"{backend}/slow", {}, 0]))
                await ws.send(json.dumps([f"{backend}/json", {}, 0]))
                r = await ask(other, f"{backend}/json")
                assert r["status"] == 200  # answered while the first session waits on its slow fetch
                first = json.loads(await asyncio.wait_for(ws.recv(), 10))
                second = json.loads(await asyncio.wait_for(ws.recv(), 10))
                assert "--fetch-timeout" in first["message"] and second["status"] == 200

        # At most 64 fetches in flight in the process: the rest reject at once.
        async with websockets.connect(server.url("/ws/burst")) as ws:
            await ws.send(f"{backend}/slow")
            results = json.loads(await asyncio.wait_for(ws.recv(), 10))
            assert sum("in flight" in r for r in results) == 6, results
            assert sum("--fetch-timeout" in r for r in results) == 64

    asyncio.run(asyncio.wait_for(main(), 60))
    status, text = server.http("/metrics")
    origin = backend
    assert f'diesel_fetches_total{{origin="{origin}",outcome="2xx"}} ' in text, text
    assert f'diesel_fetches_total{{origin="{origin}",outcome="5xx"}} 1.0' in text
    assert f'diesel_fetches_total{{origin="{origin}",outcome="timeout"}} 66.0' in text
    assert f'diesel_fetches_total{{origin="{origin}",outcome="busy"}} 6.0' in text
    assert f'diesel_fetches_total{{origin="{origin}",outcome="too large"}} 1.0' in text
    assert f'diesel_fetches_total{{origin="{origin}",outcome="redirect refused"}} 1.0' in text
    assert 'diesel_fetches_total{origin="(not allowed)",outcome="refused"} 2.0' in text
    assert server.stop() == 0
    assert "Unclosed" not in server.log()  # the connection pool is closed on shutdown


def test_fetch_without_allowed_origins_rejects(serve, tmp_path, backend):
    server = serve(write_scripts(tmp_path / "app", {"api.js": SCRIPT}))

    async def main():
        async with websockets.connect(server.url("/ws/api")) as ws:
            await ws.send(json.dumps([f"{backend}/json", {}, 0]))
            r = json.loads(await asyncio.wait_for(ws.recv(), 10))
            assert r["error"] == "TypeError"
            assert r["message"] == (f"fetch failed: the origin {backend} is not allowed (the server allows none: "
                                    "--allow-fetch)")

    asyncio.run(asyncio.wait_for(main(), 30))


def test_allow_fetch_takes_only_origins(tmp_path):
    import subprocess
    import sys

    write_scripts(tmp_path / "app", {"api.js": SCRIPT})
    result = subprocess.run([sys.executable, "-m", "dieselengine", "serve", str(tmp_path / "app"),
                             "--allow-fetch", "https://api.example.com/v1"], capture_output=True, text=True, timeout=30)
    assert result.returncode != 0 and "--allow-fetch: invalid value" in result.stderr and "ORIGIN" in result.stderr, result
