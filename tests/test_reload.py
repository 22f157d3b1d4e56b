"""`--reload` follows the folder: new scripts become routes, deleted ones stop being routes, and a
changed helper reloads only the scripts that import it (JavaScript and Python)."""

from __future__ import annotations

import asyncio
import time

import pytest
import websockets
from conftest import write_scripts

COUNTER_JS = """
let opened = 0;   // module state: starts again from 0 if the script is reloaded
export function onOpen(session) { opened += 1; session.send("opened " + opened); }
"""
USES_HELPER_JS = """
import { greeting } from "./_greet.js";
export function onOpen(session) { session.send(greeting); }
"""
USES_HELPER_PY = """
from _greet_py import GREETING

def on_open(session):
    session.send(GREETING)
"""


async def first_message(server, path: str) -> str:
    async with websockets.connect(server.url(path)) as ws:
        return await asyncio.wait_for(ws.recv(), 10)


def eventually(check, timeout: float = 20.0):
    """Poll until `check()` returns a truthy value (the watcher polls the folder twice a second)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = check()
            if value:
                return value
        except (OSError, websockets.InvalidStatus, AssertionError):
            pass
        if time.monotonic() > deadline:
            raise AssertionError("never happened")
        time.sleep(0.1)


def test_new_and_deleted_scripts_add_and_remove_routes(serve, tmp_path):
    app = write_scripts(tmp_path / "app", {"counter.js": COUNTER_JS})
    server = serve(app, "--reload")
    assert server.http("/ws/fresh")[0] == 404

    write_scripts(app, {"fresh.py": "def on_open(session):\n    session.send('fresh')\n"})
    server.wait_log(r"added /ws/fresh \(fresh\.py\)")
    assert asyncio.run(first_message(server, "/ws/fresh")) == "fresh"

    async def held_open_while_deleted():
        async with websockets.connect(server.url("/ws/fresh")) as ws:
            assert await ws.recv() == "fresh"
            (app / "fresh.py").unlink()
            with pytest.raises(websockets.ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 20)
            return ws.close_code, ws.close_reason

    assert asyncio.run(held_open_while_deleted()) == (1001, "script removed")
    server.wait_log(r"removed /ws/fresh: fresh\.py no longer exists")
    with pytest.raises(websockets.InvalidStatus):
        asyncio.run(first_message(server, "/ws/fresh"))

    write_scripts(app, {"broken.js": "export function onOpen(s) {\n  s.send(\n}\n"})
    server.wait_log(r"new script broken\.js failed to load, not serving /ws/broken")
    assert asyncio.run(first_message(server, "/ws/counter")) == "opened 1"
    assert server.proc.poll() is None


def test_a_helper_change_reloads_only_its_importers(serve, tmp_path):
    app = write_scripts(tmp_path / "app", {
        "counter.js": COUNTER_JS, "uses.js": USES_HELPER_JS, "_greet.js": 'export const greeting = "hello v1";\n',
        "uses_py.py": USES_HELPER_PY, "_greet_py.py": 'GREETING = "py v1"\n',
    })
    server = serve(app, "--reload")
    assert asyncio.run(first_message(server, "/ws/counter")) == "opened 1"
    assert asyncio.run(first_message(server, "/ws/uses")) == "hello v1"
    assert asyncio.run(first_message(server, "/ws/uses_py")) == "py v1"

    write_scripts(app, {"_greet.js": 'export const greeting = "hello v2";\n'})
    eventually(lambda: asyncio.run(first_message(server, "/ws/uses")) == "hello v2")
    write_scripts(app, {"_greet_py.py": 'GREETING = "py v2"\n'})
    eventually(lambda: asyncio.run(first_message(server, "/ws/uses_py")) == "py v2")
    # counter.js imports neither helper: it was not reloaded, so its module state went on
    assert asyncio.run(first_message(server, "/ws/counter")) == "opened 2"
    log = server.log()
    assert "reloaded uses.js" in log and "reloaded uses_py.py" in log and "reloaded counter.js" not in log
