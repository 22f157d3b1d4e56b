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
