"""The door (issue 14): the upgrade hook, origins, connection and message limits, the access log,
through real clients against a real server."""

from __future__ import annotations

import asyncio
import json
import re

import pytest
import websockets
from conftest import write_scripts
from websockets.exceptions import ConnectionClosed, InvalidStatus

HOOKED = '''
import asyncio

async def on_upgrade(request):
    token = request.get_parameter("token")
    if token == "slow":
        await asyncio.sleep(30)
    await asyncio.sleep(0.01)
    if token == "boom":
        raise RuntimeError("lookup failed")
    if token == "bad-status":
        request.reject(200, "fine?")
    if token != "alice-token":
        return request.reject(401, "invalid token")
    request.set_attribute("user", {"name": "alice", "from": request.get_remote_addr(),
                                   "path": request.get_request_path(), "agent": request.get_header("x-agent")})
    if "chat.v2" in request.get_protocols():
        request.accept_protocol("chat.v2")

def on_open(session):
    session.send(repr(sorted(session.get_attributes().items())))
    session.send(str(session.get_attribute("user")["name"]))

def on_close(session):
    print("closed", session.id, flush=True)
'''

SYNC_HOOK = '''
def on_upgrade(request):
    request.set_attribute("protocols", request.get_protocols())
    if request.get_parameter("wrong"):
        request.accept_protocol("not-offered")

def on_open(session):
    session.send(",".join(session.get_attribute("protocols")))
'''


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 60))


async def refused(url: str, **kwargs) -> tuple[int, str]:
    """The HTTP status and body a refused upgrade got."""
    with pytest.raises(InvalidStatus) as caught:
        async with websockets.connect(url, **kwargs):
            pass
    response = caught.value.response
    return response.status_code, response.body.decode()


@pytest.fixture
def hooked(serve, tmp_path):
    write_scripts(tmp_path / "app", {"hooked.py": HOOKED, "sync.py": SYNC_HOOK, "plain.py": "def on_open(s):\n    s.send('hi')\n"})
    return serve(tmp_path / "app", "--handshake-timeout", "1.5")


def test_python_hook_accepts_with_attributes_and_subprotocol(hooked):
    async def main():
        async with websockets.connect(hooked.url("/ws/hooked?token=alice-token"), subprotocols=["chat.v1", "chat.v2"],
                                      additional_headers={"X-Agent": "test"}) as ws:
            assert ws.subprotocol == "chat.v2"
            attributes = await ws.recv()
            assert "'name': 'alice'" in attributes and "'from': '127.0.0.1'" in attributes
            assert "'path': '/ws/hooked'" in attributes and "'agent': 'test'" in attributes
            assert await ws.recv() == "alice"
        # not offered: no subprotocol in the 101
        async with websockets.connect(hooked.url("/ws/hooked?token=alice-token"), subprotocols=["chat.v1"]) as ws:
            assert ws.subprotocol is None
            await ws.recv()
        # a route without a hook is untouched
        async with websockets.connect(hooked.url("/ws/plain")) as ws:
            assert await ws.recv() == "hi"
    run(main())


def test_python_hook_rejects_with_status_and_reason_and_no_session(hooked):
    async def main():
        assert await refused(hooked.url("/ws/hooked?token=mallory")) == (401, "invalid token\n")
        assert await refused(hooked.url("/ws/hooked")) == (401, "invalid token\n")
    run(main())
    assert "closed" not in hooked.log()  # no on_open, no on_close for a refused upgrade
    metrics = hooked.http("/metrics")[1]
    assert 'diesel_upgrades_refused_total{reason="rejected"} 2.0' in metrics
    assert "diesel_sessions_opened_total 0.0" in metrics


def test_python_hook_that_throws_gets_500_and_a_located_log_line(hooked):
    async def main():
        assert await refused(hooked.url("/ws/hooked?token=boom")) == (500, "upgrade handler error\n")
        # reject with a status that is not an HTTP error is a bug in the script: 500 as well
        assert await refused(hooked.url("/ws/hooked?token=bad-status")) == (500, "upgrade handler error\n")
    run(main())
    line = hooked.wait_log(r"hooked\.py: uncaught error in the upgrade handler")
    # the script's own frame first: no server or asyncio frames in front of it
    assert re.search(r'Traceback \(most recent call last\):\n  File "[^"]*hooked\.py", line 9, in on_upgrade\n'
                     r'.*\nRuntimeError: lookup failed', hooked.log())
    assert re.search(r"ValueError: reject\(status\): an HTTP error status 400-599, not 200", hooked.log())
    assert line


def test_python_hook_past_the_handshake_timeout_gets_503(hooked):
    async def main():
        status, body = await refused(hooked.url("/ws/hooked?token=slow"), open_timeout=20)
        assert (status, body) == (503, "upgrade timed out\n")
        # the server went on serving meanwhile
        async with websockets.connect(hooked.url("/ws/hooked?token=alice-token")) as ws:
            await ws.recv()
    run(main())
    hooked.wait_log(r"hooked\.py: the upgrade hook did not settle within the handshake timeout")
    assert 'diesel_upgrades_refused_total{reason="hook_timeout"} 1.0' in hooked.http("/metrics")[1]


def test_sync_hook_protocols_in_order_and_accepting_one_not_offered_is_an_error(hooked):
    async def main():
        async with websockets.connect(hooked.url("/ws/sync"), subprotocols=["b", "a", "c"]) as ws:
            assert ws.subprotocol is None  # none accepted: none in the 101
            assert await ws.recv() == "b,a,c"
        assert (await refused(hooked.url("/ws/sync?wrong=1"), subprotocols=["a"]))[0] == 500
    run(main())
    hooked.wait_log(r"ValueError: accept_protocol\('not-offered'\): the client offered \['a'\]")


def test_hook_for_a_client_that_leaves_while_it_runs(hooked):
    """The connection closes while an async hook runs: no session is left behind."""
    async def main():
        reader, writer = await asyncio.open_connection("127.0.0.1", hooked.port)
        writer.write(b"GET /ws/hooked?token=alice-token HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                     b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                     b"Sec-WebSocket-Version: 13\r\n\r\n")
        await writer.drain()
        writer.transport.abort()  # RST before the hook's 10 ms are over
        await asyncio.sleep(0.5)
    run(main())
    metrics = hooked.http("/metrics")[1]
    assert "diesel_sessions_open 0.0" in metrics


# -- origins ----------------------------------------------------------------------------------


def test_origins_allowed_denied_and_absent(serve, tmp_path):
    app = write_scripts(tmp_path / "app", {"chat.py": "def on_open(s):\n    s.send('in')\n"})
    server = serve(app, "--allowed-origin", "https://app.example.com", "--allowed-origin", "https://*.example.org")

    async def main():
        for origin in ("https://app.example.com", "https://APP.example.com:443", "https://a.b.example.org"):
            async with websockets.connect(server.url("/ws/chat"), origin=origin) as ws:
                assert await ws.recv() == "in"
        async with websockets.connect(server.url("/ws/chat")) as ws:  # no Origin: not a browser
            assert await ws.recv() == "in"
        for origin in ("https://evil.example", "http://app.example.com", "https://app.example.com:8443",
                       "https://example.org", "null"):
            assert await refused(server.url("/ws/chat"), origin=origin) == (403, "origin not allowed\n")
    run(main())
    assert 'diesel_upgrades_refused_total{reason="origin"} 5.0' in server.http("/metrics")[1]


def test_origin_options_checked_at_start_and_public_host_warned(serve, tmp_path):
    app = write_scripts(tmp_path / "app", {"chat.py": "def on_open(s):\n    pass\n"})
    bad = serve(app, "--allowed-origin", "app.example.com", ready=False)
    assert bad.proc.wait(20) == 1
    assert "diesel: error: --allowed-origin 'app.example.com': not an origin like https://app.example.com" in bad.log()
    public = serve(app, "--host", "0.0.0.0")
    public.wait_log(r"WARNING dieselengine: serving on 0\.0\.0\.0 without --allowed-origin")
    local = serve(app)
    assert "without --allowed-origin" not in local.log()


# -- limits -----------------------------------------------------------------------------------


def test_max_connections_and_per_ip(serve, tmp_path):
    app = write_scripts(tmp_path / "app", {"chat.py": "def on_open(s):\n    s.send('in')\n"})
    total = serve(app, "--max-connections", "3")
    per_ip = serve(app, "--max-connections-per-ip", "2")

    async def main():
        held = [await websockets.connect(total.url("/ws/chat")) for _ in range(3)]
        assert await refused(total.url("/ws/chat")) == (503, "server at its connection limit\n")
        await held.pop().close()
        await asyncio.sleep(0.3)  # its on_close ran: a place is free again
        held.append(await websockets.connect(total.url("/ws/chat")))

        mine = [await websockets.connect(per_ip.url("/ws/chat")) for _ in range(2)]
        assert await refused(per_ip.url("/ws/chat")) == (429, "too many connections from this address\n")
        await mine.pop().close()
        await asyncio.sleep(0.3)
        mine.append(await websockets.connect(per_ip.url("/ws/chat")))
        for ws in held + mine:
            await ws.close()
    run(main())
    assert 'diesel_upgrades_refused_total{reason="max_connections"} 1.0' in total.http("/metrics")[1]
    assert 'diesel_upgrades_refused_total{reason="max_connections_per_ip"} 1.0' in per_ip.http("/metrics")[1]


def test_per_ip_limit_counts_the_forwarded_address(serve, tmp_path):
    app = write_scripts(tmp_path / "app", {"chat.py": "def on_open(s):\n    s.send(s.get_remote_addr())\n"})
    server = serve(app, "--max-connections-per-ip", "1", "--trusted-proxy", "127.0.0.1")

    async def main():
        one = await websockets.connect(server.url("/ws/chat"), additional_headers={"X-Forwarded-For": "203.0.113.5"})
        assert await one.recv() == "203.0.113.5"
        other = await websockets.connect(server.url("/ws/chat"), additional_headers={"X-Forwarded-For": "203.0.113.6"})
        assert (await refused(server.url("/ws/chat"), additional_headers={"X-Forwarded-For": "203.0.113.5"}))[0] == 429
        await one.close()
        await other.close()
    run(main())


def test_message_rate_closes_with_1008(serve, tmp_path):
    app = write_scripts(tmp_path / "app", {"echo.py": "def on_message(s, m):\n    s.send(m)\n",
                                           "echojs.js": "export function onMessage(s, m) { s.send(m); }\n"})
    server = serve(app, "--message-rate", "5/10")

    async def main(route):
        async with websockets.connect(server.url(route)) as ws:
            for i in range(10):  # the burst
                await ws.send(f"m{i}")
                assert await ws.recv() == f"m{i}"
            await asyncio.sleep(0.5)  # 2.5 tokens back
            for i in range(2):
                await ws.send("again")
                assert await ws.recv() == "again"
            with pytest.raises(ConnectionClosed) as closed:
                for _ in range(20):
                    await ws.send("flood")
                    await ws.recv()
            assert closed.value.rcvd.code == 1008
            assert closed.value.rcvd.reason == "message rate exceeded"
    for route in ("/ws/echo", "/ws/echojs"):  # the JavaScript echo is answered by the wire itself
        run(main(route))
    assert 'diesel_limit_closes_total{reason="message_rate"} 2.0' in server.http("/metrics")[1]


def test_message_rate_option_is_checked(serve, tmp_path):
    app = write_scripts(tmp_path / "app", {"chat.py": "def on_open(s):\n    pass\n"})
    bad = serve(app, "--message-rate", "0/5", ready=False)
    assert bad.proc.wait(20) == 2
    assert "--message-rate: invalid value '0/5' (expected N[/BURST])" in bad.log()


# -- the access log ---------------------------------------------------------------------------

ACCESS = '''
def on_upgrade(request):
    if request.get_parameter("no"):
        request.reject(403, "not you")

def on_message(session, message):
    if message == "fail":
        raise ValueError("handler broke")
    session.send(message * 2)
'''


def _talk(server):
    async def main():
        async with websockets.connect(server.url("/ws/app"), compression=None) as ws:  # exact byte counts
            await ws.send("ab")
            assert await ws.recv() == "abab"
            await ws.send("fail")
            await asyncio.sleep(0.1)
        await refused(server.url("/ws/app?no=1"))
    run(main())


def test_access_log_text(serve, tmp_path):
    app = write_scripts(tmp_path / "app", {"app.py": ACCESS})
    server = serve(app)
    _talk(server)
    opened = server.wait_log(r"INFO dieselengine\.access: open session=(\w+) route=/ws/app remote=127\.0\.0\.1\n")
    session = opened.group(1)
    closed = server.wait_log(rf"INFO dieselengine\.access: close session={session} route=/ws/app remote=127\.0\.0\.1 "
                             r"code=1000 closed_by=client seconds=([\d.]+) messages_in=2 bytes_in=8 "
                             r"messages_out=1 bytes_out=(\d+)\n")
    assert 0 < float(closed.group(1)) < 30
    server.wait_log(r'INFO dieselengine\.access: refuse route=/ws/app remote=127\.0\.0\.1 status=403 reason="not you"')
    server.wait_log(r"ERROR dieselengine: app\.py: uncaught error in the message handler")


def test_access_log_json_and_every_line_is_json(serve, tmp_path):
    app = write_scripts(tmp_path / "app", {"app.py": ACCESS,
                                           "js.js": "export function onOpen(s) { console.log('hello from js'); }\n"})
    server = serve(app, "--log-format", "json")
    _talk(server)

    async def js():
        async with websockets.connect(server.url("/ws/js")):
            pass
    run(js())
    server.wait_log(r'"event": "close".*"route": "/ws/js"')
    server.stop()
    records = [json.loads(line) for line in server.log().splitlines() if line.strip()]
    access = [r for r in records if r["logger"] == "dieselengine.access"]
    opened = next(r for r in access if r["event"] == "open" and r["route"] == "/ws/app")
    assert opened["remote"] == "127.0.0.1" and opened["time"].endswith("Z")
    closed = next(r for r in access if r["event"] == "close" and r["session"] == opened["session"])
    assert closed["code"] == 1000 and closed["closed_by"] == "client"
    assert (closed["messages_in"], closed["bytes_in"], closed["messages_out"]) == (2, 8, 1)  # 8: the close frame's code too
    refusal = next(r for r in access if r["event"] == "refuse")
    assert (refusal["status"], refusal["reason"], refusal["route"]) == (403, "not you", "/ws/app")
    error = next(r for r in records if r["level"] == "error")
    assert "uncaught error in the message handler" in error["message"] and "handler broke" in error["message"]
    assert any("hello from js" in r["message"] for r in records if "message" in r)


def test_no_access_log(serve, tmp_path):
    app = write_scripts(tmp_path / "app", {"app.py": ACCESS})
    server = serve(app, "--no-access-log")
    _talk(server)
    server.stop()
    assert "dieselengine.access" not in server.log()
    assert "uncaught error in the message handler" in server.log()


def test_server_closes_are_logged_as_the_servers(serve, tmp_path):
    app = write_scripts(tmp_path / "app", {"bye.py": "def on_message(s, m):\n    s.close(4000, 'bye')\n"})
    server = serve(app)

    async def main():
        async with websockets.connect(server.url("/ws/bye")) as ws:
            await ws.send("x")
            with pytest.raises(ConnectionClosed):
                await ws.recv()
    run(main())
    server.wait_log(r"close session=\w+ route=/ws/bye remote=127\.0\.0\.1 code=4000 closed_by=server ")


# -- the JavaScript upgrade hook -----------------------------------------------------------------

HOOKED_JS = '''
const users = new Map([["alice-token", {name: "alice", greet() { return "hi " + this.name; }}]]);

async function lookUp(token) {
  await new Promise((resolve) => setTimeout(resolve, 10));
  if (token === "boom") throw new Error("lookup failed");
  return users.get(token);
}

export async function onUpgrade(request) {
  const token = request.getParameter("token");
  if (token === "slow") await new Promise(() => {});
  if (token === "bad-status") return request.reject(200, "fine?");
  const user = await lookUp(token);
  if (!user) return request.reject(401, "invalid token");
  request.setAttribute("user", user);
  request.setAttribute("from", request.getRemoteAddr() + " " + request.getRequestPath() + " " +
                               request.getHeader("X-Agent"));
  if (request.getProtocols().includes("chat.v2")) request.acceptProtocol("chat.v2");
}

export function onOpen(session) {
  // the very value: a method survives, which JSON would not carry
  session.send(session.getAttribute("user").greet());
  session.send(session.getAttribute("from"));
}

export function onClose(session) {
  console.log("closed", session.id);
}
'''

SYNC_JS = '''
export function onUpgrade(request) {
  request.setAttribute("protocols", request.getProtocols());
  if (request.getParameter("wrong")) request.acceptProtocol("not-offered");
}

export function onOpen(session) {
  session.send(session.getAttribute("protocols").join(","));
}
'''


@pytest.fixture
def hooked_js(serve, tmp_path):
    write_scripts(tmp_path / "app", {"hooked.js": HOOKED_JS, "sync.js": SYNC_JS})
    return serve(tmp_path / "app", "--handshake-timeout", "1.5")


def test_js_hook_accepts_with_the_very_attribute_values_and_a_subprotocol(hooked_js):
    async def main():
        async with websockets.connect(hooked_js.url("/ws/hooked?token=alice-token"), subprotocols=["chat.v1", "chat.v2"],
                                      additional_headers={"X-Agent": "test"}) as ws:
            assert ws.subprotocol == "chat.v2"
            assert await ws.recv() == "hi alice"
            assert await ws.recv() == "127.0.0.1 /ws/hooked test"
        async with websockets.connect(hooked_js.url("/ws/hooked?token=alice-token"), subprotocols=["chat.v1"]) as ws:
            assert ws.subprotocol is None
            assert await ws.recv() == "hi alice"
        async with websockets.connect(hooked_js.url("/ws/sync"), subprotocols=["b", "a"]) as ws:
            assert ws.subprotocol is None
            assert await ws.recv() == "b,a"
    run(main())


def test_js_hook_rejects_throws_and_times_out(hooked_js):
    async def main():
        assert await refused(hooked_js.url("/ws/hooked?token=mallory")) == (401, "invalid token\n")
        assert await refused(hooked_js.url("/ws/hooked?token=boom")) == (500, "upgrade handler error\n")
        assert await refused(hooked_js.url("/ws/hooked?token=bad-status")) == (500, "upgrade handler error\n")
        assert (await refused(hooked_js.url("/ws/sync?wrong=1"), subprotocols=["a"]))[0] == 500
        assert await refused(hooked_js.url("/ws/hooked?token=slow")) == (503, "upgrade timed out\n")
        async with websockets.connect(hooked_js.url("/ws/hooked?token=alice-token")) as ws:
            assert await ws.recv() == "hi alice"
    run(main())
    log = hooked_js.wait_log(r"hooked\.js: the upgrade hook did not settle within the handshake timeout").string
    assert re.search(r"hooked\.js: uncaught error in the upgrade handler.*\n.*Error: lookup failed\n"
                     r"(.*\n)*?.*at lookUp \(.*hooked\.js:5:\d+\)", log), log
    assert "RangeError: reject(status, reason): status must be an HTTP error, 400-599, not 200" in log
    assert 'TypeError: acceptProtocol("not-offered"): the client offered ["a"]' in log
    log = hooked_js.wait_log(r"closed [0-9a-f]{16}\n").string
    assert log.count("closed ") == 1  # onClose ran for the one session, never for a refused upgrade
    metrics = hooked_js.http("/metrics")[1]
    assert 'diesel_upgrades_refused_total{reason="hook_error"} 3.0' in metrics
    assert 'diesel_upgrades_refused_total{reason="rejected"} 1.0' in metrics
