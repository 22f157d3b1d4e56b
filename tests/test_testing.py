"""dieselengine.testing: scripts run in process with the real runtimes and hub, no sockets."""

from __future__ import annotations

import pytest
from conftest import write_scripts

from dieselengine.runtime import ScriptError
from dieselengine.testing import ClientClosed, Harness

REQUEST_JS = """
export function onOpen(session) {
  session.send(JSON.stringify({
    user: session.getParameter("user"), token: session.getHeader("authorization"),
    path: session.getRequestPath(), addr: session.getRemoteAddr(),
  }));
}
export function onMessage(session, message) {
  if (message instanceof Uint8Array) session.send(message.reverse());
  else if (message === "kick") session.close(4001, "kicked");
  else if (message === "boom") throw new Error("boom");
  else session.send("echo:" + message);
}
"""

TIMERS_JS = """
let ticks = 0;
export function onOpen(session) {
  setTimeout(() => session.send("after 5 s"), 5000);
  const every = setInterval(() => {
    ticks += 1;
    session.send("tick " + ticks);
    if (ticks === 3) clearInterval(every);
  }, 1000);
}
"""

ASYNC_PY = """
import asyncio

async def on_message(session, message):
    await asyncio.sleep(10)
    session.send("slept on " + message)
"""


@pytest.mark.parametrize("name", ["request.js", "request.py"])
def test_parameters_headers_binary_close_and_errors(tmp_path, name):
    scripts = {"request.js": REQUEST_JS, "request.py": """
        import json

        def on_open(session):
            session.send(json.dumps({"user": session.get_parameter("user"), "token": session.get_header("Authorization"),
                                     "path": session.get_request_path(), "addr": session.get_remote_addr()}))

        def on_message(session, message):
            if isinstance(message, bytes):
                session.send(message[::-1])
            elif message == "kick":
                session.close(4001, "kicked")
            elif message == "boom":
                raise RuntimeError("boom")
            else:
                session.send("echo:" + message)
        """}
    app_dir = write_scripts(tmp_path, {name: scripts[name]})
    with Harness(app_dir / name) as app:
        client = app.connect("/ws/request?user=ann", headers={"Authorization": "Bearer t"}, remote_addr="203.0.113.7")
        assert client.receive_json() == {"user": "ann", "token": "Bearer t", "path": "/ws/request",
                                         "addr": "203.0.113.7"}
        client.send(b"\x01\x02\x03")
        assert client.receive() == b"\x03\x02\x01"
        client.send("boom")
        assert any("boom" in line for line in app.logs)  # logged with its stack; the session goes on
        client.send("hi")
        assert client.received() == ["echo:hi"]
        client.send("kick")
        assert (client.close_code, client.close_reason) == (4001, "kicked")
        with pytest.raises(ClientClosed):
            client.send("too late")
        # what a wire would count for the access log and the inspector: 4 messages (13 payload bytes)
        # in; out, the request's JSON, the reversed bytes and the echo (the close is no message)
        messages_in, bytes_in, messages_out, _, _, code, closed_by = client.connection.summary()
        assert (messages_in, bytes_in, messages_out, code, closed_by) == (4, 13, 3, 4001, "server")


def test_timers_fire_when_the_clock_is_advanced(tmp_path):
    app_dir = write_scripts(tmp_path, {"timers.js": TIMERS_JS, "slow.py": ASYNC_PY})
    with Harness(app_dir) as app:
        client = app.connect("/ws/timers")
        assert client.received() == []
        app.advance(2.5)
        assert client.received() == ["tick 1", "tick 2"]
        app.advance(10)
        assert client.received() == ["tick 3", "after 5 s"]
        assert app.time == 12.5

        slow = app.connect("/ws/slow")
        slow.send("one")
        slow.send("two")  # waits for the first (async) call: calls for one session never overlap
        app.advance(9.9)
        assert slow.received() == []
        app.advance(0.1)
        assert slow.received() == ["slept on one"]
        app.advance(10)
        assert slow.received() == ["slept on two"]


def test_rooms_limits_and_load_errors(tmp_path):
    app_dir = write_scripts(tmp_path, {"room.py": """
        def on_open(session):
            session.room(session.get_parameter("room")).join()
        """})
    with Harness(app_dir, max_message_size=10) as app:
        a = app.connect("/ws/room?room=x")
        app.connect("/ws/room?room=x")
        app.connect("/ws/room?room=y")
        assert app.rooms() == {"x": 2, "y": 1}
        a.send("x" * 11)
        assert a.close_code == 1009
        assert app.members("x") == 1
        with pytest.raises(LookupError, match="no route /ws/nope"):
            app.connect("/ws/nope")
    write_scripts(tmp_path / "bad", {"bad.js": "export function onOpen(s) {\n  s.send(\n}\n"})
    with pytest.raises(ScriptError, match=r"bad.js:3:\d+: SyntaxError"):
        Harness(tmp_path / "bad")
