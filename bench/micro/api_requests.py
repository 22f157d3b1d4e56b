"""The HTTP API's cost per request, beside the cheapest plain HTTP answer of the same server.

Starts a real `diesel serve --api-key` on a free port with MEMBERS WebSocket clients in one room
(they read everything, so a broadcast's fan-out is part of the cost), then for each kind of
request runs back-to-back requests, one connection each as the API answers them, the kinds in turn, --seconds per kind:

    healthz     GET /healthz (the baseline: head in, answer out, close)
    room        GET /api/rooms/bench (the key checked, a JSON answer)
    broadcast   POST /api/rooms/bench/broadcast with a 64-byte text body, fanned out to MEMBERS

    python bench/micro/api_requests.py [--members 100] [--seconds 3] [--wire c|asyncio]

Prints requests per second and the ratio to healthz. Client and server share the machine, so
the ratios are what to compare, not the absolute rates.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import websockets

KEY = "bench-key"
MEMBER = "def on_open(session):\n    session.room('bench').join()\n"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def one_request(port: int, raw: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(raw)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def rates(port: int, kinds: dict[str, tuple[bytes, bytes]], seconds: float) -> tuple[dict[str, float], dict[str, int]]:
    """Requests per second of each kind, the kinds taken in turn (so machine noise hits all alike)."""
    spent = dict.fromkeys(kinds, 0.0)
    done = dict.fromkeys(kinds, 0)
    start = time.perf_counter()
    while time.perf_counter() - start < seconds * len(kinds):
        for name, (raw, expect) in kinds.items():
            began = time.perf_counter()
            answer = one_request(port, raw)
            spent[name] += time.perf_counter() - began
            assert answer.startswith(expect), answer[:200]
            done[name] += 1
    return {name: done[name] / spent[name] for name in kinds}, done


def members(port: int, count: int, ready: Any, results: Any) -> None:
    """A process with MEMBERS clients in the room (apart from the measuring one, so their reading
    does not compete with it for the GIL); puts how many frames each got before the "end" one."""

    async def run() -> list[int]:
        received = [0] * count
        joined: list[int] = []

        async def member(index: int) -> None:
            async with websockets.connect(f"ws://127.0.0.1:{port}/ws/member", max_queue=None) as ws:
                joined.append(index)
                if len(joined) == count:
                    ready.set()
                while await ws.recv() != "end":
                    received[index] += 1

        await asyncio.gather(*(member(i) for i in range(count)))
        return received

    results.put(asyncio.run(run()))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--members", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--wire", default="c")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp())
    (folder / "member.py").write_text(MEMBER)
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "dieselengine", "serve", str(folder), "--port", str(port),
                               "--api-key", KEY, "--wire", args.wire, "--log-level", "warning"],
                              env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                one_request(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        measure(port, args)
    finally:
        server.terminate()
        server.wait()


def measure(port: int, args: argparse.Namespace) -> None:
    ready, results = multiprocessing.Event(), multiprocessing.Queue()
    clients = multiprocessing.Process(target=members, args=(port, args.members, ready, results))
    clients.start()
    assert ready.wait(30), "the members did not connect"
    auth = f"Authorization: Bearer {KEY}\r\n"
    body = b"x" * 64
    kinds = {
        "healthz": (b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", b"HTTP/1.1 200"),
        "room": (f"GET /api/rooms/bench HTTP/1.1\r\nHost: x\r\n{auth}\r\n".encode(), b"HTTP/1.1 200"),
        "broadcast": (f"POST /api/rooms/bench/broadcast HTTP/1.1\r\nHost: x\r\n{auth}Content-Type: text/plain\r\n"
                      f"Content-Length: {len(body)}\r\n\r\n".encode() + body, b"HTTP/1.1 202"),
    }
    measured, done = rates(port, kinds, args.seconds)
    end = f"POST /api/rooms/bench/broadcast HTTP/1.1\r\n{auth}Content-Type: text/plain\r\nContent-Length: 3\r\n\r\nend"
    one_request(port, end.encode())
    received = results.get(timeout=120)
    clients.join()
    print(f"wire {args.wire}, {args.members} members, {args.seconds:.0f} s per kind (client and server share the machine)")
    for name, value in measured.items():
        print(f"  {name:10s} {value:8.0f} requests/s  {value / measured['healthz']:.2f}x healthz")
    print(f"  broadcast frames received per member: min {min(received)}, max {max(received)} "
          f"({done['broadcast']} sent)")


if __name__ == "__main__":
    main()
