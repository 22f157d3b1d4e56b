"""Hostile clients (issue 12): every byte a client can make the server hold has a limit, the client
past it is closed with a stated code and counted, and an innocent client keeps being served.

Each test is an attack as a client would write it, against a fresh server process, with a check
that another client still gets its echo afterwards."""

from __future__ import annotations

import base64
import os
import re
import socket
import struct
import subprocess
import sys
import time

import pytest
from conftest import write_scripts
from rawws import RawClient, client_frame

ECHO_PY = '''
def on_message(session, message):
    session.send(message)
'''

ECHO_JS = '''
export function onMessage(session, message) { session.send(message); }
'''


def metric(server, name: str) -> float:
    status, text = server.http("/metrics")
    assert status == 200
    match = re.search(rf"^{name} (\S+)$", text, re.M)
    assert match, f"{name} not in /metrics"
    return float(match.group(1))


def assert_echo_works(server, path: str) -> None:
    """The innocent client: a fresh connection on the same server still gets its echo."""
    client = RawClient(server.port, path)
    try:
        assert client.status == 101
        client.send_frame(0x1, b"still here")
        assert client.read_frame() == (0x1, b"still here")
    finally:
        client.close()


def upgrade_request(path: str, extra: str = "", version: str = "HTTP/1.1") -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    return (f"GET {path} {version}\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n").encode()


def exchange(port: int, request: bytes) -> bytes:
    """Send a request, read until the server closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
        return data


# -- 1. pongs count against the send queue --------------------------------------------------------

@pytest.mark.parametrize("lang", ["py", "js"])
def test_ping_flood_without_reading_is_a_slow_consumer(serve, tmp_path, lang):
    app = write_scripts(tmp_path / "app", {f"echo.{lang}": ECHO_PY if lang == "py" else ECHO_JS})
    server = serve(app, "--send-queue-size", "64K")
    before = server.rss_kib()
    client = RawClient(server.port, "/ws/echo")
    ping = client_frame(0x9, b"p" * 125) * 512  # 66 KiB of pings per send
    client.sock.settimeout(1)
    sent = 0
    while sent < 32 << 20:
        try:
            client.sock.sendall(ping)
            sent += len(ping)
        except socket.timeout:
            # The server stops reading from a client it closed; or it is only slow (a busy machine).
            if metric(server, "diesel_slow_consumer_closes_total"):
                break
    client.sock.settimeout(10)
    code, frames = client.read_until_close()
    assert code == 1008
    assert all(opcode == 0xA for opcode, _ in frames)
    assert metric(server, "diesel_slow_consumer_closes_total") == 1
    assert server.rss_kib() - before < 32 * 1024, "the server held the pongs"
    client.close()
    assert_echo_works(server, "/ws/echo")


# -- 2. the send buffer is compacted --------------------------------------------------------------

def test_send_buffer_occupies_what_is_queued_not_what_was_sent(serve, tmp_path):
    """A client that always leaves ~12 MiB unread but keeps reading: the queue never drains, and
    (before compaction) every new frame was appended after all the bytes already written."""
    app = write_scripts(tmp_path / "app", {"feed.py": '''
        CHUNK = b"x" * (1 << 20)

        def on_message(session, message):
            for _ in range(int(message)):
                session.send(CHUNK)
    '''})
    server = serve(app, "--send-queue-size", "24M")
    client = RawClient(server.port, "/ws/feed")
    client.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    frame_size = (1 << 20) + 10
    client.send_frame(0x1, b"1")
    client.sock.recv(1)  # the server is serving us; everything else unread
    client.send_frame(0x1, b"12")
    time.sleep(0.3)
    before = server.rss_kib()
    peak = before
    unread = frame_size * 13 - 1 - len(client.buffer)
    for round_ in range(150):
        client.send_frame(0x1, b"1")
        unread += frame_size
        left = frame_size
        while left:
            left -= len(client.sock.recv(min(left, 1 << 20)))
        unread -= frame_size
        if round_ % 10 == 0:
            peak = max(peak, server.rss_kib())
    # 150 MiB went through a queue holding ~13 MiB: the buffer must have stayed near the latter.
    assert peak - before < 64 * 1024, f"RSS grew by {(peak - before) // 1024} MiB"
    assert metric(server, "diesel_slow_consumer_closes_total") == 0
    client.close()


# -- 3. the head limit holds for a head that arrives whole --------------------------------------

def test_a_whole_oversized_head_gets_431(serve, tmp_path):
    server = serve(write_scripts(tmp_path / "app", {"echo.py": ECHO_PY}))
    big = upgrade_request("/ws/echo", "User-Agent: " + "a" * 60_000 + "\r\n")
    assert len(big) < 65536  # one read
    assert exchange(server.port, big).startswith(b"HTTP/1.1 431 ")
    assert_echo_works(server, "/ws/echo")


# -- 4. a process-wide budget for partially received messages -----------------------------------

def test_partial_messages_share_one_budget_and_the_one_past_it_gets_1013(serve, tmp_path):
    server = serve(write_scripts(tmp_path / "app", {"echo.py": ECHO_PY}),
                   "--max-message-size", "512K", "--max-buffered", "1M")
    idle = metric(server, "diesel_receive_buffered_bytes")  # the /metrics request's own head
    assert idle < 4096
    clients, codes = [], []
    for _ in range(6):
        client = RawClient(server.port, "/ws/echo")
        client.send_frame(0x1, b"a" * 300_000, fin=False)  # a first fragment: held until the message ends
        clients.append(client)
        time.sleep(0.1)
        held = metric(server, "diesel_receive_buffered_bytes")
        assert held <= 1 << 20
    for client in clients[1:]:
        client.sock.settimeout(0.5)
        try:
            code, _ = client.read_until_close()
            codes.append(code)
        except socket.timeout:
            pass
    assert codes and set(codes) == {1013}
    assert metric(server, "diesel_receive_buffered_bytes") > 0
    first = clients[0]
    first.send_frame(0x0, b"b", fin=True)  # the first one finishes its message and gets its echo
    assert first.read_frame() == (0x1, b"a" * 300_000 + b"b")
    for client in clients:
        client.close()
    assert_echo_works(server, "/ws/echo")
    deadline = time.monotonic() + 5
    while metric(server, "diesel_receive_buffered_bytes") > idle and time.monotonic() < deadline:
        time.sleep(0.05)
    assert metric(server, "diesel_receive_buffered_bytes") == idle


def test_a_budget_below_the_message_size_is_refused_at_start(tmp_path):
    write_scripts(tmp_path, {"echo.py": ECHO_PY})
    result = subprocess.run([sys.executable, "-m", "dieselengine", "serve", str(tmp_path), "--port", "0",
                             "--max-buffered", "64K", "--max-message-size", "1M"],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 2 and "--max-buffered" in result.stderr and "Traceback" not in result.stderr


# -- 6. a close or a throw in onOpen leaves no stale request head ---------------------------------

@pytest.mark.parametrize("name, source", [
    ("closing.js", "export function onOpen(session) { session.close(4000, 'bye'); }\n"),
    ("throwing.js", "export function onOpen(session) { throw new Error('no'); }\n"),
    ("closing.py", "def on_open(session):\n    session.close(4000, 'bye')\n"),
    ("throwing.py", "def on_open(session):\n    raise RuntimeError('no')\n"),
])
def test_close_in_on_open_then_the_clients_close_reply_is_clean(serve, tmp_path, name, source):
    server = serve(write_scripts(tmp_path / "app", {name: source}))
    client = RawClient(server.port, "/ws/" + name.split(".")[0])
    code, _ = client.read_until_close()
    assert code == (4000 if "closing" in name else 1011)
    client.send_frame(0x8, struct.pack("!H", code))
    assert client.sock.recv(1) == b""  # the server closes after the close handshake
    client.close()
    time.sleep(0.2)
    assert "must be masked" not in server.log()
    assert metric(server, "diesel_protocol_closes_total") == 0


# -- 7. protocol details ----------------------------------------------------------------------------

def test_upgrades_need_http_1_1(serve, tmp_path):
    server = serve(write_scripts(tmp_path / "app", {"echo.py": ECHO_PY}))
    assert exchange(server.port, upgrade_request("/ws/echo", version="HTTP/1.0")).startswith(b"HTTP/1.1 400 ")
    assert exchange(server.port, b"GET /healthz HTTP/1.0\r\n\r\n").startswith(b"HTTP/1.1 200 ")


def test_426_names_the_version(serve, tmp_path):
    server = serve(write_scripts(tmp_path / "app", {"echo.py": ECHO_PY}))
    wrong = upgrade_request("/ws/echo").replace(b"Version: 13", b"Version: 8")
    for request in (wrong, b"GET /ws/echo HTTP/1.1\r\nHost: x\r\n\r\n"):
        head = exchange(server.port, request).split(b"\r\n\r\n")[0]
        assert head.startswith(b"HTTP/1.1 426 ")
        assert b"\r\nSec-WebSocket-Version: 13" in head and b"\r\nUpgrade: websocket" in head


def test_head_gets_no_body(serve, tmp_path):
    server = serve(write_scripts(tmp_path / "app", {"echo.py": ECHO_PY}))
    for path in ("/healthz", "/metrics", "/nowhere", "/ws/echo"):
        answer = exchange(server.port, f"HEAD {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        head, _, body = answer.partition(b"\r\n\r\n")
        assert body == b"", path
        assert int(re.search(rb"Content-Length: (\d+)", head).group(1)) > 0


@pytest.mark.parametrize("flag, value", [
    ("--max-message-size", "-1"), ("--send-queue-size", "0"), ("--max-buffered", "lots"),
    ("--script-memory", "inf"), ("--ping-interval", "-5"), ("--handshake-timeout", "nan"),
    ("--handler-timeout", "0"), ("--script-timeout", "-1"), ("--port", "70000"), ("--workers", "0"),
])
def test_nonsense_limits_are_refused_at_start(tmp_path, flag, value):
    write_scripts(tmp_path, {"echo.py": ECHO_PY})
    result = subprocess.run([sys.executable, "-m", "dieselengine", "serve", str(tmp_path), flag, value],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 2, result.stderr
    assert flag in result.stderr and "Traceback" not in result.stderr


def test_close_with_unread_input_sends_the_close_frame_not_a_reset(serve, tmp_path):
    server = serve(write_scripts(tmp_path / "app", {"echo.py": ECHO_PY}))
    for _ in range(5):
        client = RawClient(server.port, "/ws/echo")
        # A protocol error (an unmasked frame) with a lot more behind it the server will never read.
        client.sock.sendall(b"\x81\x05hello" + client_frame(0x1, b"x" * 60_000) * 8)
        time.sleep(0.2)  # the server's close is out before this client reads
        code, _ = client.read_until_close()
        assert code == 1002
        assert client.sock.recv(1) == b""  # then a clean end of stream, no reset
        client.close()
    assert_echo_works(server, "/ws/echo")


# -- 8. async Python hooks that never settle -------------------------------------------------------

def test_an_async_hook_that_never_settles_is_cancelled(serve, tmp_path):
    app = write_scripts(tmp_path / "app", {"hang.py": '''
        import asyncio

        async def on_message(session, message):
            if message == "hang":
                await asyncio.sleep(3600)
            session.send(message)
    ''', "hangopen.py": '''
        import asyncio

        async def on_open(session):
            await asyncio.Event().wait()
    '''})
    server = serve(app, "--handler-timeout", "0.5")
    client = RawClient(server.port, "/ws/hang")
    client.send_frame(0x1, b"hang")
    client.send_frame(0x1, b"after")  # waits in the inbox until the hung hook is cancelled
    assert client.read_frame() == (0x1, b"after")
    log = server.wait_log(r"hang\.py: the message handler did not finish within 0\.5 s.*\n(.*\n)*.*hang\.py\", "
                          r"line 5, in on_message")
    assert log
    assert metric(server, "diesel_handler_errors_total") == 1
    client.close()
    opener = RawClient(server.port, "/ws/hangopen")
    code, _ = opener.read_until_close()
    assert code == 1011
    opener.close()


# -- 5. script heaps cannot be filled through request data ----------------------------------------

def test_sessions_cannot_fill_a_scripts_heap_with_request_data(serve, tmp_path):
    app = write_scripts(tmp_path / "app", {"agent.js": '''
        export function onOpen(session) { session.setAttribute("agent", session.getHeader("user-agent")); }
        export function onMessage(session, message) {
          if (message === "work") session.send(String(new Array(100000).fill(7).length));  // the script still allocates
          else session.send(message);
        }
    '''})
    server = serve(app, "--script-memory", "4M")
    attackers, refused = [], 0
    for n in range(400):
        client = RawClient(server.port, "/ws/agent", headers=f"User-Agent: {n:05d}{'a' * 15_000}\r\n")
        client.send_frame(0x1, b"hi")
        opcode, payload = client.read_frame()
        if opcode == 0x8:
            assert struct.unpack("!H", payload[:2])[0] == 1013
            refused += 1
            client.close()
        else:
            attackers.append(client)
    assert refused and attackers  # a quarter of the heap held some of them; the others failed alone
    for client in (attackers[0], attackers[-1]):
        client.send_frame(0x1, b"work")
        assert client.read_frame() == (0x1, b"100000")
    assert_echo_works(server, "/ws/agent")  # a session with a browser's request still gets in
    assert "out of memory" not in server.log()
    for client in attackers:
        client.close()
    time.sleep(0.5)
    late = RawClient(server.port, "/ws/agent", headers=f"User-Agent: {'b' * 15_000}\r\n")
    late.send_frame(0x1, b"in")
    assert late.read_frame() == (0x1, b"in")  # the attackers' share was given back
    late.close()
