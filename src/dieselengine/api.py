"""The HTTP API under `/api/`, for the application's own backend: broadcast to a room, count and
list rooms, close a session, anywhere in the cluster (Pusher's REST API, Centrifugo's server API).

Off unless `--api-key` is given; then every request needs `Authorization: Bearer <key>` (401
without it, 403 with another key; compared in constant time). Answers are JSON, errors
`{"error": "..."}`; one request per connection, like every plain HTTP answer of the server.

Routes (room names and session ids are percent-decoded path segments, UTF-8):

    POST /api/rooms/{name}/broadcast   body = the message; 202 {"room": name, "members": N}
    GET  /api/rooms                    200 {"rooms": [{"name": ..., "members": N}, ...]}
    GET  /api/rooms/{name}             200 {"name": ..., "members": N}
    POST /api/sessions/{id}/close      body = optional {"code": 4000, "reason": "..."}; 202, 404

A body needs a Content-Length of at most `--max-message-size` (411 for a chunked one, 413 past
it), and the bodies being read at once at most MAX_BODIES_BYTES together (503 past it). The wire
reads a body (`Conn.read_body`) and stops reading at its end. Answers linger (`respond(...,
True)`): what the client still sends is read and dropped until it closes, so a 413 reaches a
client still sending its body. What the API needs of a connection is `read_body`, `write` and
`respond`, so any wire that has them can serve it.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import re
import weakref
from collections import Counter
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import unquote_to_bytes

from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from .handshake import http_response, parse_headers

if TYPE_CHECKING:
    from .hub import Hub
    from .settings import Settings

log = logging.getLogger("dieselengine.api")

PREFIX = "/api/"
#: Request bodies the API may be reading at once, in bytes (at least 4 of --max-message-size):
#: each connection is bounded by --max-message-size, this bounds them together.
MAX_BODIES_BYTES = 64 << 20
#: A close reason must fit a close frame's 125 bytes with its 2-byte code.
MAX_REASON_BYTES = 123

#: Route name (the `route` label in /metrics), path pattern, the one method it takes.
_ROUTES: tuple[tuple[str, re.Pattern[str], bytes], ...] = (
    ("/api/rooms", re.compile(r"/api/rooms"), b"GET"),
    ("/api/rooms/{name}", re.compile(r"/api/rooms/([^/]*)"), b"GET"),
    ("/api/rooms/{name}/broadcast", re.compile(r"/api/rooms/([^/]*)/broadcast"), b"POST"),
    ("/api/sessions/{id}/close", re.compile(r"/api/sessions/([^/]*)/close"), b"POST"),
)


class Connection(Protocol):
    """What the API needs of a plain HTTP connection (either wire's connection)."""

    def write(self, data: bytes) -> int: ...

    def respond(self, response: bytes, linger: bool = False) -> None: ...

    def read_body(self, size: int, on_body: Callable[[bytes], None]) -> None: ...


class ApiError(Exception):
    """An answer other than success: its status, message and extra header lines."""

    def __init__(self, status: int, message: str, extra: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.extra = extra


class Api:
    """Answers `/api/` requests for one node; its counts go to /metrics (`collector`)."""

    def __init__(self, settings: Settings, hub: Hub, api_key: str) -> None:
        self._hub = hub
        self._key = api_key.encode()
        self._max_body = settings.max_message_size
        self._valid_close_code = hub.wire.valid_close_code
        #: (route, status) -> requests answered.
        self.answered: Counter[tuple[str, int]] = Counter()
        self._closing: set[asyncio.Task[None]] = set()
        #: Bytes of request bodies being read now, and the most there may be (per process).
        self._bodies = 0
        self._max_bodies = max(MAX_BODIES_BYTES, 4 * settings.max_message_size)

    def handle(self, conn: Connection, method: bytes, path: str, raw_headers: bytes) -> None:
        """One request head under /api/: answer it now, or after its body (and the cluster)."""
        route, match, allowed = _match(path)
        try:
            headers = parse_headers(raw_headers)
            self._authorize(headers.get("authorization"))
            if match is None:
                raise ApiError(404, "no such API endpoint")
            if method != allowed:
                raise ApiError(405, f"{route} takes {allowed.decode()}", f"Allow: {allowed.decode()}\r\n")
            target = _segment(match.group(1)) if match.groups() else ""
            if route == "/api/rooms":
                self._answer(conn, route, 200, {"rooms": self._rooms()})
            elif route == "/api/rooms/{name}":
                self._answer(conn, route, 200, {"name": target, "members": self._hub.members(target)})
            else:
                size = self._body_size(headers)
                if route == "/api/sessions/{id}/close":
                    self._read_body(conn, headers, size, lambda body: self._close(conn, route, target, body))
                else:
                    content_type = headers.get("content-type", "")
                    self._read_body(conn, headers, size,
                                    lambda body: self._broadcast(conn, route, target, content_type, body))
        except ApiError as error:
            self._error(conn, route, error)

    def _read_body(self, conn: Connection, headers: dict[str, str], size: int, then: Callable[[bytes], None]) -> None:
        """Have the wire read the body, within the process's budget for bodies being read."""
        if self._bodies + size > self._max_bodies:
            raise ApiError(503, "too many request bodies being read at once; retry", "Retry-After: 1\r\n")
        if headers.get("expect", "").lower() == "100-continue":
            conn.write(b"HTTP/1.1 100 Continue\r\n\r\n")

        def on_body(body: bytes) -> None:
            then(body)

        self._bodies += size
        # Given back when the wire drops the callback: after calling it, or with a lost connection.
        weakref.finalize(on_body, self._body_done, size)
        conn.read_body(size, on_body)

    def _body_done(self, size: int) -> None:
        self._bodies -= size

    # -- the endpoints ---------------------------------------------------------------------------

    def _rooms(self) -> list[dict[str, object]]:
        return [{"name": name, "members": count} for name, count in sorted(self._hub.room_counts().items())]

    def _broadcast(self, conn: Connection, route: str, room: str, content_type: str, body: bytes) -> None:
        message: str | bytes = body
        if _is_text(content_type):
            try:
                message = body.decode("utf-8")
            except UnicodeDecodeError:
                self._error(conn, route, ApiError(400, "a text body must be UTF-8"))
                return
        self._hub.broadcast(room, message, None)
        self._answer(conn, route, 202, {"room": room, "members": self._hub.members(room)})

    def _close(self, conn: Connection, route: str, session_id: str, body: bytes) -> None:
        try:
            code, reason = _close_request(body, self._valid_close_code)
        except ApiError as error:
            self._error(conn, route, error)
            return
        if self._hub.close_session(session_id, code, reason):
            self._answer(conn, route, 202, {"session": session_id})
        elif self._hub.bus is None:
            self._error(conn, route, ApiError(404, "no such session"))
        else:
            task = asyncio.ensure_future(self._close_remote(conn, route, session_id, code, reason))
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)

    async def _close_remote(self, conn: Connection, route: str, session_id: str, code: int, reason: str) -> None:
        assert self._hub.bus is not None
        try:
            found = await self._hub.bus.close_session(session_id, code, reason)
        except ConnectionError:
            self._error(conn, route, ApiError(503, "the cluster is unreachable: cannot ask the other nodes"))
        except (TimeoutError, asyncio.TimeoutError):
            self._error(conn, route, ApiError(504, "not every node of the cluster answered in time"))
        except Exception:
            log.exception("api: asking the cluster to close session %s failed", session_id)
            self._error(conn, route, ApiError(500, "internal error"))
        else:
            if found:
                self._answer(conn, route, 202, {"session": session_id})
            else:
                self._error(conn, route, ApiError(404, "no such session"))

    # -- the request -----------------------------------------------------------------------------

    def _authorize(self, authorization: str | None) -> None:
        scheme, _, token = (authorization or "").strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise ApiError(401, "an API key is required: Authorization: Bearer <key>",
                           'WWW-Authenticate: Bearer realm="dieselengine"\r\n')
        if not hmac.compare_digest(token.strip().encode("latin-1"), self._key):
            raise ApiError(403, "wrong API key")

    def _body_size(self, headers: dict[str, str]) -> int:
        if "transfer-encoding" in headers:
            raise ApiError(411, "send the body with a Content-Length (chunked bodies are not accepted)")
        length = headers.get("content-length")
        if length is None:
            return 0
        if not length.isdigit() or not length.isascii():
            raise ApiError(400, "invalid Content-Length")
        size = int(length)
        if size > self._max_body:
            raise ApiError(413, f"body over {self._max_body} bytes (--max-message-size)")
        return size

    # -- answers ---------------------------------------------------------------------------------

    def _answer(self, conn: Connection, route: str, status: int, document: dict[str, Any]) -> None:
        self.answered[route, status] += 1
        try:
            body = json.dumps(document, ensure_ascii=False).encode() + b"\n"
        except UnicodeEncodeError:  # a JavaScript room name with a lone surrogate: as a \u escape
            body = json.dumps(document).encode() + b"\n"
        conn.respond(http_response(status, body, "application/json"), True)

    def _error(self, conn: Connection, route: str, error: ApiError) -> None:
        self.answered[route, error.status] += 1
        body = json.dumps({"error": str(error)}).encode() + b"\n"
        # Lingering: a body the answer left unread must not turn the close into a reset.
        conn.respond(http_response(error.status, body, "application/json", extra=error.extra), True)

    def collector(self) -> Collector:
        return _ApiCollector(self)


class _ApiCollector(Collector):
    def __init__(self, api: Api) -> None:
        self._api = api

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily("diesel_api_requests", "HTTP API requests answered, by route and status.",
                                     labels=["route", "status"])
        for (route, status), count in sorted(self._api.answered.items()):
            family.add_metric([route, str(status)], count)
        yield family


def _match(path: str) -> tuple[str, re.Match[str] | None, bytes]:
    """The route a path names ("other" if none), its match and its method."""
    for route, pattern, method in _ROUTES:
        match = pattern.fullmatch(path)
        if match is not None:
            return route, match, method
    return "other", None, b""


def _segment(raw: str) -> str:
    """A percent-decoded path segment; the wire hands the path as latin-1 text of its bytes. An
    encoded surrogate is let through, as the cluster bus lets it through: a JavaScript room name
    may hold a lone one, and every name a script can use must be reachable."""
    try:
        return unquote_to_bytes(raw.encode("latin-1")).decode("utf-8", "surrogatepass")
    except UnicodeDecodeError:
        raise ApiError(400, "a room name or session id must be UTF-8 once percent-decoded") from None


def _is_text(content_type: str) -> bool:
    """`text/*` and JSON (`application/json`, `application/*+json`) are text frames."""
    media = content_type.partition(";")[0].strip().lower()
    return media.startswith("text/") or media == "application/json" or media.endswith("+json")


def _close_request(body: bytes, valid_close_code: Callable[[int], bool]) -> tuple[int, str]:
    """The close code and reason of a close request body (empty: 1000 with no reason)."""
    if not body.strip():
        return 1000, ""
    try:
        document = json.loads(body)
    except ValueError:
        raise ApiError(400, 'the body must be JSON: {"code": 4000, "reason": "..."}') from None
    if not isinstance(document, dict):
        raise ApiError(400, 'the body must be a JSON object: {"code": 4000, "reason": "..."}')
    code = document.get("code", 1000)
    reason = document.get("reason", "")
    if type(code) is not int or not valid_close_code(code):
        raise ApiError(400, "code must be 1000-1003, 1007-1014 or 3000-4999")
    if not isinstance(reason, str):
        raise ApiError(400, "reason must be a string")
    try:
        size = len(reason.encode("utf-8"))
    except UnicodeEncodeError:
        raise ApiError(400, "reason must be valid Unicode") from None
    if size > MAX_REASON_BYTES:
        raise ApiError(400, f"reason over {MAX_REASON_BYTES} bytes in UTF-8")
    return code, reason
