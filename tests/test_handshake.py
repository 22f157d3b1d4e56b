"""The sans-I/O handshake, with bytes alone (each wire's), and the HTTP answers a server gives over a socket."""

from __future__ import annotations

import base64
import hashlib
import os
import socket

import pytest
from conftest import write_scripts

from dieselengine import wire
from dieselengine.handshake import http_response, parse_headers

#: The wires built here: the portable one always, the C one where it is built.
KINDS = [wire.PORTABLE] + ([wire.load("c")] if wire.why_not_c() is None else [])


@pytest.fixture(params=KINDS, ids=lambda kind: kind.name)
def kind(request):
    return request.param

UPGRADE = (b"GET /ws/chat?room=a%20b HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n"
           b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nX-Tag: one\r\nx-tag: two")


def test_rfc6455_sample_key_and_request_parts(kind):
    method, path, query, raw_headers, response = kind.request_head(UPGRADE)
    assert (method, path, query) == (b"GET", "/ws/chat", "room=a%20b")
    assert response.startswith(b"HTTP/1.1 101 Switching Protocols\r\n")
    assert b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n" in response  # RFC 6455 section 1.3
    assert parse_headers(raw_headers)["x-tag"] == "one, two"


def test_accept_keys_match_hashlib(kind):
    """The accept key's SHA-1 (with the CPU's SHA instructions where it has them) for many keys."""
    for _ in range(500):
        key = base64.b64encode(os.urandom(16))
        head = UPGRADE.replace(b"dGhlIHNhbXBsZSBub25jZQ==", key)
        expected = base64.b64encode(hashlib.sha1(key + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest())
        assert b"Sec-WebSocket-Accept: " + expected + b"\r\n" in kind.request_head(head)[4]


@pytest.mark.parametrize("change, status", [
    ((b"GET /ws", b"POST /ws"), 405),
    ((b"Upgrade: websocket", b"Upgrade: h2c"), 426),
    ((b"Sec-WebSocket-Version: 13", b"Sec-WebSocket-Version: 8"), 426),
    ((b"dGhlIHNhbXBsZSBub25jZQ==", b"short"), 400),
    ((b"keep-alive, Upgrade", b"keep-alive"), 400),
])
def test_bad_upgrades_are_refused_with_a_status(kind, change, status):
    answer = kind.request_head(UPGRADE.replace(*change))[4]
    assert isinstance(answer, tuple) and answer[0] == status


@pytest.mark.parametrize("head", [b"NONSENSE\r\nHost: x", b"GET /a b HTTP/1.1\r\nHost: x", b"GET / SPDY/3"])
def test_malformed_request_line(kind, head):
    method, _, _, _, answer = kind.request_head(head)
    assert method is None and answer == (400, "malformed request line")


@pytest.mark.parametrize("head", [
    UPGRADE.replace(b"Upgrade: websocket", b"Upgrade:\twebsocket \t"),
    UPGRADE.replace(b"Connection: keep-alive, Upgrade", b"connection: upgrade\r\nConnection: close"),
    UPGRADE.replace(b"Connection: keep-alive, Upgrade", b"Connection: close\r\nConnection: Upgrade"),
    UPGRADE.replace(b"Upgrade: websocket", b"Upgrade : websocket"),
    UPGRADE.replace(b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==", b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ=x"),
    UPGRADE.replace(b"Sec-WebSocket-Version: 13", b"Sec-WebSocket-Version: 13 "),
    b"GET  HTTP/1.1\r\nHost: x",
    b"GET /a?b?c HTTP/1.0",
    b"get /ws HTTP/1.1\r\n" + UPGRADE.split(b"\r\n", 1)[1],
])
def test_both_wires_read_a_head_alike(head):
    """The portable wire answers every head as the C wire does (edge cases of RFC 6455 4.2.1)."""
    answers = {kind.name: kind.request_head(head) for kind in KINDS}
    assert len(set(map(repr, answers.values()))) == 1, answers


@pytest.mark.parametrize("message", ["", "é" * 40, "x" * 125, "x" * 126, "x" * 65535, "x" * 65536, b"", b"\x00" * 70_000,
                                     bytearray(b"ab"), memoryview(b"abc")])
def test_frames_are_the_same_bytes_on_both_wires(message):
    frames = {kind.frame(message) for kind in KINDS}
    assert len(frames) == 1
    data = frames.pop()
    assert data[0] == (0x81 if isinstance(message, str) else 0x82) and data.endswith(
        message.encode() if isinstance(message, str) else bytes(message))


def test_close_codes_are_the_same_rule_on_both_wires():
    for code in [*range(990, 1020), *range(2990, 3010), *range(4990, 5010), -1, 2**70, "1000", None]:
        assert len({kind.valid_close_code(code) for kind in KINDS}) == 1, code
    assert wire.PORTABLE.valid_close_code(1000) and not wire.PORTABLE.valid_close_code(1005)


def test_http_response_is_complete():
    assert http_response(404, b"nope") == (b"HTTP/1.1 404 Not Found\r\nContent-Type: text/plain; charset=utf-8\r\n"
                                           b"Content-Length: 4\r\nConnection: close\r\n\r\nnope")


def _exchange(port: int, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(request)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
        return data


def test_http_answers_over_a_socket(serve, tmp_path):
    server = serve(write_scripts(tmp_path / "app", {"chat.py": "def on_open(s):\n    pass\n"}))
    plain_get = _exchange(server.port, b"GET /ws/chat HTTP/1.1\r\nHost: x\r\n\r\n")
    assert plain_get.startswith(b"HTTP/1.1 426 ")
    post = _exchange(server.port, b"POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
    assert post.startswith(b"HTTP/1.1 405 ")
    huge = _exchange(server.port, b"GET /healthz HTTP/1.1\r\n" + b"X-Pad: " + b"a" * 20_000 + b"\r\n")
    assert huge.startswith(b"HTTP/1.1 431 ")
    health = _exchange(server.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    assert health.startswith(b"HTTP/1.1 200 OK\r\n") and health.endswith(b'{"status": "ok"}\n')
