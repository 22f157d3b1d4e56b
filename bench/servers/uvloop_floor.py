"""Reference, not a peer: the least a Python WebSocket server on uvloop can do.

It answers the upgrade with a fixed response and echoes each frame assuming one whole, short,
masked frame per read: no validation, no fragments, no close handshake, no rooms. Nothing real
can be served like this; it measures the ceiling that uvloop and the kernel set for any Python
server on this machine (echo messages/s and handshakes/s), in the same run as everyone else.

Usage: python uvloop_floor.py PORT
"""

import asyncio
import base64
import hashlib
import sys

import uvloop
from websockets.speedups import apply_mask

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
UPGRADE = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: "


class Floor(asyncio.Protocol):
    __slots__ = ("transport", "upgraded")

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.Transport = transport  # type: ignore[assignment]
        self.upgraded = False

    def data_received(self, data: bytes) -> None:
        if self.upgraded:
            size = data[1] & 0x7F
            self.transport.write(bytes((data[0], size)) + apply_mask(data[6:6 + size], data[2:6]))
            return
        at = data.find(b"ec-WebSocket-Key:")
        if at < 0:
            self.transport.write(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
            return
        key = data[at + 17:data.index(b"\r\n", at)].strip()
        self.transport.write(UPGRADE + base64.b64encode(hashlib.sha1(key + GUID).digest()) + b"\r\n\r\n")
        self.upgraded = True


async def main(port: int) -> None:
    server = await asyncio.get_running_loop().create_server(Floor, "127.0.0.1", port, backlog=4096)
    await server.serve_forever()


if __name__ == "__main__":
    uvloop.run(main(int(sys.argv[1])))
