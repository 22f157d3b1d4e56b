"""Server-to-client WebSocket frames, encoded once so one frame can be written to many recipients."""

from __future__ import annotations

from struct import Struct

TEXT = 0x1
BINARY = 0x2

_CLOSE_CODE = Struct("!H")
_MEDIUM = Struct("!BBH")
#: Close codes that may appear in a close frame (RFC 6455 section 7.4): the registered ones
#: (not 1004-1006 or 1015, which never go on the wire) and the private range 3000-4999.
_REGISTERED_CLOSE_CODES = frozenset((1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014))
_LARGE = Struct("!BBQ")


def encode_message(message: str | bytes | bytearray | memoryview) -> bytes:
    """A complete, unmasked, final frame (servers never mask, RFC 6455 section 5.1): text for a
    string, binary for anything bytes-like. One function, not two: it runs for every send."""
    if isinstance(message, str):
        payload = message.encode()
        first = 0x80 | TEXT
    elif isinstance(message, (bytes, bytearray, memoryview)):
        payload = bytes(message)
        first = 0x80 | BINARY
    else:
        raise TypeError(f"a message must be str or bytes, not {type(message).__name__}")
    size = len(payload)
    if size < 126:
        return bytes((first, size)) + payload
    if size < 65536:
        return _MEDIUM.pack(first, 126, size) + payload
    return _LARGE.pack(first, 127, size) + payload


def valid_close_code(code: int) -> bool:
    return code in _REGISTERED_CLOSE_CODES or 3000 <= code <= 4999


def close_frame(code: int, reason: str = "") -> bytes:
    """A close frame; the reason is cut to the 123 bytes a control frame allows, on a UTF-8
    character boundary (a cut character would make strict clients fail with 1007)."""
    payload = _CLOSE_CODE.pack(code) + reason.encode()[:123].decode("utf-8", "ignore").encode()
    return bytes((0x88, len(payload))) + payload
