"""The HTTP side of a connection, sans I/O: parse the request head, build the 101 or a plain
HTTP response. Nothing here touches a socket, so it is tested with bytes alone."""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass
from http import HTTPStatus

#: The most a request head may take before the server answers 431 and closes.
MAX_HEAD_SIZE = 16 * 1024
_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


class HandshakeError(Exception):
    """The request cannot be upgraded; carries the HTTP status to answer with."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


@dataclass(slots=True)
class RequestHead:
    method: bytes
    path: str
    query: str
    #: The raw header block; `parse_headers` reads it when a handler asks for a header.
    raw_headers: bytes


def parse_head(head: bytes) -> RequestHead:
    """Split the request line off a head (without its final blank line)."""
    line, _, raw_headers = head.partition(b"\r\n")
    parts = line.split(b" ")
    if len(parts) != 3 or not parts[2].startswith(b"HTTP/1."):
        raise HandshakeError(400, "malformed request line")
    target = parts[1].decode("latin-1")
    path, _, query = target.partition("?")
    return RequestHead(parts[0], path, query, raw_headers)


def parse_headers(raw_headers: bytes) -> dict[str, str]:
    """Header names lower-cased; repeated headers joined with ", " as RFC 9110 allows."""
    headers: dict[str, str] = {}
    for line in raw_headers.split(b"\r\n"):
        name, colon, value = line.partition(b":")
        if not colon:
            continue
        key = name.strip().lower().decode("latin-1")
        text = value.strip().decode("latin-1")
        headers[key] = f"{headers[key]}, {text}" if key in headers else text
    return headers


def header_value(raw_headers: bytes, lowered: bytes, name: bytes) -> str | None:
    """The first value of one header, found without parsing the others; `lowered` is CRLF +
    `raw_headers.lower()`. Every handshake needs four headers, and only those four."""
    found = lowered.find(b"\r\n" + name + b":")
    if found < 0:
        return None
    start = found + len(name) + 1  # lowered is two bytes ahead of raw_headers
    end = raw_headers.find(b"\r\n", start)
    return raw_headers[start:end if end >= 0 else len(raw_headers)].strip().decode("latin-1")


def accept_upgrade(head: RequestHead) -> bytes:
    """Validate a WebSocket upgrade (RFC 6455 section 4.2.1) and return the 101 response."""
    if head.method != b"GET":
        raise HandshakeError(405, "WebSocket upgrades use GET")
    raw = head.raw_headers
    lowered = b"\r\n" + raw.lower()
    if (header_value(raw, lowered, b"upgrade") or "").lower() != "websocket":
        raise HandshakeError(426, "this path only speaks WebSocket (Upgrade: websocket)")
    connection = header_value(raw, lowered, b"connection") or ""
    if "upgrade" not in (token.strip().lower() for token in connection.split(",")):
        raise HandshakeError(400, "missing Connection: Upgrade")
    if header_value(raw, lowered, b"sec-websocket-version") != "13":
        raise HandshakeError(426, "unsupported Sec-WebSocket-Version (13 expected)")
    key = (header_value(raw, lowered, b"sec-websocket-key") or "").encode()
    try:
        if len(base64.b64decode(key, validate=True)) != 16:
            raise ValueError
    except (binascii.Error, ValueError):
        raise HandshakeError(400, "invalid Sec-WebSocket-Key") from None
    accept = base64.b64encode(hashlib.sha1(key + _GUID).digest())
    return (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n")


def http_response(status: int, body: bytes, content_type: str = "text/plain; charset=utf-8",
                  extra: str = "") -> bytes:
    """A complete response to a plain HTTP request; the connection closes after it."""
    reason = HTTPStatus(status).phrase
    return (f"HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
            f"{extra}Connection: close\r\n\r\n").encode("latin-1") + body
