"""Handler dispatch: one session's hooks run one at a time, in order, and `on_close` exactly once.

Order per session: `open`, each `message` in arrival order, then `close`. A hook that returns an
awaitable (an async handler) makes the session busy; messages arriving meanwhile wait in its
inbox and run when it finishes. Reading from the client pauses while the inbox holds
`inbox_size` messages or `max_message_size` bytes, so a slow async handler bounds its memory. An
async hook still running after `handler_timeout` is cancelled: an error for its session, so a hook
that never settles cannot hold its session (and its inbox) forever.
"""

from __future__ import annotations

import asyncio
import logging
import traceback
from collections import deque
from collections.abc import Awaitable
from functools import partial
from time import perf_counter

from .hub import Hub
from .runtime import Hook, Script
from .session import Message, Session

log = logging.getLogger("dieselengine")


class Dispatcher:
    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.stats = hub.stats
        self._inbox_size = hub.settings.inbox_size
        self._inbox_bytes = hub.settings.max_message_size
        self._timeout = hub.settings.handler_timeout
        #: Hooks still running (async), so shutdown can wait for them.
        self.pending: set[asyncio.Future[object]] = set()

    def opened(self, session: Session) -> None:
        self.hub.add(session)
        self._call(session, "open", None)

    def received(self, session: Session, message: Message) -> None:
        """A message from the wire, which counts it and times this call. The hottest path: the
        hook is called here rather than through `_call`."""
        if session.busy or session.server_closed:
            self._wait(session, message)
            return
        self.stats.hook_calls += 1
        script = session.route.script
        try:
            result = script.call("message", session, message)
        except Exception as exc:
            self._failed(session, script, "message", exc)
            return
        if result is not None:
            self._awaiting(session, script, "message", result)

    def finished(self, session: Session, message: Message, result: object, failed: bool) -> None:
        """A message the wire handed to the script's engine itself (the wire's `Entry`): the rest of a
        result other than nothing or an echo, or the error the call raised."""
        script = session.route.script
        try:
            awaitable = script.finish(session, message, result, failed)  # type: ignore[attr-defined]
        except Exception as exc:
            self._failed(session, script, "message", exc)
            return
        if awaitable is not None:
            self._awaiting(session, script, "message", awaitable)

    def _wait(self, session: Session, message: Message) -> None:
        """Into the inbox while an async hook runs; dropped once the server closed the session."""
        if session.server_closed:
            return
        inbox = session.inbox
        if inbox is None:
            inbox = session.inbox = deque()
        inbox.append(message)
        session.inbox_bytes += len(message)
        if not session.reading_paused and self._inbox_full(session):
            session.reading_paused = True
            session.conn.pause_reading()

    def ended(self, session: Session) -> None:
        """The connection is over, however it ended. `on_close` runs as soon as no hook is running."""
        if session.ended:
            return
        session.ended = True
        session.mark_closing()
        if not session.busy:
            self._close(session)

    def _call(self, session: Session, hook: Hook, message: Message | None) -> None:
        script = session.route.script
        started = perf_counter()
        try:
            result = script.call(hook, session, message)
        except Exception as exc:
            result = None
            self._failed(session, script, hook, exc)
        stats = self.stats
        stats.hook_calls += 1
        stats.hook_seconds += perf_counter() - started
        if result is not None:
            self._awaiting(session, script, hook, result)

    def _awaiting(self, session: Session, script: Script, hook: Hook, result: Awaitable[object]) -> None:
        """An async hook: the session is busy until it settles, or until `handler_timeout`."""
        session.busy = True
        future = asyncio.ensure_future(result)
        self.pending.add(future)
        timer = self.hub.loop.call_later(self._timeout, self._timed_out, session, script, hook, future)
        future.add_done_callback(partial(self._resumed, session, script, hook, timer))

    def _timed_out(self, session: Session, script: Script, hook: Hook, future: asyncio.Future[object]) -> None:
        """Logged with where the hook was waiting, then cancelled; its session goes on as after an
        error (an `on_open` closes it with 1011)."""
        frames = future.get_stack() if isinstance(future, asyncio.Task) else []  # a JS promise has none here
        where = "".join(traceback.format_list(traceback.StackSummary.extract((f, f.f_lineno) for f in frames)))
        self.stats.handler_errors += 1
        log.error("%s: the %s handler did not finish within %g s (session %s); cancelled%s", script.name, hook,
                  self._timeout, session.id, f". It was waiting at:\n{where.rstrip()}" if where else "")
        future.cancel()
        if hook == "open":
            session.close(1011, "handler timeout")

    def _resumed(self, session: Session, script: Script, hook: Hook, timer: asyncio.TimerHandle,
                 future: asyncio.Future[object]) -> None:
        timer.cancel()
        self.pending.discard(future)
        session.busy = False
        if not future.cancelled() and (exc := future.exception()) is not None:
            self._failed(session, script, hook, exc)
        if hook == "close":
            self._finish(session)
            return
        self._drain(session)

    def _drain(self, session: Session) -> None:
        inbox = session.inbox
        while inbox and not session.busy:
            message = inbox.popleft()
            session.inbox_bytes -= len(message)
            if session.reading_paused and not self._inbox_full(session):
                session.reading_paused = False
                session.conn.resume_reading()
            if not session.server_closed:
                self._call(session, "message", message)
        if session.ended and not session.busy:
            self._close(session)

    def _inbox_full(self, session: Session) -> bool:
        assert session.inbox is not None
        return len(session.inbox) >= self._inbox_size or session.inbox_bytes >= self._inbox_bytes

    def _close(self, session: Session) -> None:
        if session.close_ran:
            return
        session.close_ran = True
        self._call(session, "close", None)
        if not session.busy:
            self._finish(session)

    def _finish(self, session: Session) -> None:
        """`on_close` returned: the session leaves its rooms (it was a member during `on_close`)."""
        self.hub.remove(session)
        session.route.script.release(session)

    def _failed(self, session: Session, script: Script, hook: Hook, exc: BaseException) -> None:
        self.stats.handler_errors += 1
        log.error("%s: uncaught error in the %s handler (session %s)\n%s",
                  script.name, hook, session.id, script.describe_error(exc))
        if hook == "open":
            session.close(1011, "handler error")
