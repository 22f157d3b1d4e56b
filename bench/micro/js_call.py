"""Cost per JavaScript handler call, in-process: `JsScript.call` as the dispatcher makes it.

Measures the seed's chat `onMessage` (getAttribute, JSON.stringify, Date.now, one broadcastExcept)
and a relay `onMessage` (`session.room("chat").broadcastExcept(message)`), each including its host
call (the broadcast queued in the hub's outbox) and the script time limit, on a hub whose sessions
write to fake connections. The outbox is flushed every BATCH calls, outside the timed part.

    python bench/micro/js_call.py [--calls 200000] [--repeat 7]

Prints the best of `--repeat` runs in microseconds per call (the machine is shared: the minimum
is the figure least disturbed by other processes).
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import textwrap
import time
from pathlib import Path

from dieselengine.hub import Hub
from dieselengine.js_runtime import JsScript
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
    "noop.js": """
        export function onMessage(session, message) {}
    """,
}
BATCH = 100
MEMBERS = 3


class NullConnection:
    def write(self, data: bytes) -> int:
        return 0

    def close(self, code: int, reason: str) -> None:
        pass

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


async def measure(folder: Path, name: str, calls: int, repeat: int) -> float:
    loop = asyncio.get_running_loop()
    hub = Hub(Settings(path=folder), loop, Stats())
    script = JsScript.load(folder / name, name, hub)
    route = Route("/ws/x", folder / name, name, script)
    sessions = []
    for i in range(MEMBERS):
        session = Session(hub, NullConnection(), Request("/ws/x", f"user=u{i}", {}, "127.0.0.1"), route)
        hub.add(session)
        script.call("open", session, None)
        hub.join(session, "chat")  # chat.js joins itself; the others need a room to broadcast to
        sessions.append(session)
    hub.outbox.flush()
    sender = sessions[0]
    message = "x" * 64
    call = script.call
    flush = hub.outbox.flush
    best = float("inf")
    for _ in range(repeat):
        spent = 0.0
        for _ in range(calls // BATCH):
            started = time.perf_counter()
            for _ in range(BATCH):
                call("message", sender, message)
            spent += time.perf_counter() - started
            flush()
        best = min(best, spent / (calls // BATCH * BATCH))
    script.unload()
    return best * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=100000)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for name, source in SCRIPTS.items():
            (folder / name).write_text(textwrap.dedent(source))
        for name in SCRIPTS:
            us = asyncio.run(measure(folder, name, args.calls, args.repeat))
            print(f"{name:10s} onMessage  {us:6.2f} us/call")


if __name__ == "__main__":
    main()
