"""permessage-deflate (RFC 7692) for the portable wire, as `_wire.c` does it.

Negotiated with no context takeover in both directions, so each message is compressed and
inflated on its own and a connection keeps no zlib state; a broadcast's bytes are compressed once
for every member that negotiated compression (a small cache by identity, as the C wire's).
"""

from __future__ import annotations

import zlib

#: The extension header of a 101 that accepted an offer (the connection checks its answer for it).
ANSWER = b"\r\nSec-WebSocket-Extensions: permessage-deflate"
#: Messages shorter than this go out as they are: what deflate saves does not pay for its work.
MIN_SIZE = 32
#: Messages of this size and more are compressed with zlib's default memLevel (8) rather than 4.
LARGE_SIZE = 4096
_TAIL = b"\x00\x00\xff\xff"
_PARAMETERS = ("server_no_context_takeover", "client_no_context_takeover", "server_max_window_bits",
               "client_max_window_bits")
_CACHE = 4


def _window_bits(value: str) -> int:
    """A parameter's value as a window size (8-15, quotes allowed), else -1."""
    if len(value) >= 2 and value[0] == value[-1] == '"':
        value = value[1:-1]
    return int(value) if value in {str(bits) for bits in range(8, 16)} else -1


def _offer(text: str) -> tuple[int, bool]:
    """One extension offer: (server_max_window_bits, whether the client named it) if it is a
    permessage-deflate offer we accept, else (0, False)."""
    name, *parameters = text.split(";")
    if name.strip(" \t").lower() != "permessage-deflate":
        return 0, False
    seen: set[str] = set()
    bits, asked = 15, False
    for parameter in parameters:
        key, equals, value = parameter.partition("=")
        key = key.strip(" \t").lower()
        value = value.strip(" \t")
        if key not in _PARAMETERS or key in seen:
            return 0, False  # unknown or repeated: this offer is declined
        seen.add(key)
        if key.endswith("context_takeover") and equals:
            return 0, False
        if key == "server_max_window_bits":
            bits = _window_bits(value) if equals else -1
            if bits < 0:
                return 0, False
            asked = True
        if key == "client_max_window_bits" and equals and _window_bits(value) < 0:
            return 0, False
    return bits, asked


def negotiate(headers: bytes) -> bytes:
    """The extension header (with its leading CRLF) accepting the first acceptable offer in the
    request's Sec-WebSocket-Extensions headers, or b"" if there is none."""
    for line in headers.split(b"\r\n"):
        name, colon, value = line.partition(b":")
        if not colon or name.strip(b" \t").lower() != b"sec-websocket-extensions":
            continue
        for offer in value.decode("latin-1").split(","):
            bits, asked = _offer(offer)
            if bits:
                window = f"; server_max_window_bits={bits}" if asked else ""
                return ANSWER + f"; server_no_context_takeover; client_no_context_takeover{window}".encode()
    return b""


def window_of(answer: bytes) -> int:
    """The window bits of the server's compressor by the 101 given (0: not negotiated)."""
    at = answer.find(ANSWER)
    if at < 0:
        return 0
    end = answer.find(b"\r\n", at + 2)
    line = answer[at:end]
    mark = line.find(b"server_max_window_bits=")
    return int(line[mark + 23:mark + 25].rstrip(b"; ")) if mark >= 0 else 15


def _header(first: int, size: int) -> bytes:
    if size < 126:
        return bytes((first, size))
    if size < 65536:
        return bytes((first, 126)) + size.to_bytes(2, "big")
    return bytes((first, 127)) + size.to_bytes(8, "big")


class Deflater:
    """The shared compression of one wire: frames for clients, and messages from them."""

    def __init__(self, max_message: int) -> None:
        self.max_message = max_message
        self._cache: list[tuple[bytes, int, bytes]] = []
        self.messages_deflated = 0
        self.messages_inflated = 0

    def _compress(self, payload: bytes, bits: int) -> bytes:
        # zlib's raw deflate has no 256-byte window: 8 bits get a 512-byte one with matches at
        # distance 1 only (run-length), valid for any window. A small hash (memLevel 4), cleared
        # for every message, makes a large one slower to compress (binary 3x at 128 KiB), and worse.
        compressor = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -9 if bits == 8 else -bits,
                                      8 if len(payload) >= LARGE_SIZE else 4,
                                      zlib.Z_RLE if bits == 8 else zlib.Z_DEFAULT_STRATEGY)
        return compressor.compress(payload) + compressor.flush(zlib.Z_SYNC_FLUSH)

    def frames(self, data: bytes, bits: int) -> bytes:
        """Frames the wire made (final, unmasked) as a client that negotiated compression gets
        them: each text or binary one compressed with RSV1 set, unless that does not shrink it."""
        out = []
        at, size = 0, len(data)
        while at + 2 <= size:
            first, length = data[at], data[at + 1] & 0x7F
            header = 2
            if length == 126:
                length, header = int.from_bytes(data[at + 2:at + 4], "big"), 4
            elif length == 127:
                length, header = int.from_bytes(data[at + 2:at + 10], "big"), 10
            end = at + header + length
            if end > size:
                break
            payload = data[at + header:end]
            if first in (0x81, 0x82) and length >= MIN_SIZE:
                compressed = self._compress(payload, bits)
                if len(compressed) - 4 < length:
                    out.append(_header(first | 0x40, len(compressed) - 4))
                    out.append(compressed[:-4])
                    self.messages_deflated += 1
                    at = end
                    continue
            out.append(data[at:end])
            at = end
        out.append(data[at:])
        return b"".join(out)

    def cached(self, data: bytes, bits: int) -> bytes:
        """`frames` for bytes written to many connections: compressed once per window size."""
        for key, key_bits, value in self._cache:
            if key is data and key_bits == bits:
                return value
        value = self.frames(data, bits)
        self._cache.append((data, bits, value))
        if len(self._cache) > _CACHE:
            del self._cache[0]
        return value

    def inflate(self, payload: bytes) -> bytes | int:
        """A compressed message's payload inflated, never past max_message (a decompression bomb
        stops there); or the close code: 1009 too big, 1007 not valid deflate data."""
        inflater = zlib.decompressobj(-15)
        limit = self.max_message
        try:
            message = inflater.decompress(payload + _TAIL, limit + 1)
        except zlib.error:
            return 1007
        if len(message) > limit:
            return 1009
        self.messages_inflated += 1
        return message
