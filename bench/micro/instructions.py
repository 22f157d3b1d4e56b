"""The server's instructions per echo, per fan-out delivery and per handshake, counted by callgrind:
a figure the shared machine's load does not move, for changes too small for the timed benchmarks to
see.

Each build (a `diesel` executable; several compare side by side) serves bench/servers/diesel_js
on the C wire under `valgrind --tool=callgrind` with instrumentation off; a client in this process
warms it up, then instrumentation is on only while it runs, one message in flight at a time:

    echo     ECHO 64-byte text messages to /ws/echo, each waiting for its echo
    fanout   FANOUT 64-byte messages from one of MEMBERS members of /ws/chat, each waiting until
             every other member has it (one frame per write: the outbox has nothing to join)
    handshake HANDSHAKES connections to /ws/echo, BATCH at a time, each kept open: accept, the
             request head, the 101, the script's onOpen, and the access log's line with
             --access-log (off otherwise, as for the others)

    python bench/micro/instructions.py DIESEL [DIESEL ...] [--echo 2000] [--fanout 200] [--members 50]
                                       [--handshakes 500] [--access-log]

Prints user-space instructions (callgrind's Ir: the server's own code, Python and quickjs-ng; not
the kernel's) per echo, per delivery and per handshake. Repeat runs of one build differ by about
0.5 %.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Callable

import websockets

SERVERS = Path(__file__).resolve().parent.parent / "servers" / "diesel_js"
MESSAGE = "#" * 64
#: Handshakes opened at once in the handshake mode.
BATCH = 50
OPTIONS = {"ping_interval": None, "compression": None, "max_queue": None}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def totals(dump: Path) -> int:
    """The instructions a callgrind dump counted."""
    for line in dump.read_text().splitlines():
        if line.startswith("totals:"):
            return int(line.split()[1])
    raise RuntimeError(f"no totals in {dump}")


async def workload(port: int, control: Callable[..., None], echoes: int, messages: int, members: int,
                   handshakes: int) -> None:
    async with websockets.connect(f"ws://127.0.0.1:{port}/ws/echo", **OPTIONS) as echo:
        for _ in range(50):
            await echo.send(MESSAGE)
            await echo.recv()
        control("-i", "on")
        for _ in range(echoes):
            await echo.send(MESSAGE)
            await echo.recv()
        control("-i", "off")
        control("--dump=echo")
    clients = [await websockets.connect(f"ws://127.0.0.1:{port}/ws/chat", **OPTIONS) for _ in range(members)]
    sender, others = clients[0], clients[1:]
    for counted in (False, True):
        if counted:
            control("-i", "on")
        for _ in range(messages if counted else 10):
            await sender.send(MESSAGE)
            for other in others:
                await other.recv()
    control("-i", "off")
    control("--dump=fanout")
    for client in clients:
        await client.close()
    control("-i", "on")
    opened = []
    for start in range(0, handshakes, BATCH):  # several heads per loop tick, as under load
        opened += await asyncio.gather(*(websockets.connect(f"ws://127.0.0.1:{port}/ws/echo", **OPTIONS)
                                         for _ in range(min(BATCH, handshakes - start))))
    control("-i", "off")
    control("--dump=handshake")
    for client in opened:
        await client.close()


def measure(diesel: str, echoes: int, messages: int, members: int, handshakes: int,
            access_log: bool) -> tuple[float, float, float]:
    """(instructions per echo, per fan-out delivery, per handshake) of one build."""
    port = free_port()
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "callgrind.out"
        server = subprocess.Popen(
            ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}", diesel, "serve",
             str(SERVERS), "--wire", "c", "--host", "127.0.0.1", "--port", str(port),
             *([] if access_log else ["--no-access-log"])],
            env={**os.environ, "PYTHONHASHSEED": "0"}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        def control(*args: str) -> None:
            subprocess.run(["callgrind_control", *args, str(server.pid)], check=True, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)

        try:
            for _ in range(240):
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2).close()
                    break
                except OSError:
                    time.sleep(0.5)
            else:
                raise RuntimeError(f"{diesel} did not answer /healthz under valgrind")
            asyncio.run(workload(port, control, echoes, messages, members, handshakes))
        finally:
            server.send_signal(signal.SIGINT)
            server.wait(120)
        return (totals(Path(f"{out}.1")) / echoes, totals(Path(f"{out}.2")) / (messages * (members - 1)),
                totals(Path(f"{out}.3")) / handshakes)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("diesel", nargs="+", help="a build's `diesel` executable")
    parser.add_argument("--echo", type=int, default=2000)
    parser.add_argument("--fanout", type=int, default=200)
    parser.add_argument("--members", type=int, default=50)
    parser.add_argument("--handshakes", type=int, default=500)
    parser.add_argument("--access-log", action="store_true", help="the server writes its access log (to /dev/null)")
    args = parser.parse_args()
    print("| build | instructions per echo | instructions per fan-out delivery | instructions per handshake |")
    print("|---|---|---|---|")
    for diesel in args.diesel:
        echo, delivery, handshake = measure(diesel, args.echo, args.fanout, args.members, args.handshakes,
                                           args.access_log)
        print(f"| {diesel} | {echo:,.0f} | {delivery:,.0f} | {handshake:,.0f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
