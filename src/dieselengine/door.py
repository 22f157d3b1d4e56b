"""The door: what happens to an upgrade between its request head and its 101.

In order: the connection limits (--max-connections 503, --max-connections-per-ip 429), the origin
(--allowed-origin, 403), the token (--jwt-*, 401), then the route's upgrade hook, which may
accept a subprotocol, set the session's first attributes or reject; an async hook holds the
connection (`Conn.hold`) until it settles or the handshake deadline passes (503). Each refusal
is counted by reason (/metrics) and written to the access log.

A server with none of these options, no access log and a route without a hook never enters this
module: its handshake costs what it did before (transport.py).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from functools import partial
from typing import TYPE_CHECKING, Any

from .handshake import refusal
from .logs import AccessLog
from .origins import OriginPolicy
from .session import Session
from .tokens import TokenError, TokenVerifier
from .upgrade import UpgradeRequest, with_protocol

if TYPE_CHECKING:
    from .dispatch import Dispatcher
    from .request import Request
    from .routing import Route
    from .settings import Settings
    from .wire._wire import Conn

log = logging.getLogger("dieselengine")


class Door:
    def __init__(self, settings: Settings, dispatcher: Dispatcher, access_log: AccessLog | None) -> None:
        """Raises ValueError (one line naming the option) for options that cannot be used."""
        self._dispatcher = dispatcher
        self._hub = dispatcher.hub
        self._stats = dispatcher.stats
        self._access_log = access_log
        self._origins = OriginPolicy(settings.allowed_origins) if settings.allowed_origins else None
        self._tokens = TokenVerifier.from_settings(settings)
        self._max_connections = settings.max_connections
        self._max_per_ip = settings.max_connections_per_ip
        self._counting = bool(self._max_connections or self._max_per_ip)
        #: Connections admitted (held for a hook, or open) in all, and per remote address.
        self._connections = 0
        self._per_ip: defaultdict[str, int] = defaultdict(int)
        #: Sessions to close with 1008 when their token expires.
        self._expiries: dict[Session, asyncio.TimerHandle] = {}
        #: Upgrade hooks still running (async), so shutdown can cancel them.
        self.pending: set[asyncio.Future[Any]] = set()
        #: Whether every upgrade must come through here (else only those of routes with a hook).
        self.guards = bool(self._origins or self._tokens or self._counting)
        if self.guards or access_log:
            self._hub.end_listeners.append(self._ended)
        if access_log:
            self._hub.open_listeners.append(access_log.opened)

    # -- before the hook -----------------------------------------------------------------------

    def admit(self, conn: Conn, request: Request, route: Route, answer: bytes) -> None:
        """An upgrade request the wire found valid, for a route: refuse it, open it, or hold it
        while the route's upgrade hook runs."""
        remote = request.remote_addr
        if self._counting:
            if self._max_connections and self._connections >= self._max_connections:
                self._refuse(conn, request, route, 503, "server at its connection limit", "max_connections")
                return
            if self._max_per_ip and self._per_ip.get(remote, 0) >= self._max_per_ip:
                self._refuse(conn, request, route, 429, "too many connections from this address",
                             "max_connections_per_ip")
                return
        if self._origins is not None:
            origin = request.header("origin")
            if origin is not None and not self._origins.allows(origin):
                self._refuse(conn, request, route, 403, "origin not allowed", "origin")
                return
        claims = None
        if self._tokens is not None:
            try:
                claims = self._tokens.verify(request)
            except TokenError as exc:
                self._refuse(conn, request, route, 401, str(exc), "token")
                return
        if self._counting:
            self._connections += 1
            self._per_ip[remote] += 1
        script = route.script
        if claims is None and not script.upgrades:  # the common case: no request object to make
            session = Session(self._hub, conn, request, route)
            if conn.accept(answer, session):
                self._opened(session, None)
            else:
                self._release(remote)
            return
        upgrade = UpgradeRequest(request)
        if claims is not None:
            upgrade.set_attribute("claims", claims)
        if not script.upgrades:
            self._open(conn, upgrade, route, answer)
            return
        try:
            pending = script.upgrade(upgrade)  # type: ignore[attr-defined]
        except Exception as exc:
            self._hook_failed(conn, upgrade, route, exc)
            return
        if pending is None:
            self._open(conn, upgrade, route, answer)
            return
        left = conn.hold()
        future = asyncio.ensure_future(pending)
        self.pending.add(future)
        timer = self._hub.loop.call_later(left, self._timed_out, conn, upgrade, route, future, left)
        future.add_done_callback(partial(self._settled, conn, upgrade, route, answer, timer))

    def _timed_out(self, conn: Conn, upgrade: UpgradeRequest, route: Route, future: asyncio.Future[Any],
                   seconds: float) -> None:
        """The handshake deadline passed with the hook still running: 503, and the hook is cancelled."""
        self.pending.discard(future)
        log.warning("%s: the upgrade hook did not settle within the handshake timeout (%.3g s were left of "
                    "--handshake-timeout); answered 503", route.script.name, seconds)
        self._refuse(conn, upgrade.request, route, 503, "upgrade timed out", "hook_timeout", counted=True)
        future.cancel()

    def _settled(self, conn: Conn, upgrade: UpgradeRequest, route: Route, answer: bytes, timer: asyncio.TimerHandle,
                 future: asyncio.Future[Any]) -> None:
        """An async upgrade hook finished, failed, or was cancelled (at shutdown, or past the deadline)."""
        if future not in self.pending:
            return  # answered 503 by _timed_out
        self.pending.discard(future)
        timer.cancel()
        if future.cancelled():
            self._refuse(conn, upgrade.request, route, 503, "shutting down", "shutdown", counted=True)
        elif (exc := future.exception()) is not None:
            self._hook_failed(conn, upgrade, route, exc)
        else:
            self._open(conn, upgrade, route, answer)

    def _hook_failed(self, conn: Conn, upgrade: UpgradeRequest, route: Route, exc: BaseException) -> None:
        script = route.script
        self._stats.handler_errors += 1
        log.error("%s: uncaught error in the upgrade handler (from %s)\n%s", script.name,
                  upgrade.request.remote_addr, script.describe_error(exc))
        self._refuse(conn, upgrade.request, route, 500, "upgrade handler error", "hook_error", counted=True)

    def invalid(self, path: str, remote: str, status: int, reason: str) -> None:
        """The wire refused a request for a route as an upgrade (426, 400, 405): counted and logged."""
        self._stats.refusals["invalid_upgrade"] += 1
        if self._access_log is not None:
            self._access_log.refused(path, remote, status, reason)

    # -- answering ------------------------------------------------------------------------------

    def _refuse(self, conn: Conn, request: Request, route: Route, status: int, reason: str, kind: str,
                counted: bool = False) -> None:
        """An HTTP error instead of the 101; `counted`: it had been admitted to the limits."""
        if counted:
            self._release(request.remote_addr)
        self._stats.refusals[kind] += 1
        conn.respond(refusal(status, reason))
        if self._access_log is not None:
            self._access_log.refused(route.path, request.remote_addr, status, reason)

    def _open(self, conn: Conn, upgrade: UpgradeRequest, route: Route, answer: bytes) -> None:
        if upgrade.rejection is not None:
            status, reason = upgrade.rejection
            self._refuse(conn, upgrade.request, route, status, reason, "rejected", counted=True)
            return
        if upgrade.protocol is not None:
            answer = with_protocol(answer, upgrade.protocol)
        session = Session(self._hub, conn, upgrade.request, route)
        session.attributes = upgrade.attributes
        session.runtime_state = upgrade.runtime_state
        if not conn.accept(answer, session):  # the client left while the hook ran
            self._release(upgrade.request.remote_addr)
            route.script.release(session)
            return
        self._opened(session, upgrade.attributes.get("claims") if self._tokens and upgrade.attributes else None)

    def _opened(self, session: Session, claims: Any) -> None:
        """The 101 went out: the session's on_open, its token's expiry."""
        self._dispatcher.opened(session)
        if isinstance(claims, dict) and isinstance(claims.get("exp"), (int, float)):
            loop = self._hub.loop
            delay = max(0.0, claims["exp"] - time.time())
            self._expiries[session] = loop.call_at(loop.time() + delay, self._expired, session)

    # -- after the session ----------------------------------------------------------------------

    def _expired(self, session: Session) -> None:
        self._expiries.pop(session, None)
        if session.is_open():
            self._stats.limit_closes["token_expired"] += 1
            session.close(1008, "token expired")

    def _ended(self, session: Session) -> None:
        """The session's on_close returned (Hub.end_listeners)."""
        if self._counting:
            self._release(session.request.remote_addr)
        timer = self._expiries.pop(session, None)
        if timer is not None:
            timer.cancel()
        if self._access_log is not None:
            self._access_log.ended(session)

    def _release(self, remote: str) -> None:
        if not self._counting:
            return
        self._connections -= 1
        left = self._per_ip[remote] - 1
        if left > 0:
            self._per_ip[remote] = left
        else:
            del self._per_ip[remote]
