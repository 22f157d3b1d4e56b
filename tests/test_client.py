"""dieselengine's client (/_diesel/client.js) from Node: served by every server, JSON helpers,
exponential backoff with jitter, a send queue while reconnecting, no reconnect after a close the
server meant. (The browser side: test_browser_chat.py.)"""

from __future__ import annotations

import json
import shutil
import subprocess

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
        probe = subprocess.run([node, "--experimental-websocket", "--no-warnings", "-e",
                                "process.exit(typeof WebSocket === 'function' ? 0 : 1)"], capture_output=True)
        if probe.returncode != 0:
            pytest.skip("this node has no WebSocket (Node 22, or 20 with --experimental-websocket)")
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


def test_client_declarations_type_check(tmp_path):
    """client.d.ts types a page's use of the client under TypeScript's strict checks."""
    from test_js_npm import npm_install

    folder = tmp_path / "ts"
    npm_install(folder, {"typescript": "5.7.2"})
    shutil.copy(CLIENT.with_name("client.d.ts"), folder / "client.d.ts")
    (folder / "page.ts").write_text('''import { connect, type CloseInfo } from "./client.js";
const chat = connect("/ws/chat?user=ann", { minDelay: 250, jitter: 0.3, shouldReconnect: (code) => code !== 4001 });
const off = chat.on("json", (message) => console.log(message.type));
chat.on("close", (info: CloseInfo) => console.log(info.reconnecting, info.delay));
chat.on("message", (data) => typeof data === "string" ? data.length : 0);
const queued: boolean = chat.send("hi") && chat.sendJSON({ a: 1 });
const state: "connecting" | "open" | "reconnecting" | "closed" = chat.state;
off();
chat.close(1000, "bye");
chat.on("nonsense", () => 0);
''')
    result = subprocess.run([str(folder / "node_modules" / ".bin" / "tsc"), "--noEmit", "--strict", "--lib", "es2023,dom",
                             "--target", "es2022", "--module", "es2022", "--moduleResolution", "bundler", "page.ts"],
                            cwd=folder, capture_output=True, text=True, timeout=120)
    # the deliberate mistake on the last line is the only error
    assert result.stdout.count("error TS") == 1, result.stdout
    assert "page.ts(10,9)" in result.stdout, result.stdout
