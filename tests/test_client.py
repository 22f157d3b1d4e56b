"""dieselengine's client (/_diesel/client.js) from Node: served by every server, JSON helpers,
exponential backoff with jitter, a send queue while reconnecting, no reconnect after a close the
server meant. (The browser side: test_browser_chat.py.)"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import ROOT, write_scripts

CLIENT = ROOT / "src" / "dieselengine" / "client" / "client.js"
APP = {
    "echo.py": "def on_message(session, message):\n    session.send(message)\n",
    "kick.py": "def on_message(session, message):\n    session.close(4000, 'kicked')\n",
}


def test_every_server_serves_the_client_and_its_types(serve, tmp_path):
    server = serve(write_scripts(tmp_path, APP))
    status, body = server.http("/_diesel/client.js")
    assert status == 200 and body == CLIENT.read_text()
    status, body = server.http("/_diesel/client.d.ts")
    assert status == 200 and "export declare function connect" in body


class Driver:
    def __init__(self, url: str) -> None:
        node = shutil.which("node")
        if node is None:
            pytest.skip("node is not installed")
        self.proc = subprocess.Popen([node, "--experimental-websocket", "--no-warnings", str(ROOT / "tests" / "client_driver.mjs"),
                                      CLIENT.as_uri(), url], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.pending: list[dict] = []

    def command(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def next(self, event: str) -> dict:
        """The next event of this kind (events of other kinds wait for their own `next`)."""
        assert self.proc.stdout is not None
        for index, record in enumerate(self.pending):
            if record["event"] == event:
                return self.pending.pop(index)
        for line in self.proc.stdout:
            record = json.loads(line)
            if record["event"] == event:
                return record
            self.pending.append(record)
        raise AssertionError(f"node exited before {event!r}")

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()


def test_client_reconnects_with_backoff_and_sends_what_was_queued(serve, tmp_path):
    app = write_scripts(tmp_path, APP)
    server = serve(app)
    client = Driver(server.url("/ws/echo"))
    try:
        assert client.next("open")["state"] == "open"
        client.command('json {"hello": [1, 2]}')
        assert client.next("sent")["ok"]
        assert client.next("json")["value"] == {"hello": [1, 2]}
        assert client.next("message")["data"] == '{"hello":[1,2]}'
        client.command("send not json")
        assert client.next("sent") == {"event": "sent", "ok": True, "state": "open", "queued": 0}
        assert client.next("message")["data"] == "not json"

        assert server.stop() == 0, server.log()
        first = client.next("close")
        assert first["code"] == 1001 and first["reconnecting"] and first["state"] == "reconnecting"
        client.command("send queued one")
        client.command("send queued two")
        assert client.next("sent") == {"event": "sent", "ok": True, "state": "reconnecting", "queued": 1}
        assert client.next("sent") == {"event": "sent", "ok": True, "state": "reconnecting", "queued": 2}
        # attempt k waits between half and all of min(800, 100 * 2**k) ms: exponential, with jitter
        delays = [first["delay"]] + [client.next("close")["delay"] for _ in range(4)]
        for attempt, delay in enumerate(delays):
            ceiling = min(800, 100 * 2 ** attempt)
            assert ceiling / 2 <= delay <= ceiling, delays

        serve(app, port=server.port)
        assert client.next("open")["state"] == "open"
        assert client.next("message")["data"] == "queued one"   # in order, once open
        assert client.next("message")["data"] == "queued two"
    finally:
        client.stop()


def test_client_does_not_reconnect_after_a_close_the_server_meant(serve, tmp_path):
    server = serve(write_scripts(tmp_path, APP))
    client = Driver(server.url("/ws/kick"))
    try:
        client.next("open")
        client.command("send bye")
        assert client.next("sent")["ok"]
        closed = client.next("close")
        assert closed["code"] == 4000 and closed["reason"] == "kicked"
        assert not closed["reconnecting"] and closed["state"] == "closed"
        client.command("send too late")
        assert client.next("sent")["ok"] is False
    finally:
        client.stop()
