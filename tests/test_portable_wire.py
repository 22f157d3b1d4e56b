"""The portable wire where uvloop is not there (Windows; any platform without its wheel): the
server falls back to asyncio's own selector loop and serves the same protocol."""

from __future__ import annotations

import asyncio

import websockets
from conftest import write_scripts
from rawws import RawClient

APP = '''
import asyncio

def on_open(session):
    session.room("lobby").join()
    session.send(type(asyncio.get_running_loop()).__module__)

def on_message(session, message):
    session.room("lobby").broadcast(message)
'''


def test_serves_on_asyncio_without_uvloop(serve, tmp_path, monkeypatch):
    # uvloop made unimportable in the server process, as where it has no wheel
    blocker = write_scripts(tmp_path / "no_uvloop", {"sitecustomize.py": "import sys\nsys.modules['uvloop'] = None\n"})
    monkeypatch.setenv("PYTHONPATH", str(blocker))
    server = serve(write_scripts(tmp_path / "app", {"lobby.py": APP}), "--wire", "asyncio",
                   "--max-message-size", "1K")
    server.wait_log(r"\(wire: asyncio\)")

    async def main():
        async with websockets.connect(server.url("/ws/lobby")) as alice, \
                websockets.connect(server.url("/ws/lobby")) as bob:
            assert await alice.recv() == "asyncio.unix_events"  # asyncio's loop, not uvloop's
            assert await bob.recv() == "asyncio.unix_events"
            await alice.send("héllo")
            assert await bob.recv() == "héllo" and await alice.recv() == "héllo"
            await bob.send(b"\x00\x01")
            assert await alice.recv() == b"\x00\x01"
    asyncio.run(asyncio.wait_for(main(), 30))

    client = RawClient(server.port, "/ws/lobby")
    client.read_frame()  # the loop's name
    client.send_frame(0x2, b"x" * 2000)
    assert client.read_until_close()[0] == 1009
    client.close()
    assert server.http("/healthz")[0] == 200
