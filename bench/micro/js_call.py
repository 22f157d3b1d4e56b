"""Cost per JavaScript handler call, in-process: `JsScript.call` as the dispatcher makes it.

Measures the seed's chat `onMessage` (getAttribute, JSON.stringify, Date.now, one broadcastExcept)
and a relay `onMessage` (`session.room("chat").broadcastExcept(message)`), each including its host
call (the broadcast queued in the hub's outbox) and the script time limit, on a hub whose sessions
write to fake connections. The outbox is flushed every BATCH calls, outside the timed part.

    python bench/micro/js_call.py [--calls 20000] [--repeat 25] [--thread]

`--thread` measures a design issue 13 weighed for native work the engine does not interrupt: each
script's engine on a thread of its own, every call handed to it and waited for (a context must be
used from the thread that made it, so the thread loads the script too).

Prints the best of `--repeat` runs in microseconds per call (the machine is shared: the minimum
is the figure least disturbed by other processes).
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import textwrap
import threading
import time
from collections.abc import Callable
from typing import Any
from pathlib import Path

from null_connection import NullConnection

from dieselengine import wire
from dieselengine.hub import Hub
from dieselengine.js import JsScript
from dieselengine.request import Request
from dieselengine.routing import Route
from dieselengine.session import Session
from dieselengine.settings import Settings
from dieselengine.stats import Stats

SCRIPTS = {
    "chat.js": Path(__file__).resolve().parents[2].joinpath("examples", "chat.js").read_text(),
    "relay.js": """
        export function onMessage(session, message) { session.room("chat").broadcastExcept(message); }
    """,
    "echo.js": """
        export function onMessage(session, message) { session.send(message); }
    """,
    # The seed's onMessage without its host call: what JSON.stringify and friends cost in the engine.
    "stringify.js": """
        export function onMessage(session, message) {
          const username = session.getAttribute("username");
          JSON.stringify({ type: "message", from: username, text: message, timestamp: Date.now() });
        }
    """,
    "noop.js": """
        export function onMessage(session, message) {}
    """,
}
BATCH = 100
MEMBERS = 3


class OnThread:
    """Runs functions on a thread of its own, one at a time, the caller waiting for each."""

    def __init__(self) -> None:
        self._ask, self._done = threading.Lock(), threading.Lock()
        self._ask.acquire()
        self._done.acquire()
        self._job: tuple[Callable[..., Any], tuple[Any, ...]] | None = None
        self._result: Any = None
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            self._ask.acquire()
            function, args = self._job  # type: ignore[misc]
            self._result = function(*args)
            self._done.release()

    def run(self, function: Callable[..., Any], *args: Any) -> Any:
        self._job = (function, args)
        self._ask.release()
        self._done.acquire()
        return self._result


def _setup(folder: Path, name: str, hub: Hub) -> tuple[JsScript, Session]:
    script = JsScript.load(folder / name, name, hub)
    route = Route(f"/ws/{name}", folder / name, name, script)
    sessions = []
    for i in range(MEMBERS):
        session = Session(hub, NullConnection(), Request(route.path, f"user=u{i}", b"", "127.0.0.1"), route)
        hub.add(session)
        script.call("open", session, None)
        hub.join(session, "chat")  # chat.js joins itself; the others need a room to broadcast to
        sessions.append(session)
    return script, sessions[0]


async def measure(folder: Path, calls: int, repeat: int, on_thread: bool) -> dict[str, float]:
    """Best µs per call of each script; the scripts take turns, so each meets the same noise."""
    loop = asyncio.get_running_loop()
    hub = Hub(Settings(path=folder), loop, Stats(), wire.load())
    runs = {}
    for name in SCRIPTS:
        if on_thread:
            thread = OnThread()
            script, sender = thread.run(_setup, folder, name, hub)
            script.call = lambda hook, session, message, call=script.call, run=thread.run: run(  # type: ignore[method-assign]
                call, hook, session, message)
            runs[name] = (script, sender)
        else:
            runs[name] = _setup(folder, name, hub)
    hub.outbox.flush()
    message = "x" * 64
    flush = hub.outbox.flush
    best = {name: float("inf") for name in SCRIPTS}
    for _ in range(repeat):
        for name, (script, sender) in runs.items():
            call = script.call
            spent = 0.0
            for _ in range(calls // BATCH):
                started = time.perf_counter()
                for _ in range(BATCH):
                    call("message", sender, message)
                spent += time.perf_counter() - started
                flush()
            best[name] = min(best[name], spent / (calls // BATCH * BATCH) * 1e6)
    for script, _ in runs.values():
        script.unload()
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=20000)
    parser.add_argument("--repeat", type=int, default=25)
    parser.add_argument("--thread", action="store_true", help="each script's engine on a thread of its own")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for name, source in SCRIPTS.items():
            (folder / name).write_text(textwrap.dedent(source))
        for name, us in asyncio.run(measure(folder, args.calls, args.repeat, args.thread)).items():
            print(f"{name:10s} onMessage  {us:6.2f} us/call")


if __name__ == "__main__":
    main()
