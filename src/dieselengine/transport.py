"""The WebSocket transport: an asyncio protocol on uvloop, frames in, the core's `Connection` out.

Each connection is one small object: the request head is kept as raw bytes, incoming data is
parsed where it lands, and nothing else is allocated until a handler needs it. Measured beside
picows (bench/RESULTS.md), this is the difference between 2.2 and 8.9 KiB per idle connection
and twice the handshakes per second, for 7 % less echo throughput.

Outgoing frames are written straight to the socket transport by the outbox, already encoded.
"""

from __future__ import annotations

import asyncio
import logging
from struct import Struct
from typing import TYPE_CHECKING

from .frames import close_frame, valid_close_code
from .handshake import MAX_HEAD_SIZE, HandshakeError, accept_upgrade, http_response, parse_head
from .request import Request, client_address
from .session import Session

try:
    from websockets.speedups import apply_mask
except ImportError:  # pragma: no cover - the C speedups are missing on some platforms
    def apply_mask(data: bytes, mask: bytes) -> bytes:
        size = len(data)
        key = int.from_bytes((mask * ((size >> 2) + 1))[:size], "little")
        return (int.from_bytes(data, "little") ^ key).to_bytes(size, "little")

if TYPE_CHECKING:
    from .dispatch import Dispatcher
    from .endpoints import Endpoints
    from .settings import Settings

log = logging.getLogger("dieselengine")

_HANDSHAKE, _OPEN, _CLOSING, _CLOSED = range(4)
_CLOSE_CODE = Struct("!H")
_PING = b"\x89\x00"
#: Missing bytes of a frame past which its parts are collected rather than re-joined per segment.
_LARGE_TAIL = 65536


class ServerContext:
    """What every connection of one server shares."""

    __slots__ = ("dispatcher", "endpoints", "settings", "stats", "loop", "handshaking")

    def __init__(self, dispatcher: Dispatcher, endpoints: Endpoints, settings: Settings) -> None:
        self.dispatcher = dispatcher
        self.endpoints = endpoints
        self.settings = settings
        self.stats = dispatcher.stats
        self.loop = dispatcher.hub.loop
        #: Connections still in their HTTP handshake, with their deadlines: one sweep a second
        #: drops the late ones (cheaper than a timer per connection).
        self.handshaking: dict[WebSocketProtocol, float] = {}

    def drop_late_handshakes(self) -> None:
        now = self.loop.time()
        late = [protocol for protocol, deadline in self.handshaking.items() if deadline <= now]
        for protocol in late:
            del self.handshaking[protocol]
            protocol.abort()


class WebSocketProtocol(asyncio.Protocol):
    """One TCP connection: the HTTP handshake, then frames. Implements `session.Connection`."""

    __slots__ = ("_ctx", "_transport", "_state", "_buffer", "_chunks", "_missing", "_timer", "session", "_paused",
                 "_parts", "_parts_size", "_parts_text", "alive", "_pinged")

    def __init__(self, ctx: ServerContext) -> None:
        self._ctx = ctx
        self._transport: asyncio.Transport | None = None
        self._state = _HANDSHAKE
        #: Bytes of an unfinished request head or frame; the parts of a large unfinished frame and
        #: how many bytes it still misses.
        self._buffer = b""
        self._chunks: list[bytes] | None = None
        self._missing = 0
        #: The close handshake's deadline, once the server started one.
        self._timer: asyncio.TimerHandle | None = None
        self.session: Session | None = None
        self._paused = False
        #: Parts of a fragmented message, their size, and whether it is text.
        self._parts: list[bytes] | None = None
        self._parts_size = 0
        self._parts_text = False
        #: Keepalive: data seen since the last sweep, and whether a ping is unanswered.
        self.alive = True
        self._pinged = False

    # -- asyncio.Protocol ------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]
        self._ctx.handshaking[self] = self._ctx.loop.time() + self._ctx.settings.handshake_timeout

    def data_received(self, data: bytes) -> None:
        if self._state == _OPEN or self._state == _CLOSING:
            self._frames(data)
        elif self._state == _HANDSHAKE:
            self._handshake(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._state == _HANDSHAKE:
            self._ctx.handshaking.pop(self, None)
        self._state = _CLOSED
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        session, self.session = self.session, None
        if session is not None:
            # Dropping our reference breaks the session <-> connection cycle, so a closed
            # connection is freed by reference counting rather than waiting for the collector.
            self._ctx.dispatcher.ended(session)

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False

    # -- session.Connection ----------------------------------------------------------------------

    def write(self, data: bytes) -> int:
        transport = self._transport
        if transport is None or transport.is_closing():
            return 0
        transport.write(data)
        self._ctx.stats.bytes_out += len(data)
        return transport.get_write_buffer_size() if self._paused else 0

    def close(self, code: int, reason: str) -> None:
        """Send a close frame, then wait (at most `close_timeout`) for the client's."""
        if self._state != _OPEN or self._transport is None:
            return
        self._state = _CLOSING
        self._transport.write(close_frame(code, reason))
        self._timer = self._ctx.loop.call_later(self._ctx.settings.close_timeout, self._transport.abort)

    def pause_reading(self) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.pause_reading()

    def resume_reading(self) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.resume_reading()

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()

    def keepalive(self) -> None:
        """Called once per ping interval: ping a silent peer, drop one that did not answer."""
        if self.alive:
            self.alive = False
            self._pinged = False
        elif self._pinged:
            log.info("session %s: no answer to ping, closing", self.session.id if self.session else "?")
            self.abort()
        elif self._state == _OPEN and self._transport is not None:
            self._pinged = True
            self._transport.write(_PING)

    # -- the handshake ---------------------------------------------------------------------------

    def _handshake(self, data: bytes) -> None:
        buffer = self._buffer + data if self._buffer else data
        end = buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(buffer) > MAX_HEAD_SIZE:
                self._respond(http_response(431, b"request head too large\n"))
            else:
                self._buffer = buffer
            return
        self._buffer = b""
        rest = buffer[end + 4:]
        try:
            head = parse_head(buffer[:end])
            found = self._ctx.endpoints.resolve(head)
            if isinstance(found, bytes):
                self._respond(found)
                return
            response = accept_upgrade(head)
        except HandshakeError as exc:
            self._respond(http_response(exc.status, f"{exc}\n".encode()))
            return
        transport = self._transport
        assert transport is not None
        transport.write(response)
        self._ctx.handshaking.pop(self, None)
        self._state = _OPEN
        ctx = self._ctx
        peer = transport.get_extra_info("peername")
        request = Request(head.path, head.query, head.raw_headers, "")
        request.remote_addr = client_address(
            peer[0] if peer else "",
            request.header("x-forwarded-for") if ctx.settings.trusted_proxies else None,
            ctx.settings.trusted_proxies)
        self.session = Session(ctx.dispatcher.hub, self, request, found)
        ctx.dispatcher.opened(self.session)
        if rest:
            self.data_received(rest)

    def _respond(self, response: bytes) -> None:
        """Answer a plain HTTP request (or a refused upgrade) and close."""
        self._ctx.handshaking.pop(self, None)
        self._state = _CLOSED
        if self._transport is not None:
            self._transport.write(response)
            self._transport.close()

    # -- frames ----------------------------------------------------------------------------------

    def _frames(self, data: bytes) -> None:
        """Parse every complete frame in the data; keep the tail for the next call.

        The tail of a large frame is collected in a list and joined once, when complete: joining
        each arriving segment to the buffer would copy a 1 MiB frame hundreds of times."""
        if self._chunks is not None:
            self._chunks.append(data)
            self._missing -= len(data)
            if self._missing > 0:
                return
            data = b"".join(self._chunks)
            self._chunks = None
        elif self._buffer:
            data = self._buffer + data
            self._buffer = b""
        size = len(data)
        position = 0
        limit = self._ctx.settings.max_message_size
        stats = self._ctx.stats
        while size - position >= 6:
            second = data[position + 1]
            length = second & 0x7F
            if length < 126:
                start = position + 6
            elif length == 126:
                if size - position < 8:
                    break
                length = int.from_bytes(data[position + 2:position + 4], "big")
                start = position + 8
            else:
                if size - position < 14:
                    break
                length = int.from_bytes(data[position + 2:position + 10], "big")
                start = position + 14
            if not second & 0x80:
                self._fail(1002, "client frames must be masked")
                return
            if length > limit:
                self._fail(1009, f"message over {limit} bytes")
                return
            end = start + length
            if end > size:
                if end - size > _LARGE_TAIL:
                    self._chunks = [data[position:]]
                    self._missing = end - size
                    return
                break
            first = data[position]
            payload = apply_mask(data[start:end], data[start - 4:start]) if length else b""
            position = end
            if (first == 0x81 or first == 0x82) and self._parts is None:
                # A whole text or binary message, nearly every frame: every check of _frame passes.
                self.alive = True
                stats.bytes_in += length
                if not self._message(payload, first == 0x81):
                    return
            elif not self._frame(first, payload):
                return
        if position < size:
            self._buffer = data[position:]

    def _frame(self, first: int, payload: bytes) -> bool:
        """Handle one frame; False once the connection is being failed."""
        opcode = first & 0x0F
        self.alive = True
        self._ctx.stats.bytes_in += len(payload)
        if first & 0x70:
            return self._fail(1002, "reserved bits set without an extension")
        if opcode == 0x1 or opcode == 0x2:
            if self._parts is not None:
                return self._fail(1002, "new message before the fragmented one finished")
            if not first & 0x80:
                self._parts = [payload]
                self._parts_size = len(payload)
                self._parts_text = opcode == 0x1
                return True
            return self._message(payload, opcode == 0x1)
        if opcode == 0x0:
            return self._continuation(first, payload)
        if opcode >= 0x8:
            if not first & 0x80 or len(payload) > 125:
                return self._fail(1002, "control frames must be final and at most 125 bytes")
            if opcode == 0x8:
                return self._closed_by_peer(payload)
            if opcode == 0x9:
                if self._state == _OPEN and self._transport is not None:
                    self._transport.write(bytes((0x8A, len(payload))) + payload)
                return True
            if opcode == 0xA:
                return True
        return self._fail(1002, f"unknown opcode {opcode}")

    def _message(self, payload: bytes, text: bool) -> bool:
        if self._state != _OPEN:
            return True  # the server started closing: messages still arriving are dropped
        if text:
            try:
                message: str | bytes = payload.decode()
            except UnicodeDecodeError:
                return self._fail(1007, "invalid UTF-8 in a text message")
        else:
            message = payload
        self._ctx.dispatcher.received(self.session, message)  # type: ignore[arg-type]
        return True

    def _continuation(self, first: int, payload: bytes) -> bool:
        parts = self._parts
        if parts is None:
            return self._fail(1002, "continuation frame without a message to continue")
        self._parts_size += len(payload)
        if self._parts_size > self._ctx.settings.max_message_size:
            return self._fail(1009, f"message over {self._ctx.settings.max_message_size} bytes")
        parts.append(payload)
        if not first & 0x80:
            return True
        self._parts = None
        return self._message(b"".join(parts), self._parts_text)

    def _closed_by_peer(self, payload: bytes) -> bool:
        """The client's close frame: answer it (unless it answers ours) and close the socket."""
        code = 1000
        if len(payload) >= 2:
            code = _CLOSE_CODE.unpack_from(payload)[0]
            if not valid_close_code(code):
                return self._fail(1002, f"invalid close code {code}")
            try:
                payload[2:].decode()
            except UnicodeDecodeError:
                return self._fail(1007, "invalid UTF-8 in the close reason")
        elif payload:
            return self._fail(1002, "a close payload of one byte")
        if self.session is not None:
            self.session.mark_closing()
        if self._state == _OPEN and self._transport is not None:
            self._transport.write(close_frame(code))
        self._shut()
        return False

    def _fail(self, code: int, reason: str) -> bool:
        """A protocol or limit violation: close with its code at once, without waiting for a reply."""
        log.info("session %s: closing with %d: %s", self.session.id if self.session else "?", code, reason)
        self._ctx.stats.protocol_closes += 1
        if self.session is not None:
            self.session.mark_closing(by_server=True)
        if self._state == _OPEN and self._transport is not None:
            self._transport.write(close_frame(code, reason))
        self._shut()
        return False

    def _shut(self) -> None:
        """Close the socket once what is queued is written; abort it if the client does not read
        that within `close_timeout` (a close must never wait on the client forever)."""
        self._state = _CLOSED
        self._buffer = b""
        self._chunks = None
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        transport.close()
        if self._timer is None:
            self._timer = self._ctx.loop.call_later(self._ctx.settings.close_timeout, transport.abort)
