"""Server-to-client WebSocket frames, encoded once so one frame can be written to many recipients."""

from __future__ import annotations

from struct import Struct

TEXT = 0x1
BINARY = 0x2

_MEDIUM = Struct("!BBH")
_LARGE = Struct("!BBQ")


def encode_frame(opcode: int, payload: bytes) -> bytes:
    """A complete, unmasked, final frame (servers never mask, RFC 6455 section 5.1)."""
    size = len(payload)
    if size < 126:
        return bytes((0x80 | opcode, size)) + payload
    if size < 65536:
        return _MEDIUM.pack(0x80 | opcode, 126, size) + payload
    return _LARGE.pack(0x80 | opcode, 127, size) + payload


def encode_message(message: str | bytes | bytearray | memoryview) -> bytes:
    """A text frame for a string, a binary frame for anything bytes-like."""
    if isinstance(message, str):
        return encode_frame(TEXT, message.encode())
    if isinstance(message, (bytes, bytearray, memoryview)):
        return encode_frame(BINARY, bytes(message))
    raise TypeError(f"a message must be str or bytes, not {type(message).__name__}")
