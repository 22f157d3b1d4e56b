"""The HTTP side of a connection, sans I/O: the request's headers and plain HTTP responses.

The wire parses a request head and answers it as an upgrade in C (`_wire.request_head`: method,
path, query, the raw header block, and the 101 or the (status, reason) that refuses it), which
took a third of a handshake in Python. What is left here needs no socket and is tested with bytes.
"""

from __future__ import annotations

from http import HTTPStatus

#: The most a request head may take before the server answers 431 and closes.
MAX_HEAD_SIZE = 16 * 1024


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


def http_response(status: int, body: bytes, content_type: str = "text/plain; charset=utf-8",
                  extra: str = "") -> bytes:
    """A complete response to a plain HTTP request; the connection closes after it."""
    reason = HTTPStatus(status).phrase
    return (f"HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
            f"{extra}Connection: close\r\n\r\n").encode("latin-1") + body


def refusal(status: int, reason: str) -> bytes:
    """The answer to a request that cannot be upgraded; a 426 names the protocol and the version
    the server speaks (RFC 9110 section 15.5.22, RFC 6455 section 4.4)."""
    extra = "Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n" if status == 426 else ""
    return http_response(status, f"{reason}\n".encode(), extra=extra)


def without_body(response: bytes) -> bytes:
    """The answer to a HEAD request: the same head (Content-Length included), no body."""
    return response[:response.index(b"\r\n\r\n") + 4]
