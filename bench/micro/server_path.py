"""The server's own cost per handshake, per connect/close cycle and per echoed message, in-process.

Real dieselengine objects from the transport's Python side inwards (the handshake's routing,
dispatcher, hub, outbox, the script runtimes), called as the C wire calls them: with a request
head, then with each message. Only the wire's connection is replaced, by one that discards what
is written. What the kernel and the wire cost is left out, so the figures are what our Python
(and the JS engine) adds to each operation; `python bench/run.py` reports the whole server's CPU
per operation, split into user and kernel time. The echo mode measures the Python path; in a real
server the wire hands a JavaScript echo to the engine itself (`_wire.Entry`), without it.

    python bench/micro/server_path.py [--repeat 3] [--profile] [--variant plain,log,json,jwt] [MODE ...]

Modes: hs-echo, hs-chat (handshake on /ws/echo or /ws/chat of bench/servers/diesel_{js,py}, the
connections kept open), churn (handshake with onOpen's join, client close frame, onClose) and
echo (100 open connections, one 64-byte text message each per loop iteration). Prints the best
of --repeat runs in microseconds per operation; --profile prints a cProfile listing instead
(cProfile inflates the times about threefold: it tells where, not how much).

Variants (issue 14): `plain` without the access log, `log` and `json` with it (its lines written to
/dev/null), `jwt` without the log but with --jwt-secret and an HS256 token in every request.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import pstats
import socket
import time
from pathlib import Path
from typing import Any

import jwt

import uvloop
from null_connection import NullConnection

from dieselengine.wire._wire import request_head
from dieselengine.dispatch import Dispatcher
from dieselengine.door import Door
from dieselengine.logs import AccessLog
from dieselengine.endpoints import Endpoints
from dieselengine.hub import Hub
from dieselengine.routing import Router
from dieselengine.node import _tune_gc
from dieselengine.session import Session
from dieselengine.settings import Settings
from dieselengine.stats import Stats
from dieselengine.transport import Transport
from dieselengine.wire import load

SERVERS = Path(__file__).resolve().parents[1] / "servers"
MODES = {"hs-echo": 20_000, "hs-chat": 20_000, "churn": 30_000, "echo": 100_000}
SECRET = "bench-secret-" + "0123456789abcdef" * 2
VARIANTS: dict[str, tuple[dict[str, Any], str]] = {
    "plain": ({"access_log": False}, ""),
    "log": ({"access_log": True}, ""),
    "json": ({"access_log": True, "log_format": "json"}, ""),
    "jwt": ({"access_log": False, "jwt_secret": SECRET},
            "?token=" + jwt.encode({"sub": "bench", "exp": int(time.time()) + 86400}, SECRET, algorithm="HS256")),
}


class DiscardingConn(NullConnection):
    """The wire's connection, minus the socket: writes are dropped, a close is reported lost on
    the next loop iteration, as the wire does."""

    def __init__(self, transport: Transport) -> None:
        self._transport = transport
        self.session: Session | None = None

    def accept(self, response: bytes, session: Session) -> bool:
        self.session = session
        return True

    def summary(self) -> tuple[int, int, int, int, float, int, str | None]:
        return 1, 64, 1, 200, 0.5, 1000, "client"

    def respond(self, response: bytes) -> None:
        raise AssertionError(response)

    def closed_by_client(self) -> None:
        """What the wire does with a client's close frame: the session closes, then is lost."""
        session, self.session = self.session, None
        assert session is not None
        session.mark_closing()
        asyncio.get_running_loop().call_soon(self._transport._dispatcher.ended, session)


def upgrade_request(path: str) -> bytes:
    """A request head as the wire hands it over: without its final blank line."""
    return (f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13").encode()


async def measure(mode: str, folder: Path, profiler: cProfile.Profile | None, variant: str = "plain") -> float:
    """Microseconds per operation of one mode against a freshly loaded server."""
    options, query = VARIANTS[variant]
    settings = Settings(path=folder, **options)
    loop = asyncio.get_running_loop()
    kind = load("c")
    hub = Hub(settings, loop, Stats(), kind)
    dispatcher = Dispatcher(hub)
    access_log = (AccessLog(loop, settings.log_format == "json", open(os.devnull, "w"))
                  if settings.access_log else None)
    door = Door(settings, dispatcher, access_log)
    router = Router(hub)
    errors = router.load(folder)
    if errors:
        raise SystemExit("\n".join(errors))
    listener = socket.create_server(("127.0.0.1", 0))
    transport = Transport(listener, dispatcher, Endpoints(settings, router, hub), settings, kind, door)
    _tune_gc()
    n = MODES[mode]

    def start() -> float:
        if profiler:
            profiler.enable()
        return time.perf_counter()

    def connect(head: bytes) -> DiscardingConn:
        """What the wire does with a request head: its parts, parsed and answered in C, to Python."""
        conn = DiscardingConn(transport)
        method, path, query, raw_headers, answer = request_head(head)
        transport._handshake(conn, method, path, query, raw_headers, "127.0.0.1", answer)  # type: ignore[arg-type]
        return conn

    if mode.startswith("hs-"):
        request = upgrade_request("/ws/" + mode[3:] + query)
        kept = []
        started = start()
        for i in range(n):
            kept.append(connect(request))
            if i % 100 == 99:
                await asyncio.sleep(0)
        return (time.perf_counter() - started) / n * 1e6
    if mode == "churn":
        request = upgrade_request("/ws/chat" + query)

        async def cycles(count: int) -> None:
            opened = [connect(request) for _ in range(count)]
            await asyncio.sleep(0)
            for conn in opened:
                conn.closed_by_client()
            await asyncio.sleep(0)  # connection_lost, then onClose
            await asyncio.sleep(0)

        await cycles(2000)
        started = start()
        for _ in range(n // 100):
            await cycles(100)
        elapsed = time.perf_counter() - started
        assert not hub.sessions, "sessions left after churn"
        return elapsed / n * 1e6
    message = "x" * 64
    received = dispatcher.received
    sessions = [connect(upgrade_request("/ws/echo")).session for _ in range(100)]
    for _ in range(100):  # warm-up
        for session in sessions:
            received(session, message)
        await asyncio.sleep(0)
    started = start()
    for _ in range(n // 100):
        for session in sessions:
            received(session, message)
        await asyncio.sleep(0)  # the outbox flushes
    return (time.perf_counter() - started) / n * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("modes", nargs="*", metavar="MODE", help=f"{', '.join(MODES)} (default: all)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--variant", default="plain", help=f"comma-separated: {', '.join(VARIANTS)}")
    args = parser.parse_args()
    if unknown := set(args.modes) - set(MODES):
        parser.error(f"unknown mode(s): {', '.join(sorted(unknown))}")
    variants = args.variant.split(",")
    if unknown := set(variants) - set(VARIANTS):
        parser.error(f"unknown variant(s): {', '.join(sorted(unknown))}")
    for mode in args.modes or list(MODES):
        for runtime in ("js", "py"):
            folder = SERVERS / f"diesel_{runtime}"
            for variant in variants:
                if args.profile:
                    profiler = cProfile.Profile()
                    uvloop.run(measure(mode, folder, profiler, variant))
                    profiler.disable()
                    print(f"== {mode} diesel-{runtime} {variant}")
                    pstats.Stats(profiler).sort_stats("tottime").print_stats(25)
                    continue
                best = min(uvloop.run(measure(mode, folder, None, variant)) for _ in range(args.repeat))
                print(f"{mode:8} diesel-{runtime} {variant:5}: {best:6.2f} us", flush=True)


if __name__ == "__main__":
    main()
