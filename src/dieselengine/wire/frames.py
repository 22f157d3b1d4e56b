"""The WebSocket protocol without sockets, in Python: frames for clients, close codes, request heads.

The same contract as the C wire's module functions (`_wire.frame`, `_wire.valid_close_code`,
`_wire.request_head`), so either wire gives the core the same bytes and the same answers; the tests
run both over the same cases.
"""

from __future__ import annotations

import base64
import hashlib
import re

from .deflate import negotiate

#: RFC 6455 section 1.3.
_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_KEY = re.compile(rb"[A-Za-z0-9+/]{22}==")
_UPGRADE_HEADERS = (b"upgrade", b"connection", b"sec-websocket-version", b"sec-websocket-key")
#: "HTTP/d.d" in a request line.
_VERSION = re.compile(rb"HTTP/[0-9]\.[0-9]")
_SWITCHING = (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
              b"Sec-WebSocket-Accept: ")


def frame(message: str | bytes | bytearray | memoryview) -> bytes:
    """One final, unmasked frame (servers never mask): text for a str, binary for bytes-like."""
    if isinstance(message, str):
        data = message.encode()
        first = 0x81
    elif isinstance(message, (bytes, bytearray, memoryview)):
        data = bytes(message)
        first = 0x82
    else:
        raise TypeError(f"a message must be str or bytes, not {type(message).__name__}")
    size = len(data)
    if size < 126:
        return bytes((first, size)) + data
    if size < 65536:
        return bytes((first, 126)) + size.to_bytes(2, "big") + data
    return bytes((first, 127)) + size.to_bytes(8, "big") + data


def valid_close_code(code: object) -> bool:
    """Whether a close frame may carry the code (RFC 6455 section 7.4): the registered ones that go
    on the wire (not 1004-1006 or 1015) and the private range 3000-4999."""
    if not isinstance(code, int):
        return False
    return 1000 <= code <= 1003 or 1007 <= code <= 1014 or 3000 <= code <= 4999


def close_frame(code: int, reason: str) -> bytes:
    """A close frame; the reason is cut to a control frame's 123 bytes on a character boundary
    (strict clients fail a cut character with 1007)."""
    data = reason.encode()
    if len(data) > 123:
        size = 123
        while size > 0 and (data[size] & 0xC0) == 0x80:
            size -= 1
        data = data[:size]
    return bytes((0x88, 2 + len(data))) + code.to_bytes(2, "big") + data


def request_head(head: bytes, compression: bool = False) -> tuple[bytes | None, str, str, bytes,
                                                                 bytes | tuple[int, str]]:
    """(method, path, query, raw_headers, answer) of a request head without its final blank line.
    answer is the 101 response when the head is a valid WebSocket upgrade (accepting a
    permessage-deflate offer with `compression`), else (status, reason); method is None when the
    request line is malformed."""
    eol = head.find(b"\r\n")
    line, headers = (head, b"") if eol < 0 else (head[:eol], head[eol + 2:])
    parts = line.split(b" ")
    if len(parts) != 3 or not _VERSION.fullmatch(parts[2]):
        return None, "", "", b"", (400, "malformed request line")
    method, target, version = parts
    path, mark, query = target.partition(b"?")
    return (method, path.decode("latin-1"), query.decode("latin-1"), headers,
            _upgrade_answer(method, version, headers, compression))


def _upgrade_answer(method: bytes, version: bytes, headers: bytes, compression: bool) -> bytes | tuple[int, str]:
    """RFC 6455 section 4.2.1: the 101 response to a valid upgrade, else (status, reason)."""
    if method != b"GET":
        return 405, "WebSocket upgrades use GET"
    if version < b"HTTP/1.1":
        return 400, "WebSocket upgrades need HTTP/1.1 or later"
    upgrade, connection, version, key = _first_values(headers)
    if upgrade is None or upgrade.lower() != b"websocket":
        return 426, "this path only speaks WebSocket (Upgrade: websocket)"
    if connection is None or not any(token.strip(b" \t").lower() == b"upgrade" for token in connection.split(b",")):
        return 400, "missing Connection: Upgrade"
    if version != b"13":
        return 426, "unsupported Sec-WebSocket-Version (13 expected)"
    if key is None or not _KEY.fullmatch(key):
        return 400, "invalid Sec-WebSocket-Key"  # 16 bytes, base64: 22 characters and "=="
    extension = negotiate(headers) if compression else b""
    return _SWITCHING + base64.b64encode(hashlib.sha1(key + _GUID).digest()) + extension + b"\r\n\r\n"


def _first_values(headers: bytes) -> list[bytes | None]:
    """The first value of each header an upgrade is decided by, trimmed (None when absent)."""
    values: list[bytes | None] = [None] * len(_UPGRADE_HEADERS)
    for line in headers.split(b"\r\n"):
        name, colon, value = line.partition(b":")
        if not colon:
            continue
        name = name.lower()
        for i, wanted in enumerate(_UPGRADE_HEADERS):
            if values[i] is None and name == wanted:
                values[i] = value.strip(b" \t")
                break
    return values
