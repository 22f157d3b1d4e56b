"""The WebSocket transport: sockets and frames in the wire (`wire/`), the handshake's routing here.

The wire (in C, or the portable one in Python) accepts, reads the request head, parses and unmasks frames, checks the limits and UTF-8,
answers pings and close frames, and writes with backpressure. Python is entered once per request
head (`_handshake`: routing, the 101, the session) and once per message (the dispatcher), or not
at all when a script engine gave the wire its entry and the message only needs an echo. Measured
beside uvloop's transport with a Python frame parser (bench/RESULTS.md), that is the difference
between 1.4-1.9 us and a fraction of a microsecond per message.
"""

from __future__ import annotations

import logging
import socket
from typing import TYPE_CHECKING

from .handshake import MAX_HEAD_SIZE, refusal, without_body
from .request import Request, client_address
from .routing import Route
from .session import Session

if TYPE_CHECKING:
    from .dispatch import Dispatcher
    from .door import Door
    from .endpoints import Endpoints
    from .settings import Settings
    from .wire import WireKind
    from .wire._wire import Conn

log = logging.getLogger("dieselengine")


def listen_socket(host: str, port: int, reuse_port: bool = False) -> socket.socket:
    """A non-blocking listening socket; with `reuse_port`, sibling workers can bind the same port."""
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                         flags=socket.AI_PASSIVE)[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
        sock.listen(4096)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


class Transport:
    """Serves WebSocket sessions (and plain HTTP answers) on one listening socket."""

    def __init__(self, sock: socket.socket, dispatcher: Dispatcher, endpoints: Endpoints, settings: Settings,
                 kind: WireKind, door: Door) -> None:
        self._sock = sock
        self._dispatcher = dispatcher
        self._endpoints = endpoints
        self._settings = settings
        self._door = door
        self._guarded = door.guards
        self._loop = dispatcher.hub.loop
        rate = settings.message_rate
        self.wire = kind.open(sock, self._handshake, dispatcher.received, dispatcher.finished, dispatcher.ended,
                              self._failed, dispatcher.hub.outbox, self._loop, log, settings.max_message_size,
                              MAX_HEAD_SIZE, settings.handshake_timeout, settings.close_timeout,
                              compression=settings.compression != "off",
                              message_rate=rate.per_second if rate else 0.0,
                              message_burst=rate.burst if rate else 0.0,
                              send_queue_size=settings.send_queue_size, max_buffered=settings.max_buffered)
        if settings.compression != "off" and not kind.compresses:
            log.warning("--compression %s: this build of the C wire has no zlib (its headers were missing at "
                        "install); permessage-deflate is declined", settings.compression)
        if settings.certfile is not None:
            try:
                self.load_tls()
            except ValueError as exc:
                from .startup import StartupError  # startup imports this module

                raise StartupError(f"--certfile/--keyfile: {exc}") from None
        dispatcher.stats.wire = self.wire

    @property
    def tls(self) -> bool:
        return self._settings.certfile is not None

    def load_tls(self) -> None:
        """(Re)load --certfile and --keyfile: new connections are served with them, connections
        already open keep the certificate they were made with. ValueError (one line, OpenSSL's
        reason) when the files cannot be used."""
        self.wire.load_tls(str(self._settings.certfile), str(self._settings.keyfile))

    def address(self) -> tuple[str, int]:
        return self._sock.getsockname()[:2]

    def stop_accepting(self) -> None:
        self.wire.stop_accepting()
        self._sock.close()

    def _handshake(self, conn: Conn, method: bytes | None, path: str, query: str, raw_headers: bytes, peer: str,
                   answer: bytes | tuple[int, str]) -> None:
        """A request head arrived, parsed by the wire with its answer as an upgrade (the 101, or
        the status that refuses it; no method when the head itself is refused): upgrade it to a
        session, or answer it over HTTP and close."""
        if method is not None:
            endpoints = self._endpoints
            found = endpoints.routes.get(path) if endpoints.serving else None
            if found is None:
                found = endpoints.resolve(method, path)
                if isinstance(found, bytes):
                    conn.respond(without_body(found) if method == b"HEAD" else found)
                    return
                if not isinstance(found, Route):  # the API or the inspector: it answers the request itself
                    found.handle(conn, method, path, raw_headers)
                    return
            if type(answer) is bytes:
                request = Request(path, query, raw_headers, peer)
                trusted = self._settings.trusted_proxies
                if trusted:
                    request.remote_addr = client_address(peer, request.header("x-forwarded-for"), trusted)
                if self._guarded or found.script.upgrades:
                    self._door.admit(conn, request, found, answer)
                    return
                session = Session(self._dispatcher.hub, conn, request, found)
                conn.accept(answer, session)
                self._dispatcher.opened(session)
                return
        assert isinstance(answer, tuple)
        response = refusal(*answer)
        conn.respond(without_body(response) if method == b"HEAD" else response)
        if method is not None:
            self._door.invalid(path, peer, *answer)

    def _failed(self, session: Session | None, code: int, reason: str) -> None:
        """A protocol or limit violation, or a client whose queue the wire's own frames (pongs)
        filled (1008 "send queue full"); the wire sends the close frame. Frames queued for the
        session before the violation go out first."""
        stats = self._dispatcher.stats
        if reason == "send queue full":
            stats.slow_consumer_closes += 1
            log.warning("session %s is not reading: send queue over %d bytes, closing with 1008",
                        session.id if session else "?", self._settings.send_queue_size)
        else:
            log.info("session %s: closing with %d: %s", session.id if session else "?", code, reason)
            stats.protocol_closes += 1
            if reason == "message rate exceeded":
                stats.limit_closes["message_rate"] += 1
            if session is not None and session.direct is not None:
                self._dispatcher.hub.outbox.flush()
        if session is not None:
            session.mark_closing(by_server=True)

