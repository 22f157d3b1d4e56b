"""The server's own cost per handshake, per connect/close cycle and per echoed message, in-process.

Real dieselengine objects from the socket protocol inwards (`WebSocketProtocol`, dispatcher, hub,
outbox, the script runtimes), fed raw client bytes; only the socket is replaced, by a transport
that discards what is written. What the kernel and uvloop cost is left out, so the figures are
what our Python (and the JS engine) adds to each operation; `python bench/run.py` reports the
whole server's CPU per operation, split into user and kernel time.

    python bench/micro/server_path.py [--repeat 3] [--profile] [MODE ...]

Modes: hs-echo, hs-chat (handshake on /ws/echo or /ws/chat of bench/servers/diesel_{js,py}, the
connections kept open), churn (handshake with onOpen's join, client close frame, onClose) and
echo (100 open connections, one 64-byte text message each per loop iteration). Prints the best
of --repeat runs in microseconds per operation; --profile prints a cProfile listing instead
(cProfile inflates the times about threefold: it tells where, not how much).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import struct
import time
from pathlib import Path
from typing import Any

import uvloop
from websockets.speedups import apply_mask

from dieselengine.dispatch import Dispatcher
from dieselengine.endpoints import Endpoints
from dieselengine.hub import Hub
from dieselengine.routing import Router
from dieselengine.server import _tune_gc
from dieselengine.settings import Settings
from dieselengine.stats import Stats
from dieselengine.transport import ServerContext, WebSocketProtocol

SERVERS = Path(__file__).resolve().parents[1] / "servers"
MODES = {"hs-echo": 20_000, "hs-chat": 20_000, "churn": 30_000, "echo": 100_000}


class DiscardingTransport(asyncio.Transport):
    """Accepts writes and drops them; closing reports the connection lost on the next iteration."""

    def __init__(self, protocol: WebSocketProtocol) -> None:
        super().__init__()
        self._protocol = protocol
        self._closing = False

    def write(self, data: Any) -> None:
        pass

    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        if not self._closing:
            self._closing = True
            asyncio.get_running_loop().call_soon(self._protocol.connection_lost, None)

    def abort(self) -> None:
        self.close()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 40000) if name == "peername" else default

    def get_write_buffer_size(self) -> int:
        return 0

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


def client_frame(payload: bytes, first: int = 0x81) -> bytes:
    mask = b"\x01\x02\x03\x04"
    return bytes((first, 0x80 | len(payload))) + mask + apply_mask(payload, mask)


def upgrade_request(path: str) -> bytes:
    return (f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n").encode()


async def measure(mode: str, folder: Path, profiler: cProfile.Profile | None) -> float:
    """Microseconds per operation of one mode against a freshly loaded server."""
    settings = Settings(path=folder)
    hub = Hub(settings, asyncio.get_running_loop(), Stats())
    dispatcher = Dispatcher(hub)
    router = Router(hub)
    errors = router.load(folder)
    if errors:
        raise SystemExit("\n".join(errors))
    ctx = ServerContext(dispatcher, Endpoints(settings, router, hub), settings)
    _tune_gc()
    n = MODES[mode]

    def start() -> float:
        if profiler:
            profiler.enable()
        return time.perf_counter()

    def connect(request: bytes) -> WebSocketProtocol:
        protocol = WebSocketProtocol(ctx)
        protocol.connection_made(DiscardingTransport(protocol))
        protocol.data_received(request)
        return protocol

    if mode.startswith("hs-"):
        request = upgrade_request("/ws/" + mode[3:])
        kept = []
        started = start()
        for i in range(n):
            kept.append(connect(request))
            if i % 100 == 99:
                await asyncio.sleep(0)
        return (time.perf_counter() - started) / n * 1e6
    if mode == "churn":
        request, close = upgrade_request("/ws/chat"), client_frame(struct.pack("!H", 1000), 0x88)

        async def cycles(count: int) -> None:
            opened = [connect(request) for _ in range(count)]
            await asyncio.sleep(0)
            for protocol in opened:
                protocol.data_received(close)
            await asyncio.sleep(0)  # connection_lost, then onClose
            await asyncio.sleep(0)

        await cycles(2000)
        started = start()
        for _ in range(n // 100):
            await cycles(100)
        elapsed = time.perf_counter() - started
        assert not hub.sessions, "sessions left after churn"
        return elapsed / n * 1e6
    message = client_frame(b"x" * 64)
    clients = [connect(upgrade_request("/ws/echo")) for _ in range(100)]
    for _ in range(100):  # warm-up
        for protocol in clients:
            protocol.data_received(message)
        await asyncio.sleep(0)
    started = start()
    for _ in range(n // 100):
        for protocol in clients:
            protocol.data_received(message)
        await asyncio.sleep(0)  # the outbox flushes
    return (time.perf_counter() - started) / n * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("modes", nargs="*", metavar="MODE", help=f"{', '.join(MODES)} (default: all)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    if unknown := set(args.modes) - set(MODES):
        parser.error(f"unknown mode(s): {', '.join(sorted(unknown))}")
    for mode in args.modes or list(MODES):
        for runtime in ("js", "py"):
            folder = SERVERS / f"diesel_{runtime}"
            if args.profile:
                profiler = cProfile.Profile()
                uvloop.run(measure(mode, folder, profiler))
                profiler.disable()
                print(f"== {mode} diesel-{runtime}")
                pstats.Stats(profiler).sort_stats("tottime").print_stats(25)
                continue
            best = min(uvloop.run(measure(mode, folder, None)) for _ in range(args.repeat))
            print(f"{mode:8} diesel-{runtime}: {best:6.2f} us", flush=True)


if __name__ == "__main__":
    main()
