"""The watchdog: a call into a script's engine that holds the event loop past a hard deadline.

The CPU-time limit (cpu_limit.py) is enforced by the engine's interrupt handler, which the engine
calls as it runs bytecode, regular expressions and most built-ins; the prelude makes the built-ins
known to loop in C without calling it interruptible, or refuses them past a size. A native loop
that slips past both holds the server's event loop: every route, /healthz and the API wait. Such
a call cannot be stopped from outside (a context must only be entered from its own thread, and a
runtime abandoned in the middle of a call cannot be freed safely), and running every call on a
thread of its script's own costs a thread handoff per call (15 us measured, ten times a relay
call), so the watchdog does what can be done at no cost per call. A thread of its own, it wakes
ten times a second and, once a call has held the loop for the hard deadline of CPU time
(--script-timeout plus a second), reports it with the script's name; when the call returns, the
script is replaced by a fresh runtime (`on_wedged`: Router.replace), its sessions closed with 1011.

Which script: the loop thread's Python frames name it for calls made from Python; a message the
C wire hands to an engine itself has no Python frame, so the watchdog compares what each script
had been entered by the last heartbeat with what it has now.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from . import cpu_limit

if TYPE_CHECKING:
    from .script import JsScript

log = logging.getLogger("dieselengine")

#: How often the loop beats and the watchdog looks, in seconds.
INTERVAL = 0.1


def _scripts() -> list[JsScript]:
    return [script for ref in list(cpu_limit._watched.values()) if (script := ref()) is not None]


class Watchdog:
    """Started on the loop thread; `stop` ends its thread."""

    def __init__(self, loop: asyncio.AbstractEventLoop, deadline: float,
                 on_wedged: Callable[[JsScript], None]) -> None:
        self._loop = loop
        self._deadline = deadline
        self._on_wedged = on_wedged
        self._thread_id = threading.get_ident()
        self._clock = time.pthread_getcpuclockid(self._thread_id)
        self._beats = 0
        #: The loop thread's CPU time at the last beat, and each script's entries then.
        self._beat_cpu = time.thread_time()
        self._entries: dict[int, int] = {}
        self._stop = threading.Event()
        self._timer: asyncio.TimerHandle | None = None
        self._thread = threading.Thread(target=self._watch, name="dieselengine-watchdog", daemon=True)

    def start(self) -> None:
        self._beat()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._timer is not None:
            self._timer.cancel()

    def _beat(self) -> None:
        """On the loop thread, every INTERVAL while it is free."""
        self._beat_cpu = time.thread_time()
        self._entries = {id(script): script._entry.entries for script in _scripts()}
        self._beats += 1
        self._timer = self._loop.call_later(INTERVAL, self._beat)

    def _watch(self) -> None:
        reported = -1
        while not self._stop.wait(INTERVAL):
            beats = self._beats
            held = time.clock_gettime(self._clock) - self._beat_cpu
            if held < self._deadline or reported == beats or self._beats != beats:
                continue
            reported = beats
            script, suspects = self._culprit()
            if script is None:
                log.error("watchdog: the event loop has been held for %.1f s of CPU time by a call the engine "
                          "does not interrupt, in one of: %s; every route waits until it returns",
                          held, ", ".join(sorted(s.name for s in suspects)) or "(no JavaScript call found)")
                continue
            log.error("watchdog: %s: a call has held the event loop for %.1f s of CPU time, past its %g s "
                      "(--script-timeout): native work the engine does not interrupt; every route waits until "
                      "it returns, and the script will then be replaced by a fresh runtime", script.name, held,
                      script._timeout)
            self._loop.call_soon_threadsafe(self._on_wedged, script)

    def _culprit(self) -> tuple[JsScript | None, list[JsScript]]:
        """The script the loop thread is in, from its frames or else from the entries counted."""
        from .script import JsScript

        frame = sys._current_frames().get(self._thread_id)
        while frame is not None:
            candidate = frame.f_locals.get("self")
            if isinstance(candidate, JsScript):
                return candidate, [candidate]
            frame = frame.f_back
        entered = [s for s in _scripts() if s._entry.entries != self._entries.get(id(s), s._entry.entries)]
        return (entered[0] if len(entered) == 1 else None), entered
