"""The bundled examples, used as a new user would: two plain `websockets` clients chatting."""

from __future__ import annotations

import asyncio
import json

import websockets
from conftest import ROOT


def test_python_chat_and_echo_examples(serve):
    server = serve(ROOT / "examples")

    async def main():
        async with websockets.connect(server.url("/ws/python/chat?user=alice")) as alice:
            welcome = json.loads(await alice.recv())
            assert welcome["type"] == "welcome" and welcome["id"]
            async with websockets.connect(server.url("/ws/python/chat?user=bob")) as bob:
                assert json.loads(await bob.recv())["type"] == "welcome"
                assert json.loads(await alice.recv()) == {"type": "join", "user": "bob"}
                await bob.send("hello alice")
                message = json.loads(await alice.recv())
                assert message["type"] == "message" and message["from"] == "bob"
                assert message["text"] == "hello alice" and isinstance(message["timestamp"], int)
            assert json.loads(await alice.recv()) == {"type": "leave", "user": "bob"}
        async with websockets.connect(server.url("/ws/echo")) as echo:
            await echo.send("ping")
            assert await echo.recv() == "ping"

    asyncio.run(asyncio.wait_for(main(), 30))
