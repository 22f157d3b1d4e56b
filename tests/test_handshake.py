"""The sans-I/O handshake, with bytes alone, and the HTTP answers a server gives over a socket."""

from __future__ import annotations

import base64
import hashlib
import os
import socket

import pytest
from conftest import write_scripts

from dieselengine.wire._wire import request_head
from dieselengine.handshake import http_response, parse_headers

UPGRADE = (b"GET /ws/chat?room=a%20b HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n"
           b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nX-Tag: one\r\nx-tag: two")


def test_rfc6455_sample_key_and_request_parts():
    method, path, query, raw_headers, response = request_head(UPGRADE)
    assert (method, path, query) == (b"GET", "/ws/chat", "room=a%20b")
    assert response.startswith(b"HTTP/1.1 101 Switching Protocols\r\n")
    assert b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n" in response  # RFC 6455 section 1.3
    assert parse_headers(raw_headers)["x-tag"] == "one, two"


def test_accept_keys_match_hashlib():
    """The accept key's SHA-1 (with the CPU's SHA instructions where it has them) for many keys."""
    for _ in range(500):
        key = base64.b64encode(os.urandom(16))
        head = UPGRADE.replace(b"dGhlIHNhbXBsZSBub25jZQ==", key)
        expected = base64.b64encode(hashlib.sha1(key + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest())
        assert b"Sec-WebSocket-Accept: " + expected + b"\r\n" in request_head(head)[4]


@pytest.mark.parametrize("change, status", [
    ((b"GET /ws", b"POST /ws"), 405),
    ((b"Upgrade: websocket", b"Upgrade: h2c"), 426),
    ((b"Sec-WebSocket-Version: 13", b"Sec-WebSocket-Version: 8"), 426),
    ((b"dGhlIHNhbXBsZSBub25jZQ==", b"short"), 400),
    ((b"keep-alive, Upgrade", b"keep-alive"), 400),
])
def test_bad_upgrades_are_refused_with_a_status(change, status):
    answer = request_head(UPGRADE.replace(*change))[4]
    assert isinstance(answer, tuple) and answer[0] == status


@pytest.mark.parametrize("head", [b"NONSENSE\r\nHost: x", b"GET /a b HTTP/1.1\r\nHost: x", b"GET / SPDY/3"])
def test_malformed_request_line(head):
    method, _, _, _, answer = request_head(head)
    assert method is None and answer == (400, "malformed request line")


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
