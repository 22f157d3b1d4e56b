"""The picows adapter: frames in, the core's `Connection` out.

picows parses frames in Cython and calls us synchronously; it does not reassemble fragmented
messages or check UTF-8, so this module does both, plus the message-size limit across fragments,
the close handshake and the server-wide keepalive sweep. Outgoing frames are written straight to
the socket's transport by the outbox, already encoded.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from picows import WSCloseCode, WSFrame, WSListener, WSMsgType, WSTransport

from .request import Request, client_address
from .session import Session

if TYPE_CHECKING:
    from .dispatch import Dispatcher
    from .routing import Route
    from .settings import Settings

log = logging.getLogger("dieselengine")

_TEXT = WSMsgType.TEXT
_BINARY = WSMsgType.BINARY
_CONTINUATION = WSMsgType.CONTINUATION
_CLOSE = WSMsgType.CLOSE


class WebSocketConnection(WSListener):
    """One accepted WebSocket connection; implements `session.Connection`."""

    __slots__ = ("_dispatcher", "_settings", "_route", "_request", "session", "_ws", "_raw", "_paused",
                 "_parts", "_parts_size", "_parts_text", "alive", "_pinged", "_close_timer")

    def __init__(self, dispatcher: Dispatcher, settings: Settings, route: Route, request: Request) -> None:
        super().__init__()
        self._dispatcher = dispatcher
        self._settings = settings
        self._route = route
        self._request = request
        self.session: Session | None = None
        self._ws: WSTransport | None = None
        self._raw: asyncio.Transport | None = None
        self._paused = False
        #: Parts of a fragmented message, and whether it is text.
        self._parts: list[bytes] | None = None
        self._parts_size = 0
        self._parts_text = False
        #: Keepalive: data seen since the last sweep, and whether a ping is unanswered.
        self.alive = True
        self._pinged = False
        self._close_timer: asyncio.TimerHandle | None = None

    # -- picows callbacks ------------------------------------------------------------------------

    def on_ws_connected(self, transport: WSTransport) -> None:
        self._ws = transport
        self._raw = transport.underlying_transport
        peer = self._raw.get_extra_info("peername")
        self._request.remote_addr = client_address(
            peer[0] if peer else "", self._request.header("X-Forwarded-For"), self._settings.trusted_proxies)
        self.session = Session(self._dispatcher.hub, self, self._request, self._route)
        self._dispatcher.opened(self.session)

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        self.alive = True
        kind = frame.msg_type
        stats = self._dispatcher.stats
        if kind is _TEXT or kind is _BINARY:
            if self._parts is not None:
                self._fail(1002, "new message before the fragmented one finished")
                return
            stats.bytes_in += frame.payload_size
            if not frame.fin:
                self._parts = [frame.get_payload_as_bytes()]
                self._parts_size = frame.payload_size
                self._parts_text = kind is _TEXT
                return
            if kind is _TEXT:
                try:
                    message: str | bytes = frame.get_payload_as_utf8_text()
                except UnicodeDecodeError:
                    self._fail(1007, "invalid UTF-8 in a text message")
                    return
            else:
                message = frame.get_payload_as_bytes()
            self._dispatcher.received(self.session, message)
        elif kind is _CONTINUATION:
            self._continue(frame)
        elif kind is _CLOSE:
            self._closed_by_peer(frame)

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        if self._close_timer is not None:
            self._close_timer.cancel()
        if self.session is not None:
            self._dispatcher.ended(self.session)

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False

    # -- session.Connection ----------------------------------------------------------------------

    def write(self, data: bytes) -> int:
        raw = self._raw
        if raw is None or raw.is_closing():
            return 0
        raw.write(data)
        self._dispatcher.stats.bytes_out += len(data)
        return raw.get_write_buffer_size() if self._paused else 0

    def close(self, code: int, reason: str) -> None:
        ws = self._ws
        if ws is None or ws.is_disconnected or ws.is_close_frame_sent:
            return
        ws.send_close(WSCloseCode(code), reason.encode()[:123])
        self._close_timer = asyncio.get_running_loop().call_later(
            self._settings.close_timeout, ws.disconnect, False)

    def pause_reading(self) -> None:
        if self._raw is not None:
            self._raw.pause_reading()

    def resume_reading(self) -> None:
        if self._raw is not None and not self._raw.is_closing():
            self._raw.resume_reading()

    def abort(self) -> None:
        if self._ws is not None:
            self._ws.disconnect(False)

    def keepalive(self) -> None:
        """Called once per ping interval: ping a silent peer, drop one that did not answer."""
        if self.alive:
            self.alive = False
            self._pinged = False
        elif self._pinged:
            log.info("session %s: no answer to ping, closing", self.session.id if self.session else "?")
            self.abort()
        elif self._ws is not None and not self._ws.is_disconnected:
            self._pinged = True
            self._ws.send_ping()

    # -- internals -------------------------------------------------------------------------------

    def _continue(self, frame: WSFrame) -> None:
        if self._parts is None:
            self._fail(1002, "continuation frame without a message to continue")
            return
        self._parts_size += frame.payload_size
        self._dispatcher.stats.bytes_in += frame.payload_size
        if self._parts_size > self._settings.max_message_size:
            self._fail(1009, f"message over {self._settings.max_message_size} bytes")
            return
        self._parts.append(frame.get_payload_as_bytes())
        if not frame.fin:
            return
        payload = b"".join(self._parts)
        self._parts = None
        if self._parts_text:
            try:
                message: str | bytes = payload.decode()
            except UnicodeDecodeError:
                self._fail(1007, "invalid UTF-8 in a text message")
                return
        else:
            message = payload
        self._dispatcher.received(self.session, message)

    def _closed_by_peer(self, frame: WSFrame) -> None:
        ws = self._ws
        assert ws is not None
        if self.session is not None:
            self.session.mark_closing()
        if not ws.is_close_frame_sent:
            code = frame.get_close_code()
            ws.send_close(WSCloseCode.OK if code == WSCloseCode.NO_INFO else code)
        ws.disconnect()

    def _fail(self, code: int, reason: str) -> None:
        """A protocol or limit violation: close with its code at once, without waiting for a reply."""
        log.info("session %s: closing with %d: %s", self.session.id if self.session else "?", code, reason)
        self._dispatcher.stats.protocol_closes += 1
        if self.session is not None:
            self.session.mark_closing()
            self.session.server_closed = True
        if self._ws is not None:
            self._ws.send_close(WSCloseCode(code), reason.encode())
            self._ws.disconnect()
