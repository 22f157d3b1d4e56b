"""The server's log lines: text or one JSON object per line (--log-format), and the access log.

The access log writes a line per session open and end and per refused upgrade. At tens of
thousands of handshakes a second a `logging` record per line (about 10 us: a LogRecord, a
formatter, a locked write and flush each) would cost more than the handshake itself, so its lines
are formatted directly and written in one batch per event-loop tick, with one timestamp per batch;
an open's line is made only then, so a handshake pays for an append (bench/RESULTS.md has what
it costs).
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import time
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from .session import Session

ACCESS_LOGGER = "dieselengine.access"
_TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def iso_time(created: float) -> str:
    """UTC with milliseconds: 2026-12-02T23:59:59.123Z."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created)) + f".{int(created % 1 * 1000):03d}Z"


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message (a stack trace inside it)."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if record.exc_info:
            message += "\n" + self.formatException(record.exc_info)
        entry = {"time": iso_time(record.created), "level": record.levelname.lower(), "logger": record.name,
                 "message": message}
        return json.dumps(entry, ensure_ascii=False)


def configure_logging(level: str, log_format: str = "text") -> None:
    """One record per line on stderr, written at once (in text, a stack trace follows its line)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else logging.Formatter(_TEXT_FORMAT))
    logging.basicConfig(level=level.upper(), handlers=[handler])


class AccessLog:
    """Lines for session opens and ends and refused upgrades, batched per event-loop tick.

    An open costs the handshake only an append: its line is formatted when the tick's lines are
    written, and every line of a tick carries the time of that write (a tick is well under a
    millisecond, the lines' precision), so the time is read and formatted once per tick."""

    def __init__(self, loop: asyncio.AbstractEventLoop, json_lines: bool, stream: TextIO | None = None) -> None:
        self._loop = loop
        self._json = json_lines
        self._stream = stream or sys.stderr
        #: This tick's lines: a session that opened, or the text of a line after its time.
        self._pending: list[Session | str] = []
        self._second = -1
        self._prefix = ""
        #: Each route's path as it appears in a line (quoted once for JSON).
        self._routes: dict[str, str] = {}

    def _stamp(self) -> str:
        """The line's time as `logging` writes it in text (local, comma before milliseconds), or
        ISO 8601 UTC in JSON; the part up to the second is formatted once per second."""
        now = time.time()
        second = int(now)
        if second != self._second:
            self._second = second
            self._prefix = (time.strftime("%Y-%m-%dT%H:%M:%S.", time.gmtime(second)) if self._json
                            else time.strftime("%Y-%m-%d %H:%M:%S,", time.localtime(second)))
        millis = f"{int((now - second) * 1000):03d}"
        return f"{self._prefix}{millis}Z" if self._json else f"{self._prefix}{millis}"

    def _route(self, path: str) -> str:
        shown = self._routes.get(path)
        if shown is None:
            shown = self._routes[path] = json.dumps(path) if self._json else path
        return shown

    def _add(self, line: Session | str) -> None:
        pending = self._pending
        if not pending:
            self._loop.call_soon(self.flush)
        pending.append(line)

    #: A session opened (Hub.open_listeners): its line is made when the tick's lines are written.
    opened = _add

    def ended(self, session: Session) -> None:
        """After the session's on_close: its close code (1006 when no close frame was exchanged),
        who closed, how long it was open, and its traffic."""
        messages_in, bytes_in, messages_out, bytes_out, seconds, code, closer = session.conn.summary()
        route = self._route(session.route.path)
        remote = session.request.remote_addr
        code = code or 1006
        if self._json:
            by = f'"{closer}"' if closer else "null"
            self._add(f'"event": "close", "session": "{session.id}", "route": {route}, "remote": "{remote}", '
                      f'"code": {code}, "closed_by": {by}, "seconds": {seconds:.3f}, "messages_in": {messages_in}, '
                      f'"bytes_in": {bytes_in}, "messages_out": {messages_out}, "bytes_out": {bytes_out}}}\n')
        else:
            self._add(f"close session={session.id} route={route} remote={remote} code={code} "
                      f"closed_by={closer or 'nobody'} seconds={seconds:.3f} messages_in={messages_in} "
                      f"bytes_in={bytes_in} messages_out={messages_out} bytes_out={bytes_out}\n")

    def refused(self, path: str, remote: str, status: int, reason: str) -> None:
        if self._json:
            entry: dict[str, Any] = {"event": "refuse", "route": path, "remote": remote, "status": status,
                                     "reason": reason}
            self._add(json.dumps(entry, ensure_ascii=False)[1:] + "\n")
        else:
            self._add(f"refuse route={path} remote={remote} status={status} "
                      f"reason={json.dumps(reason, ensure_ascii=False)}\n")

    def flush(self) -> None:
        if not self._pending:
            return
        pending, self._pending = self._pending, []
        stamp = self._stamp()
        head = (f'{{"time": "{stamp}", "level": "info", "logger": "{ACCESS_LOGGER}", ' if self._json
                else f"{stamp} INFO {ACCESS_LOGGER}: ")
        # One join of the tick's pieces (an f-string per line joined again was twice the copying).
        parts: list[str] = []
        routes = self._routes
        json_lines = self._json
        for item in pending:
            if type(item) is str:
                parts += (head, item)
                continue
            session: Session = item  # type: ignore[assignment]  # a session that opened
            path = session.route.path
            route = routes.get(path) or self._route(path)
            if json_lines:
                parts += (head, '"event": "open", "session": "', session.id, '", "route": ', route,
                          ', "remote": "', session.request.remote_addr, '"}\n')
            else:
                parts += (head, "open session=", session.id, " route=", route, " remote=",
                          session.request.remote_addr, "\n")
        try:
            self._stream.write("".join(parts))
            self._stream.flush()
        except (OSError, ValueError):
            pass  # stderr closed or full: the server goes on without its access log
