"""The portable wire: the C wire's contract (`_wire.pyi`) on any asyncio event loop, in Python.

For where the C wire is not built or the OS has no epoll (macOS, Windows, a machine without a
compiler), and as a second implementation the whole test suite runs against. It follows `_wire.c`
step by step: the same states, limits, close codes and reasons, the same callbacks into the
core, and the same writes (a connection is written at once when its queue is empty, else its
bytes wait for the loop to report it writable), so the outbox's one write per recipient per tick
holds here too.

Each socket is watched with `loop.add_reader` and read and written with plain non-blocking
calls rather than through asyncio transports: that keeps accept synchronous (a paused accept on
EMFILE that leaves waiting clients in the backlog, as the C wire does, which transports hide),
costs no task per connection, and lets a paused session stop reading without a transport's own
buffering. Frames are parsed here (the header is a few integer reads) and unmasked with
`websockets`' C speed-up rather than driven through `websockets`' sans-I/O `Protocol`, whose
generators and event objects cost more than the parsing itself: 2.2 us per chat-sized frame up to
the handler against 6.8 (`bench/micro/frame_parse.py`, best of 15 on the shared machine).
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import socket
import ssl
import sys
from collections.abc import Callable
from time import monotonic, perf_counter
from typing import Any

try:  # websockets' C speed-up; its pure-Python `utils.apply_mask` is 15x slower on a chat message
    from websockets.speedups import apply_mask
except ImportError:  # no wheel and no compiler where websockets was installed
    from websockets.utils import apply_mask

from .deflate import Deflater, window_of
from .frames import close_frame, frame, request_head, valid_close_code

READ_SIZE = 65536
#: Connections accepted per readiness of the listening socket, so a connect storm cannot starve
#: the connections already open.
ACCEPT_BATCH = 128
_OUT_OF_DESCRIPTORS = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}

# HANDSHAKE: reading the request head. HELD: the head is read and its answer comes later (`hold`);
# not reading. OPEN. CLOSING: the server sent its close frame and waits for the client's. SHUT:
# reading stopped; once queued bytes are written, writing is shut down and input is read and
# dropped until the client closes too (or the close timer fires), so unread input never turns the
# close into a reset that destroys the close frame or answer before the client reads it. GONE.
HANDSHAKE, HELD, OPEN, CLOSING, SHUT, GONE = range(6)
_CLOSERS = (None, "server", "client")

_PING = b"\x89\x00"
_NOT_TLS = (b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 45\r\n"
            b"Connection: close\r\n\r\nthis port speaks TLS: use https:// or wss://\n")


class _TLS:
    """A connection's TLS: an SSL object between two memory BIOs, so the wire keeps its own reads
    and writes (one encryption and one send per recipient per tick, as on a plain port)."""

    __slots__ = ("ssl", "incoming", "outgoing", "started", "ready")

    def __init__(self, context: ssl.SSLContext) -> None:
        self.incoming = ssl.MemoryBIO()
        self.outgoing = ssl.MemoryBIO()
        self.ssl = context.wrap_bio(self.incoming, self.outgoing, server_side=True)
        #: Bytes have arrived (only the first ones tell a TLS client from another); the handshake is done.
        self.started = False
        self.ready = False


class Entry:
    """A script engine's entry for messages, which the wire calls itself; a result equal to `echo`
    sends the message back to its sender."""

    __slots__ = ("function", "stale", "entries", "echo")

    def __init__(self, echo: int) -> None:
        #: function(handle, message, None, 0) -> result, or None: no direct calls.
        self.function: Callable[[object, str, None, int], object] | None = None
        #: True while the engine must hear of changes first.
        self.stale = False
        #: Entries into the engine, direct or not (the CPU-time limit reads it).
        self.entries = 0
        self.echo = echo


class Conn:
    """One TCP connection; implements `session.Connection`."""

    __slots__ = ("_wire", "_sock", "_fd", "_peer", "state", "_reading", "_alive", "_pinged", "session",
                 "_entry", "_handle", "_timer", "_in", "_parts", "_parts_size", "_parts_text", "_out",
                 "_on_body", "_body_size", "_linger",
                 "_deflate", "_parts_deflated", "_tls",
                 "_messages_in", "_bytes_in", "_messages_out", "_bytes_out", "_opened", "_close_code", "_closer",
                 "_full_at", "_held")

    def __init__(self, wire: Wire, sock: socket.socket, peer: str) -> None:
        self._wire = wire
        self._sock = sock
        self._fd = sock.fileno()
        self._peer = peer
        self.state = HANDSHAKE
        #: Registered with the loop as a reader (not paused, not shut).
        self._reading = False
        self._alive = True
        self._pinged = False
        self.session: Any = None
        self._entry: Entry | None = None
        self._handle: object = None
        #: The timer that aborts a close the client does not complete.
        self._timer: asyncio.TimerHandle | None = None
        #: The unparsed tail; the parts of a fragmented message; bytes not yet written.
        self._in: bytearray | None = None
        self._parts: list[bytes] | None = None
        self._parts_size = 0
        self._parts_text = False
        self._out: bytearray | None = None
        #: While a plain HTTP request's body is read (`read_body`): what to call with it, its size.
        self._on_body: Callable[[bytes], None] | None = None
        self._body_size = 0
        #: After a plain HTTP answer: read (and drop) what the client still sends until it closes,
        #: so an unread request body does not turn the close into a reset that loses the answer.
        self._linger = False
        #: permessage-deflate: 0 (not negotiated) or the window bits of the server's compressor.
        self._deflate = 0
        self._parts_deflated = False
        self._tls = _TLS(wire.tls) if wire.tls is not None else None
        #: The session's traffic since the 101, when it opened (once GONE: the seconds it was
        #: open), the first close frame's code and who sent it (1 server, 2 client): `summary`.
        self._messages_in = self._bytes_in = self._messages_out = self._bytes_out = 0
        self._opened = 0.0
        self._close_code = self._closer = 0
        #: --message-rate: when this connection's bucket is full again (GCRA).
        self._full_at = 0.0
        #: Bytes of `_in` and `_parts`, as counted in the wire's `buffered`.
        self._held = 0

    # -- the core's session.Connection -----------------------------------------------------------

    def write(self, data: bytes) -> int:
        """Send now what the socket takes, queue the rest; returns the bytes still queued."""
        if self.state == OPEN or self.state == CLOSING:
            self._messages_out += _frames_in(data)
        if self._deflate and type(data) is bytes and self.state < SHUT:
            data = self._wire.deflater.cached(data, self._deflate)
        self._send(data)
        return len(self._out) if self._out is not None and self.state != GONE else 0

    def close(self, code: int, reason: str) -> None:
        """Send a close frame; abort if the client has not closed within close_timeout."""
        if self.state == OPEN:
            self.state = CLOSING
            self._closing(code, 1)
            self._send(close_frame(code, reason))
            self._arm_close_timer()

    def pause_reading(self) -> None:
        if self.state < SHUT:
            self._watch_reading(False)

    def resume_reading(self) -> None:
        if self.state < SHUT:
            self._watch_reading(True)

    def abort(self) -> None:
        """Close the socket now."""
        self._gone(False)

    def keepalive(self) -> None:
        """Once per ping interval: ping a silent client, drop one that did not answer the last ping."""
        if self._alive:
            self._alive = False
            self._pinged = False
        elif self._pinged:
            self._wire.log.info("session %s: no answer to ping, closing", getattr(self.session, "id", None))
            self._gone(False)
        elif self.state == OPEN:
            self._pinged = True
            self._send(_PING)

    def accept(self, response: bytes, session: Any) -> bool:
        """Send the 101; frames go to session from now on. False if the connection was gone (or
        answered) already."""
        if self.state != HANDSHAKE and self.state != HELD:
            return False
        held = self.state == HELD
        # Open before the 101 goes out: if the send fails, the session hears of it.
        self._wire.handshaking.pop(self, None)
        self.state = OPEN
        self._opened = monotonic()
        self.session = session
        if self._wire.compression:
            self._deflate = window_of(response)
        self._send(response)
        if held and self.state == OPEN:
            self._watch_reading(True)
        return True

    def hold(self) -> float:
        """The head's answer comes later: stop reading and timing the handshake; returns the
        seconds left until its deadline, within which the holder must accept or respond."""
        if self.state != HANDSHAKE:
            return 0.0
        deadline = self._wire.handshaking.pop(self, monotonic())
        self.state = HELD
        self._watch_reading(False)
        return max(0.0, deadline - monotonic())

    def summary(self) -> tuple[int, int, int, int, float, int, str | None]:
        """(messages_in, bytes_in, messages_out, bytes_out, seconds, close_code, closed_by) since the 101."""
        if self.state < OPEN:
            return 0, 0, 0, 0, 0.0, 0, None
        seconds = self._opened if self.state == GONE else monotonic() - self._opened
        return (self._messages_in, self._bytes_in, self._messages_out, self._bytes_out, seconds,
                self._close_code, _CLOSERS[self._closer])

    def respond(self, response: bytes, linger: bool = False) -> None:
        """Answer a plain HTTP request, then close once the client closed too (or after
        close_timeout), dropping what it still sends; with linger, also while the answer is being
        written."""
        if self.state == HANDSHAKE or self.state == HELD:
            self._linger = linger
            self._send(response)
            self._shut()

    def read_body(self, size: int, on_body: Callable[[bytes], None]) -> None:
        """From on_head, read a request body of size bytes (at most max_message_size) and call
        on_body(body); the answer (`respond`) may then come later, within handshake_timeout."""
        if not 0 <= size <= self._wire.max_message:
            raise ValueError(f"a body of 0 to {self._wire.max_message} bytes, not {size}")
        if self.state != HANDSHAKE or self._on_body is not None:
            raise RuntimeError("read_body is for a request head being answered")
        self._on_body = on_body
        self._body_size = size

    def direct(self, entry: Entry | None, handle: object) -> None:
        """Hand this session's text messages to a script engine's Entry with its handle (None, None:
        to on_message)."""
        if entry is not None and not isinstance(entry, Entry):
            raise TypeError(f"an Entry or None, not {type(entry).__name__}")
        self._entry = entry
        self._handle = handle if entry is not None else None

    # -- the event loop ---------------------------------------------------------------------------

    def _watch_reading(self, on: bool) -> None:
        if on and not self._reading:
            self._wire.loop.add_reader(self._fd, self._readable)
        elif not on and self._reading:
            self._wire.loop.remove_reader(self._fd)
        self._reading = on

    def _gone(self, now: bool) -> None:
        """The socket is closed. The session hears of it now (`now`, from a socket event) or on the
        next loop iteration (from a method the core called, maybe in the middle of a handler)."""
        if self.state == GONE:
            return
        wire = self._wire
        if self.session is not None:  # it had its 101: freeze its duration
            self._opened = monotonic() - self._opened
        self.state = GONE
        wire.handshaking.pop(self, None)
        self._watch_reading(False)
        if self._out is not None:
            wire.loop.remove_writer(self._fd)
            self._out = None
        self._sock.close()
        wire.connections -= 1
        wire.listen_again()
        self._in = None
        self._parts = None
        self._hold()
        self._on_body = None  # a closure holding this connection
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._detach(now)

    def _detach(self, now: bool) -> None:
        """The connection is over for its session, which hears of it now (`now`, from a socket
        event) or on the next loop iteration (from a method the core called)."""
        wire = self._wire
        session, self.session = self.session, None
        if session is not None:
            if now:
                wire.call(wire.on_lost, session)
            else:
                wire.loop.call_soon(wire.on_lost, session)

    def _hold(self) -> None:
        """Count what this connection holds while receiving (its unparsed tail or request body, the
        parts of a fragmented message) in the wire's `buffered`."""
        held = (len(self._in) if self._in is not None else 0) + (self._parts_size if self._parts is not None else 0)
        self._wire.buffered += held - self._held
        self._held = held

    def _room(self, more: int) -> bool:
        """Whether the process-wide budget (`max_buffered`) can take `more` bytes held."""
        return self._wire.buffered + more <= self._wire.max_buffered

    def _arm_close_timer(self) -> None:
        """A close must never wait on the client forever."""
        if self._timer is None and self.state != GONE:
            self._timer = self._wire.loop.call_later(self._wire.close_timeout, self.abort)

    # -- writing ----------------------------------------------------------------------------------

    def _closing(self, code: int, closer: int) -> None:
        """The first close frame, for the access log."""
        if not self._close_code:
            self._close_code = code
            self._closer = closer

    def _send(self, data: bytes) -> None:
        if self.state >= SHUT:
            return
        self._wire.bytes_out += len(data)
        if self.state >= OPEN:
            self._bytes_out += len(data)
        if self._tls is not None:
            try:
                self._tls.ssl.write(data)
            except ssl.SSLError:
                self._gone(False)
                return
            data = self._tls.outgoing.read()
        self._send_raw(data)

    def _send_raw(self, data: bytes) -> None:
        if self._out is not None:
            self._out += data
            return
        try:
            sent = self._sock.send(data)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            self._gone(False)
            return
        if sent < len(data):
            self._out = bytearray(data[sent:])
            self._wire.loop.add_writer(self._fd, self._writable)

    def _writable(self) -> None:
        """The socket takes more: write what is queued; a shut connection lingers once it is all out."""
        out = self._out
        if out is None:
            return
        try:
            sent = self._sock.send(out)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._gone(True)
            return
        del out[:sent]
        if out:
            return
        self._out = None
        self._wire.loop.remove_writer(self._fd)
        if self.state == SHUT:
            self._written(True)

    def _written(self, now: bool) -> None:
        """A shut connection wrote everything: send the FIN, then read and drop input until the
        client closes too or the close timer fires. The session is over now."""
        try:
            self._sock.shutdown(socket.SHUT_WR)
        except OSError:
            self._gone(now)
            return
        self._watch_reading(True)
        self._arm_close_timer()
        self._detach(now)

    def _shut(self) -> None:
        """Stop reading; close the socket once what is queued is written."""
        if self.state >= SHUT:
            return
        self._wire.handshaking.pop(self, None)
        self.state = SHUT
        self._watch_reading(self._linger)
        self._parts = None
        if self._out is None:
            self._written(False)
            return
        self._arm_close_timer()

    # -- reading ----------------------------------------------------------------------------------

    def _readable(self) -> None:
        try:
            data = self._sock.recv(READ_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._gone(True)
            return
        if not data:
            self._gone(True)
            return
        if self._tls is not None:
            self._tls_received(data)
        else:
            self._received(data)
        if self.state >= SHUT:
            self._in = None
            self._parts = None
        self._hold()

    def _tls_received(self, data: bytes) -> None:
        """Ciphertext arrived: the handshake, then the plaintext as on a plain port."""
        tls = self._tls
        assert tls is not None
        if not tls.started and data[0] != 0x16:
            # not a TLS handshake record: an HTTP client is told so in plain text, any other dropped
            if 0x41 <= data[0] <= 0x5A:
                try:
                    self._sock.send(_NOT_TLS)
                except OSError:
                    pass
            self._gone(True)
            return
        tls.started = True
        tls.incoming.write(data)
        plain = []
        try:
            if not tls.ready:
                tls.ssl.do_handshake()
                tls.ready = True
            while True:
                chunk = tls.ssl.read(READ_SIZE)
                if not chunk:
                    raise ssl.SSLZeroReturnError
                plain.append(chunk)
        except ssl.SSLWantReadError:
            pass
        except ssl.SSLError:
            # the client's close_notify, or a failed handshake: its alert goes out first if it can
            if plain and self.state < SHUT:
                self._received(b"".join(plain))
            if self._tls is not None and tls.outgoing.pending:
                try:
                    self._sock.send(tls.outgoing.read())
                except OSError:
                    pass
            self._gone(True)
            return
        if plain:
            self._received(b"".join(plain))
        if self.state < GONE and tls.outgoing.pending:
            self._send_raw(tls.outgoing.read())

    def _received(self, data: bytes) -> None:
        """Bytes read from the socket: the request head first, then frames."""
        if self.state == HANDSHAKE:
            if not self._room(len(data)):
                self._head(None, (503, "server busy, try again later"))
                return
            buffer = self._in
            if buffer is None:
                buffer = self._in = bytearray(data)
                start = 0
            else:
                start = max(0, len(buffer) - 3)
                buffer += data
            if self._on_body is not None:
                self._body()
                return
            end = buffer.find(b"\r\n\r\n", start)
            if (end if end >= 0 else len(buffer)) > self._wire.max_head:  # arrived whole or not
                self._head(None)
                return
            if end < 0:
                return
            self._head(bytes(buffer[:end]))
            body = self.state == HANDSHAKE and self._on_body is not None
            # The head is dropped even when on_open already closed the session: the client's close
            # reply comes after it.
            if self.state != OPEN and self.state != CLOSING and not body:
                if self.state == HELD:
                    self._in = None  # a client sends nothing more before the 101
                return
            del buffer[:end + 4]
            if body:
                self._body()
                return
            if not buffer:
                self._in = None
                return
            data = b""
        if self.state != OPEN and self.state != CLOSING:
            return
        buffer = self._in
        if buffer is not None:
            if not self._room(len(data)):
                self._fail_busy()
                return
            buffer += data
            self._hold()
            used = self._frames(buffer)
            if self.state == OPEN or self.state == CLOSING:
                del buffer[:used]
                if not buffer:
                    self._in = None
        else:
            used = self._frames(data)
            if used < len(data) and (self.state == OPEN or self.state == CLOSING):
                if not self._room(len(data) - used):
                    self._fail_busy()
                    return
                self._in = bytearray(data[used:])

    def _frames(self, data: bytes | bytearray) -> int:
        """Every whole frame in data; returns the bytes used. Stops when the connection stops reading."""
        at = 0
        size = len(data)
        limit = self._wire.max_message
        while self.state == OPEN or self.state == CLOSING:
            left = size - at
            if left < 2:
                break
            second = data[at + 1]
            length = second & 0x7F
            header = 2
            if length == 126:
                if left < 4:
                    break
                length = int.from_bytes(data[at + 2:at + 4], "big")
                header = 4
            elif length == 127:
                if left < 10:
                    break
                length = int.from_bytes(data[at + 2:at + 10], "big")
                header = 10
            if not second & 0x80:
                self._fail(1002, "client frames must be masked")
                break
            if length > limit:
                self._fail_too_big()
                break
            header += 4
            if left - header < length:
                break
            start = at + header
            payload = apply_mask(data[start:start + length], data[start - 4:start])
            first = data[at]
            at = start + length
            if not self._frame(first, payload):
                break
        return at

    def _frame(self, first: int, payload: bytes) -> bool:
        """One whole, unmasked frame. Returns False once the connection stops reading."""
        wire = self._wire
        opcode = first & 0x0F
        final = first & 0x80
        self._alive = True
        wire.bytes_in += len(payload)
        compressed = False
        self._bytes_in += len(payload)
        if first & 0x70:
            # RSV1 marks a compressed message, on its first frame only.
            if first & 0x70 != 0x40 or not self._deflate or (opcode != 0x1 and opcode != 0x2):
                return self._fail(1002, "reserved bits set without an extension")
            compressed = True
        if opcode == 0x1 or opcode == 0x2:
            if self._parts is not None:
                return self._fail(1002, "new message before the fragmented one finished")
            if final:
                return self._payload(payload, opcode == 0x1, compressed)
            if not self._room(len(payload)):
                return self._fail_busy()
            self._parts_deflated = compressed
            self._parts = [payload]
            self._parts_size = len(payload)
            self._parts_text = opcode == 0x1
            self._hold()
            return True
        if opcode == 0x0:
            parts = self._parts
            if parts is None:
                return self._fail(1002, "continuation frame without a message to continue")
            if self._parts_size + len(payload) > wire.max_message:
                return self._fail_too_big()
            if not self._room(len(payload)):
                return self._fail_busy()
            self._parts_size += len(payload)
            parts.append(payload)
            self._hold()
            if not final:
                return True
            self._parts = None
            return self._payload(b"".join(parts), self._parts_text, self._parts_deflated)
        if opcode >= 0x8 and opcode <= 0xA:
            if not final or len(payload) > 125:
                return self._fail(1002, "control frames must be final and at most 125 bytes")
            if opcode == 0x8:
                return self._closed_by_peer(payload)
            if opcode == 0x9 and self.state == OPEN:
                self._send(bytes((0x8A, len(payload))) + payload)
                # Pongs count against the queue like any frame: a client that pings and never
                # reads is a slow consumer.
                if self.state == OPEN and self._out is not None and len(self._out) > wire.send_queue:
                    return self._fail(1008, "send queue full")
            return True
        return self._fail(1002, f"unknown opcode {opcode}")

    def _payload(self, payload: bytes, text: bool, compressed: bool) -> bool:
        """A whole message, compressed or not."""
        if compressed:
            inflated = self._wire.deflater.inflate(payload)
            if inflated == 1009:
                return self._fail_too_big()
            if isinstance(inflated, int):
                return self._fail(1007, "invalid compressed data")
            payload = inflated
        return self._message(payload, text)

    def _message(self, payload: bytes, text: bool) -> bool:
        session = self.session
        if self.state != OPEN or session is None:
            return True  # the server is closing: dropped
        wire = self._wire
        if wire.message_interval:  # --message-rate, as a GCRA
            now = monotonic()
            full = max(self._full_at, now) + wire.message_interval
            if full - now > wire.message_tolerance:
                return self._fail(1008, "message rate exceeded")
            self._full_at = full
        message: str | bytes = payload
        if text:
            try:
                message = payload.decode()
            except UnicodeDecodeError:
                return self._fail(1007, "invalid UTF-8 in a text message")
        wire = self._wire
        started = perf_counter()
        if text and self._direct_ok():
            self._direct(message)
        else:
            try:  # the hottest call: not through `wire.call`
                wire.on_message(session, message)
            except Exception:
                wire.log.exception("wire: on_message failed")
        wire.message_seconds += perf_counter() - started
        wire.messages_in += 1
        self._messages_in += 1
        return self.state == OPEN or self.state == CLOSING

    def _direct_ok(self) -> bool:
        """The engine may be entered directly: the script allows it, nothing is queued for the client
        (here or in the outbox, which a direct echo would overtake), and the session is not waiting
        on an async hook (its messages then wait in its inbox)."""
        entry = self._entry
        return (entry is not None and entry.function is not None and not entry.stale and self._out is None
                and not self.session.busy and not self._wire.outbox.queued)

    def _direct(self, message: str) -> None:
        """One message into the engine: nothing to do and an echo are handled here, any other result
        (or an error) by the core, `on_finish(session, message, result, failed)`."""
        wire = self._wire
        entry = self._entry
        assert entry is not None and entry.function is not None
        entry.entries += 1
        wire.direct_calls += 1
        failed = False
        try:
            result = entry.function(self._handle, message, None, 0)
        except Exception as exc:
            result, failed = exc, True
        else:
            if result is None:
                return
            if type(result) is int and result == entry.echo:
                wire.direct_frames += 1
                self._messages_out += 1
                encoded = frame(message)
                self._send(wire.deflater.frames(encoded, self._deflate) if self._deflate else encoded)
                return
        wire.call(wire.on_finish, self.session, message, result, failed)

    def _closed_by_peer(self, payload: bytes) -> bool:
        """The client's close frame: answer it (unless it answers ours) and close the socket."""
        code = 1000
        if len(payload) >= 2:
            code = int.from_bytes(payload[:2], "big")
            if not valid_close_code(code):
                return self._fail(1002, f"invalid close code {code}")
            try:
                payload[2:].decode()
            except UnicodeDecodeError:
                return self._fail(1007, "invalid UTF-8 in the close reason")
        elif len(payload) == 1:
            return self._fail(1002, "a close payload of one byte")
        if self.session is not None:
            self._wire.call(self.session.mark_closing)
        self._closing(code if len(payload) >= 2 else 1005, 2)  # 1005: no code given
        if self.state == OPEN:
            self._send(close_frame(code, ""))
        self._shut()
        return False

    def _fail(self, code: int, reason: str) -> bool:
        """A protocol or limit violation: the session is told, a close frame with the code goes out,
        and the socket closes without waiting for the client's reply. Returns False."""
        wire = self._wire
        wire.call(wire.on_failed, self.session, code, reason)
        if self.state == OPEN:
            self._closing(code, 1)
            self._send(close_frame(code, reason))
        self._shut()
        return False

    def _fail_too_big(self) -> bool:
        return self._fail(1009, f"message over {self._wire.max_message} bytes")

    def _fail_busy(self) -> bool:
        """Bytes that must wait (an unfinished frame or message) and the process-wide budget cannot
        take: try again later (the message itself is within its limits)."""
        return self._fail(1013, "server busy: receive buffers full, try again later")

    def _head(self, head: bytes | None, refused: tuple[int, str] = (431, "request head too large")) -> None:
        """The request head is complete (or refused, None): the core routes it with its parts and
        answers by `accept` or `respond`."""
        wire = self._wire
        if head is None:
            method, path, query, headers, answer = None, "", "", b"", refused
        else:
            method, path, query, headers, answer = request_head(head, wire.compression)
        wire.call(wire.on_head, self, method, path, query, headers, self._peer, answer)
        if self.state == HANDSHAKE and self._on_body is None:
            self._gone(True)  # not answered and no body wanted: only after an error in on_head

    def _body(self) -> None:
        """A request body (`read_body`) is complete once `body_size` bytes are in: reading stops
        (bytes past it are never read), `on_body(body)` is called, and the answer (`respond`) may
        come later, within a fresh handshake timeout."""
        buffer = self._in
        size = self._body_size
        if buffer is None:
            buffer = bytearray()
        if len(buffer) < size:
            return
        on_body, self._on_body = self._on_body, None
        assert on_body is not None
        self._watch_reading(False)
        wire = self._wire
        wire.handshaking.pop(self, None)
        wire.handshaking[self] = monotonic() + wire.handshake_timeout
        body = bytes(buffer[:size])
        self._in = None
        self._hold()
        try:
            on_body(body)
        except Exception:
            wire.log.exception("wire: %s failed", getattr(on_body, "__qualname__", on_body))
            if self.state == HANDSHAKE:
                self._gone(True)


def _frames_in(data: bytes) -> int:
    """How many whole frames `data` holds (`Conn.write` is given frames): the messages out."""
    count = at = 0
    size = len(data)
    while size - at >= 2:
        length = data[at + 1] & 0x7F
        header = 2
        if length == 126 and size - at >= 4:
            length, header = int.from_bytes(data[at + 2:at + 4], "big"), 4
        elif length == 127 and size - at >= 10:
            length, header = int.from_bytes(data[at + 2:at + 10], "big"), 10
        count += 1
        at += header + length
    return count


class Wire:
    """The listening socket and every connection, on the running asyncio loop."""

    def __init__(self, listener: socket.socket,
                 on_head: Callable[..., None], on_message: Callable[[Any, str | bytes], None],
                 on_finish: Callable[[Any, str, object, bool], None], on_lost: Callable[[Any], None],
                 on_failed: Callable[[Any, int, str], None], outbox: Any, loop: asyncio.AbstractEventLoop,
                 log: logging.Logger, max_message_size: int, max_head_size: int, handshake_timeout: float,
                 close_timeout: float, compression: bool = False, message_rate: float = 0.0,
                 message_burst: float = 0.0, *,
                 send_queue_size: int = sys.maxsize, max_buffered: int = sys.maxsize) -> None:
        if min(max_message_size, max_head_size, send_queue_size, max_buffered) <= 0:
            raise ValueError("sizes and limits must be positive")
        self.on_head = on_head
        self.on_message = on_message
        self.on_finish = on_finish
        self.on_lost = on_lost
        self.on_failed = on_failed
        self.outbox = outbox
        self.loop = loop
        self.log = log
        self.max_message = max_message_size
        self.max_head = max_head_size
        self.handshake_timeout = handshake_timeout
        self.close_timeout = close_timeout
        self.compression = compression
        self.deflater = Deflater(max_message_size)
        #: TLS for new connections (None: plain); `load_tls` swaps it.
        self.tls: ssl.SSLContext | None = None
        #: --message-rate as a GCRA: seconds per message, and how far ahead of now a connection's
        #: bucket may be (the burst; the slack absorbs rounding); 0: no limit.
        self.message_interval = 1.0 / message_rate if message_rate > 0 else 0.0
        self.message_tolerance = (message_burst or message_rate) * self.message_interval * (1 + 1e-9)
        #: A connection's queue towards its client; the budget for what all clients make the wire
        #: hold while receiving, and what it holds now.
        self.send_queue = send_queue_size
        self.max_buffered = max_buffered
        self.buffered = 0
        self.bytes_in = 0
        self.bytes_out = 0
        self.messages_in = 0
        self.message_seconds = 0.0
        self.direct_calls = 0
        self.direct_frames = 0
        self.connections = 0
        #: Connections still in their handshake, with their deadlines: oldest first.
        self.handshaking: dict[Conn, float] = {}
        #: The listening socket (its owner closes it, after `stop_accepting`).
        self._listener: socket.socket | None = listener
        if sys.platform == "linux":
            # Accepted sockets inherit TCP_NODELAY on Linux; TCP_DEFER_ACCEPT: a connection is handed
            # over once its client has sent something (a WebSocket client always speaks first).
            self._nodelay_each = False
            self._listener.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._listener.setsockopt(socket.IPPROTO_TCP, socket.TCP_DEFER_ACCEPT, 1)
        else:
            self._nodelay_each = self._listener.family in (socket.AF_INET, socket.AF_INET6)
        self._accepting = False
        self.listen_again()

    def call(self, callback: Callable[..., object], *args: object) -> None:
        """A callback into the core: an error there is a bug on our Python side, reported without
        stopping the wire (as the C wire reports it as unraisable)."""
        try:
            callback(*args)
        except Exception:
            self.log.exception("wire: %s failed", getattr(callback, "__qualname__", callback))

    def listen_again(self) -> None:
        if not self._accepting and self._listener is not None:
            self.loop.add_reader(self._listener.fileno(), self._accept)
            self._accepting = True

    def _accept(self) -> None:
        assert self._listener is not None
        for _ in range(ACCEPT_BATCH):
            try:
                sock, address = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except ConnectionAbortedError:
                continue
            except OSError as exc:
                if exc.errno in _OUT_OF_DESCRIPTORS:
                    # Stop accepting until a connection closes or the next sweep, rather than spin
                    # on a listening socket that stays ready; the clients wait in the backlog.
                    self.loop.remove_reader(self._listener.fileno())
                    self._accepting = False
                    self.log.warning("cannot accept connections (%s) with %d open; pausing accept",
                                     os.strerror(exc.errno or 0), self.connections)
                return
            sock.setblocking(False)
            if self._nodelay_each:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn = Conn(self, sock, address[0] if isinstance(address, tuple) else "")
            self.connections += 1
            self.handshaking[conn] = monotonic() + self.handshake_timeout
            conn._watch_reading(True)
            # With TCP_DEFER_ACCEPT the request head has usually arrived already: read it now.
            conn._readable()

    def sweep(self) -> None:
        """Drop connections past their handshake deadline; accept again if descriptors ran out."""
        now = monotonic()
        while self.handshaking:
            conn, deadline = next(iter(self.handshaking.items()))
            if deadline > now:
                break
            conn._gone(True)
        self.listen_again()

    def load_tls(self, certfile: str, keyfile: str) -> None:
        """Serve new connections over TLS with this certificate chain and key (PEM); connections
        already open keep theirs. ValueError, with the reason, if they cannot be used."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.options |= ssl.OP_NO_RENEGOTIATION | ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE
        try:
            context.load_cert_chain(certfile, keyfile)
        except ssl.SSLError as exc:
            if "KEY_VALUES_MISMATCH" in str(exc):
                raise ValueError(f"the private key does not match the certificate ({certfile}, {keyfile})") from None
            raise ValueError(f"cannot load the certificate or the private key ({certfile}, {keyfile}): {exc}") from None
        except OSError as exc:
            raise ValueError(f"cannot read ({certfile}, {keyfile}): {exc.strerror}") from None
        self.tls = context

    @property
    def messages_deflated(self) -> int:
        return self.deflater.messages_deflated

    @property
    def messages_inflated(self) -> int:
        return self.deflater.messages_inflated

    def stop_accepting(self) -> None:
        if self._listener is not None:
            if self._accepting:
                self.loop.remove_reader(self._listener.fileno())
            self._accepting = False
            self._listener = None
