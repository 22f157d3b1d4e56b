"""websockets peer: asyncio server on uvloop, relay with websockets.broadcast().

broadcast() writes to each recipient without awaiting it, the library's recommended fan-out.
Usage: python websockets_server.py PORT
"""

import asyncio
import sys
from http import HTTPStatus

import uvloop
import websockets
from websockets.asyncio.server import ServerConnection, serve

chat: set[ServerConnection] = set()


def route(connection: ServerConnection, request: websockets.http11.Request):
    """Answer /healthz and unknown paths before the upgrade."""
    path = request.path.split("?")[0]
    if path == "/healthz":
        return connection.respond(HTTPStatus.OK, "ok\n")
    if path not in ("/ws/chat", "/ws/echo"):
        return connection.respond(HTTPStatus.NOT_FOUND, "not found\n")
    return None


async def handler(ws: ServerConnection) -> None:
    if ws.request.path.split("?")[0] == "/ws/echo":
        async for message in ws:
            await ws.send(message)
        return
    chat.add(ws)
    try:
        async for message in ws:
            websockets.broadcast((c for c in chat if c is not ws), message)
    finally:
        chat.discard(ws)


async def main(port: int) -> None:
    async with serve(handler, "127.0.0.1", port, process_request=route, compression=None,
                     max_queue=None):
        await asyncio.Future()


if __name__ == "__main__":
    uvloop.run(main(int(sys.argv[1])))
