"""Client frames parsed per second in Python: the portable wire's parser beside `websockets`' sans-I/O
`Protocol`, the library the portable wire could have been driven by.

The same bytes for both: masked text frames of a chat-sized JSON message, fed in 64 KiB reads as
a socket gives them. The portable wire's figure includes what it does per message up to the
handler (unmask, UTF-8 decode, the limit checks, the call into the core, here a no-op);
`websockets`' includes its events (unmasked, decoded `Frame` objects, collected from
`events_received`).

    python bench/micro/frame_parse.py [--frames 20000] [--repeat 7]

Prints the best of `--repeat` runs in microseconds per frame (the machine is shared: the minimum
is the figure least disturbed by other processes).
"""

from __future__ import annotations

import argparse
import os
import struct
import time
from typing import Any

from websockets.protocol import Protocol, Side

from dieselengine.wire import portable

MESSAGE = b'{"type":"message","from":"alice","text":"hello there, how is it going?"}'
READ_SIZE = 65536


def masked_frame(payload: bytes) -> bytes:
    mask = os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return struct.pack("!BB", 0x81, 0x80 | len(payload)) + mask + masked


class _Wire:
    """What `portable.Conn` reads of its wire while parsing."""

    max_message = 1 << 20
    bytes_in = messages_in = 0
    message_seconds = 0.0

    def on_message(self, session: Any, message: str | bytes) -> None:
        pass


class _Session:
    busy = False


def portable_wire(data: bytes, frames: int) -> float:
    conn = portable.Conn.__new__(portable.Conn)
    conn._wire, conn.session, conn.state = _Wire(), _Session(), portable.OPEN  # type: ignore[assignment]
    conn._in, conn._parts, conn._entry, conn._alive = None, None, None, True
    started = time.perf_counter()
    for at in range(0, len(data), READ_SIZE):
        conn._received(data[at:at + READ_SIZE])
    return (time.perf_counter() - started) / frames * 1e6


def websockets_protocol(data: bytes, frames: int) -> float:
    protocol = Protocol(Side.SERVER, max_size=1 << 20)
    started = time.perf_counter()
    for at in range(0, len(data), READ_SIZE):
        protocol.receive_data(data[at:at + READ_SIZE])
        protocol.events_received()
    return (time.perf_counter() - started) / frames * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=20000)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    data = b"".join(masked_frame(MESSAGE) for _ in range(args.frames))
    best: dict[str, float] = {}
    for _ in range(args.repeat):
        for measure in (portable_wire, websockets_protocol):
            best[measure.__name__] = min(best.get(measure.__name__, float("inf")), measure(data, args.frames))
    for name, us in best.items():
        print(f"{name}: {us:.2f} us per frame")


if __name__ == "__main__":
    main()
