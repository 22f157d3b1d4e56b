"""Hostile scripts (issue 13): a script that attacks the server hurts only itself.

Every attack runs beside an innocent JavaScript route, a Python route and `/healthz`, which must
keep answering while it runs: a new connection's reply within 2 s, `/healthz` within 3 s (bounds
generous enough for a shared machine; a stalled event loop misses them by far).
"""

from __future__ import annotations

import asyncio
import re

import pytest
import websockets
from conftest import write_scripts

INNOCENT = r'''
export function onOpen(session) { session.room("innocent").join(); }
export function onMessage(session, message) {
  session.send("js " + message + " " + session.room("innocent").members());
}
'''

PYTHON = r'''
def on_message(session, message):
    session.send("py " + message)
'''


def app(tmp_path, hostile: str, **more: str):
    return write_scripts(tmp_path / "app", {"innocent.js": INNOCENT, "py.py": PYTHON, "hostile.js": hostile, **more})


async def _healthz(port: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        head = await reader.readline()
        assert head.split()[1] in (b"200", b"503"), head
    finally:
        writer.close()


async def _round_trip(url: str, expected: str) -> None:
    async with websockets.connect(url, open_timeout=None, close_timeout=1) as ws:
        await ws.send("ping")
        reply = await ws.recv()
        assert reply.startswith(expected), reply


async def bystanders(server, seconds: float, until: asyncio.Future | None = None) -> int:
    """Probe the innocent routes for `seconds` (and until `until` is done); returns the rounds made."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    rounds = 0
    while loop.time() < deadline or (until is not None and not until.done()):
        for what, probe, limit in (
                ("the innocent JS route", _round_trip(server.url("/ws/innocent"), "js ping"), 2.0),
                ("the Python route", _round_trip(server.url("/ws/py"), "py ping"), 2.0),
                ("/healthz", _healthz(server.port), 3.0)):
            try:
                await asyncio.wait_for(probe, limit)
            except asyncio.TimeoutError:
                raise AssertionError(f"{what} did not answer within {limit} s during the attack "
                                     f"(round {rounds})\n{server.log()[-3000:]}") from None
        rounds += 1
        await asyncio.sleep(0.05)
    assert rounds >= 2
    return rounds


async def attack(server, messages: list[str], seconds: float = 2.0, path: str = "/ws/hostile") -> None:
    """Send each message from a hostile session, probing bystanders while each one runs."""
    async with websockets.connect(server.url(path), open_timeout=None, close_timeout=1) as bad:
        for message in messages:
            await bad.send(message)
            await bystanders(server, seconds)


def run(main, timeout: float = 120) -> None:
    asyncio.run(asyncio.wait_for(main(), timeout))


# ---- item 5: rooms cost O(1) per join and leave, and a session's count is capped ------------------

ROOMS_PY = r'''
def on_message(session, message):
    command, _, n = message.partition(" ")
    if command == "join":
        for i in range(int(n)):
            session.room(f"r{i}").join()
        session.send(f"in {n}")
    elif command == "over":
        try:
            session.room("one-too-many").join()
        except ValueError as exc:
            session.send(f"{type(exc).__name__}: {exc}")
'''


def test_a_python_session_in_50000_rooms_joins_and_leaves_them_without_stalling(serve, tmp_path):
    folder = app(tmp_path, "export function onMessage() {}\n", **{"rooms.py": ROOMS_PY})
    server = serve(folder, "--max-rooms-per-session", "60000")

    async def main():
        ws = await websockets.connect(server.url("/ws/rooms"), open_timeout=None)
        await ws.send("join 50000")
        assert await asyncio.wait_for(ws.recv(), 60) == "in 50000"
        await ws.close()  # leaves 50,000 rooms at once
        await bystanders(server, 1.5)
        _, metrics = server.http("/metrics")
        assert re.search(r"^diesel_rooms 0(\.0)?$", metrics, re.M), metrics  # all 50,000 left

    run(main)


def test_a_python_join_past_the_cap_raises(serve, tmp_path):
    folder = app(tmp_path, "export function onMessage() {}\n", **{"rooms.py": ROOMS_PY})
    server = serve(folder, "--max-rooms-per-session", "3")

    async def main():
        async with websockets.connect(server.url("/ws/rooms")) as ws:
            await ws.send("join 3")
            assert await ws.recv() == "in 3"
            await ws.send("over")
            reply = await ws.recv()
            assert reply.startswith("RoomLimitError: session ") and "already in 3 rooms" in reply, reply
            assert "--max-rooms-per-session" in reply

    run(main)
