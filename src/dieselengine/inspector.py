"""The inspector: a page at /_diesel/inspect showing what the server is doing, live.

Off unless `--inspect TOKEN` or `--api-key KEY` is given; its data and actions need that token
(`Authorization: Bearer ...`; the page asks for it, or takes it from `#token=...`). It shows the
rooms with their counts (cluster-wide), this node's sessions (id, route, remote address, rooms,
attributes, age, messages and bytes each way), message and byte rates (the totals /metrics
exports), and the recent handler errors; it closes a session and broadcasts to a room through the
HTTP API (api.py), mounted under /_diesel/inspect/api/ with the inspector's token, so both act
anywhere in the cluster.

    GET  /_diesel/inspect              the page (no data in it; no token needed)
    GET  /_diesel/inspect/state        JSON: node, totals, rooms, sessions, errors
    *    /_diesel/inspect/api/...      the HTTP API's routes (POST .../rooms/{name}/broadcast, ...)
"""

from __future__ import annotations

import hmac
import json
import logging
import os
import time
import weakref
from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .api import Api
from .handshake import http_response, parse_headers

if TYPE_CHECKING:
    from .hub import Hub
    from .routing import Router
    from .session import Session
    from .settings import Settings

PREFIX = "/_diesel/inspect"
#: Sessions listed at most (the newest first); the count of all is in the totals.
MAX_SESSIONS = 500
#: Handler errors kept for the page.
MAX_ERRORS = 50
_PAGE = http_response(200, (Path(__file__).parent / "client" / "inspect.html").read_bytes(),
                      "text/html; charset=utf-8", "Cache-Control: no-cache\r\n")


class Inspector:
    """Answers /_diesel/inspect requests for one node."""

    def __init__(self, settings: Settings, hub: Hub, router: Router) -> None:
        self._hub = hub
        self._router = router
        self._started = time.monotonic()
        tokens = [token for token in (settings.inspect, settings.api_key) if token]
        #: One API per accepted token (the API checks its own key).
        self._apis = {token.encode(): Api(settings, hub, token) for token in tokens}
        self._opened: weakref.WeakKeyDictionary[Session, float] = weakref.WeakKeyDictionary()
        hub.open_listeners.append(self._note_open)
        self.errors: deque[dict[str, Any]] = deque(maxlen=MAX_ERRORS)
        self._recorder = _ErrorRecorder(self.errors)
        logging.getLogger("dieselengine").addHandler(self._recorder)

    def close(self) -> None:
        logging.getLogger("dieselengine").removeHandler(self._recorder)

    def _note_open(self, session: Session) -> None:
        self._opened[session] = time.monotonic()

    def handle(self, conn: Any, method: bytes, path: str, raw_headers: bytes) -> None:
        if path in (PREFIX, PREFIX + "/"):
            conn.respond(_PAGE if method in (b"GET", b"HEAD") else _error(405, "the page takes GET"))
            return
        token = _bearer(parse_headers(raw_headers).get("authorization"))
        api = next((api for key, api in self._apis.items() if hmac.compare_digest(token, key)), None)
        if path.startswith(PREFIX + "/api/"):
            # The API authorizes the request itself (401 or 403, with its own messages).
            (api or next(iter(self._apis.values()))).handle(conn, method, path[len(PREFIX):], raw_headers)
            return
        if not token:
            conn.respond(_error(401, "the inspector needs its token: Authorization: Bearer <token>"), True)
        elif api is None:
            conn.respond(_error(403, "wrong token"), True)
        elif path != PREFIX + "/state":
            conn.respond(_error(404, "no such inspector endpoint"), True)
        elif method != b"GET":
            conn.respond(_error(405, "state takes GET"), True)
        else:
            body = json.dumps(self.state(), ensure_ascii=False, default=repr).encode()
            conn.respond(http_response(200, body, "application/json", "Cache-Control: no-store\r\n"), True)

    def state(self) -> dict[str, Any]:
        """What the page shows, read from the hub, the stats /metrics exports and the error log."""
        hub, stats, now = self._hub, self._hub.stats, time.monotonic()
        sessions = sorted(hub.sessions.values(), key=lambda s: -self._opened.get(s, self._started))
        return {
            "node": {"pid": os.getpid(), "uptime": round(now - self._started, 1),
                     "routes": sorted(route.path for route in self._router), "cluster": hub.bus is not None},
            "totals": {
                "sessions": len(hub.sessions), "sessions_opened": stats.sessions_opened,
                "messages_in": stats.messages_in, "bytes_in": stats.bytes_in,
                "frames_out": stats.frames_out, "bytes_out": stats.bytes_out,
                "handler_calls": stats.handler_calls, "handler_errors": stats.handler_errors,
            },
            "rooms": [{"name": name, "members": count} for name, count in sorted(hub.room_counts().items())],
            "sessions": [self._session(session, now) for session in sessions[:MAX_SESSIONS]],
            "errors": list(self.errors),
        }

    def _session(self, session: Session, now: float) -> dict[str, Any]:
        # The wire's own counters, as the access log's close line writes them: payload bytes in,
        # everything written out (the 101 included); a broadcast counts once per recipient.
        messages_in, bytes_in, messages_out, bytes_out = session.conn.summary()[:4]
        return {
            "id": session.id,
            "route": session.route.path,
            "remote_addr": session.request.remote_addr,
            "rooms": sorted(room.name for room in session.rooms),
            "attributes": session.route.script.attributes(session),
            "age": round(now - self._opened.get(session, self._started), 1),
            "messages_in": messages_in, "bytes_in": bytes_in, "messages_out": messages_out, "bytes_out": bytes_out,
        }


class _ErrorRecorder(logging.Handler):
    """Keeps the server's recent errors (handler errors with their script's stack) for the page."""

    def __init__(self, errors: deque[dict[str, Any]]) -> None:
        super().__init__(logging.ERROR)
        self._errors = errors

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = record.getMessage()
        except Exception:  # a record that cannot be formatted is the logging module's to report
            return
        self._errors.append({"time": record.created, "logger": record.name, "text": text})


def _bearer(authorization: str | None) -> bytes:
    scheme, _, token = (authorization or "").strip().partition(" ")
    return token.strip().encode("latin-1", "replace") if scheme.lower() == "bearer" else b""


def _error(status: int, message: str) -> bytes:
    return http_response(status, json.dumps({"error": message}).encode() + b"\n", "application/json")
