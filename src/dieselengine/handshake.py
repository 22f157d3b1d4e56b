"""The HTTP side of a connection, sans I/O: parse the request head, build the 101 or a plain
HTTP response. Nothing here touches a socket, so it is tested with bytes alone."""

from __future__ import annotations

from dataclasses import dataclass
from http import HTTPStatus

from ._wire import upgrade

#: The most a request head may take before the server answers 431 and closes.
MAX_HEAD_SIZE = 16 * 1024


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


def accept_upgrade(head: RequestHead) -> bytes:
    """Validate a WebSocket upgrade (RFC 6455 section 4.2.1) and return the 101 response; the
    header checks and the accept key are the wire's, in C (a third of a handshake in Python)."""
    answer = upgrade(head.method, head.raw_headers)
    if isinstance(answer, tuple):
        raise HandshakeError(*answer)
    return answer


def http_response(status: int, body: bytes, content_type: str = "text/plain; charset=utf-8",
                  extra: str = "") -> bytes:
    """A complete response to a plain HTTP request; the connection closes after it."""
    reason = HTTPStatus(status).phrase
    return (f"HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
            f"{extra}Connection: close\r\n\r\n").encode("latin-1") + body
