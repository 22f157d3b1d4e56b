"""`server.room(name)` and `server.rooms()` in scripts: from module code, timers and threads, to
members of any route, through real sockets."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

from conftest import RunningServer, write_scripts
from websockets.sync.client import ClientConnection, connect

#: A Python route whose module starts a thread at import: it broadcasts to "ticks" through
#: `server.room` (text, then binary) and answers "rooms" from the thread, all off the loop.
PY_TICKER = """
    import json
    import queue
    import threading

    from dieselengine import server

    asks = queue.Queue()

    def worker():
        n = 0
        while True:
            session = asks.get()
            n += 1
            ticks = server.room("ticks")
            ticks.broadcast(f"py-thread {n}")
            ticks.broadcast(bytes([n]))
            session.send(json.dumps({"rooms": server.rooms(), "members": ticks.members(),
                                     "name": ticks.get_name()}))

    threading.Thread(target=worker, daemon=True).start()
    server.room("ticks").broadcast("at import: nobody hears this")  # no members yet: a no-op

    def on_open(session):
        session.room(session.get_parameter("room") or "ticks").join()

    def on_message(session, message):
        if message == "thread":
            asks.put(session)
        elif message == "loop":
            session.send(json.dumps({"rooms": server.rooms(), "members": server.room("ticks").members()}))
        elif message == "empty":
            server.room("nobody").broadcast("lost")
            session.send(json.dumps({"members": server.room("nobody").members()}))
"""


def client(server: RunningServer, route: str, room: str = "ticks") -> ClientConnection:
    return connect(server.url(f"{route}?room={quote(room)}"), open_timeout=10).__enter__()


def test_python_thread_broadcasts_and_lists_rooms(serve: Callable[..., RunningServer], tmp_path: Path) -> None:
    server = serve(write_scripts(tmp_path / "app", {"ticker.py": PY_TICKER}))
    first = client(server, "/ws/ticker")
    second = client(server, "/ws/ticker")
    other = client(server, "/ws/ticker", "other room")
    with first, second, other:
        first.send("loop")  # a round trip: every join above is done
        assert json.loads(first.recv(10)) == {
            "rooms": [{"name": "other room", "members": 1}, {"name": "ticks", "members": 2}], "members": 2}
        first.send("thread")
        assert first.recv(10) == second.recv(10) == "py-thread 1"
        assert first.recv(10) == second.recv(10) == b"\x01"
        assert json.loads(first.recv(10)) == {
            "rooms": [{"name": "other room", "members": 1}, {"name": "ticks", "members": 2}],
            "members": 2, "name": "ticks"}
        first.send("empty")
        assert json.loads(first.recv(10)) == {"members": 0}
        other.send("loop")
        assert json.loads(other.recv(10))["members"] == 2  # its first message: no tick reached another room


#: A JavaScript route whose module starts an interval at load; its members and those of a Python
#: route in the same room hear it. A handler uses `server` too, with a binary message.
JS_TICKER = """
    let n = 0;
    server.room("ticks").broadcast("at load: nobody hears this");
    setInterval(() => {
      n += 1;
      const ticks = server.room("ticks");
      ticks.broadcast(`js-tick ${n} of ${ticks.getName()} to ${ticks.members()}`);
    }, 50);

    export function onOpen(session) {
      session.room("ticks").join();
    }

    export function onMessage(session, message) {
      server.room("ticks").broadcast(new Uint8Array([7, 8]));
      server.room("nobody").broadcast("lost");
      session.send(JSON.stringify({
        members: server.room("ticks").members(), nobody: server.room("nobody").members(),
        pyOnly: server.room("py only").members(),
        listing: typeof server.rooms, name: server.room(42).getName(), tag: String(server),
      }));
    }
"""

PY_MEMBER = """
    def on_open(session):
        session.room("ticks").join()
        session.room("py only").join()  # a room the JavaScript script never named before
"""


def test_javascript_interval_broadcasts_to_javascript_and_python_members(
        serve: Callable[..., RunningServer], tmp_path: Path) -> None:
    server = serve(write_scripts(tmp_path / "app", {"ticker.js": JS_TICKER, "member.py": PY_MEMBER}))
    js = client(server, "/ws/ticker")
    py = client(server, "/ws/member")
    with js, py:
        # Ticks keep coming; once both joined, each tick reaches both routes and counts both.
        for ws in (js, py):
            tick = ws.recv(10)
            while tick.endswith(" to 1"):
                tick = ws.recv(10)
            assert tick.startswith("js-tick ") and tick.endswith(" of ticks to 2"), tick
        js.send("go")
        message = js.recv(10)
        while isinstance(message, str) and message.startswith("js-tick "):
            message = js.recv(10)
        assert message == b"\x07\x08"
        reply = js.recv(10)
        while reply.startswith("js-tick "):
            reply = js.recv(10)
        assert json.loads(reply) == {"members": 2, "nobody": 0, "pyOnly": 1, "listing": "undefined", "name": "42",
                                     "tag": "[object Server]"}
        message = py.recv(10)
        while isinstance(message, str) and message.startswith("js-tick "):
            message = py.recv(10)
        assert message == b"\x07\x08"
