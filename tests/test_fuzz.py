"""Mutated request heads and frame streams against a live server (seeded, bounded in time).

Each case is one connection: a request head (a valid upgrade, mutated) or a valid upgrade followed
by a stream of frames (well-formed, odd, then mutated byte by byte), sent whole, then the client
shuts down writing and reads until the server closes. Every so often, and at the end, the server
must still be healthy: /healthz answers, a fresh client gets its echo on both routes, RSS stays
within a bound, and the bytes held for clients return to nothing. FUZZ_SEED reruns one seed (it is
printed on failure); FUZZ_SECONDS changes the time bound.
"""

from __future__ import annotations

import base64
import os
import random
import re
import socket
import struct
import time

from conftest import write_scripts
from rawws import RawClient

SEED = int(os.environ.get("FUZZ_SEED", "12"))
SECONDS = float(os.environ.get("FUZZ_SECONDS", "45"))
CASES = 4000
RSS_BOUND_KIB = 96 * 1024  # over the server's RSS after start-up

ROUTES = ("/ws/echo_js", "/ws/echo_py")


def upgrade_head(rng: random.Random) -> bytes:
    key = base64.b64encode(rng.randbytes(16)).decode()
    return (f"GET {rng.choice(ROUTES)}?n={rng.randrange(100)} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode()


def frame(rng: random.Random) -> bytes:
    """One frame, mostly well-formed, with odd opcodes, flags, lengths and masks now and then."""
    opcode = rng.choice([0x0, 0x1, 0x1, 0x2, 0x2, 0x8, 0x9, 0x9, 0xA, 0x3, 0xB, 0xF])
    fin = rng.random() < 0.8
    rsv = rng.choice([0] * 12 + [0x10, 0x20, 0x40])
    size = rng.choice([0, 1, 2, 5, 125, 126, 127, 200, 1000, 65535, 65536, 70000, rng.randrange(0, 3000)])
    if opcode == 0x8 and rng.random() < 0.7:
        payload = struct.pack("!H", rng.choice([1000, 1001, 1002, 1005, 1006, 1015, 2000, 3000, 4999, 5000, 0, 65535]))
        payload += rng.choice([b"", b"bye", "é".encode(), b"\xff\xfe", b"x" * 130])
    elif opcode == 0x1 and rng.random() < 0.3:
        payload = rng.choice(["héllo", "€" * 50, "\U0001f600"]).encode()[: max(1, size)]
    else:
        payload = rng.randbytes(min(size, 80_000))
    masked = rng.random() < 0.95
    length = len(payload)
    claimed = length if rng.random() < 0.95 else rng.choice([length + 1, max(0, length - 1), 1 << 40, 1 << 63])
    first = (0x80 if fin else 0) | rsv | opcode
    if claimed < 126:
        header = struct.pack("!BB", first, (0x80 if masked else 0) | claimed)
    elif claimed < 65536 and rng.random() < 0.9:
        header = struct.pack("!BBH", first, (0x80 if masked else 0) | 126, claimed)
    else:
        header = struct.pack("!BBQ", first, (0x80 if masked else 0) | 127, min(claimed, (1 << 64) - 1))
    if not masked:
        return header + payload
    mask = rng.randbytes(4)
    return header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def mutate(rng: random.Random, data: bytes, edits: int) -> bytes:
    out = bytearray(data)
    for _ in range(edits):
        if not out:
            break
        at = rng.randrange(len(out))
        kind = rng.randrange(6)
        if kind == 0:
            out[at] = rng.randrange(256)
        elif kind == 1:
            out[at] ^= 1 << rng.randrange(8)
        elif kind == 2:
            del out[at:at + rng.randrange(1, 20)]
        elif kind == 3:
            out[at:at] = rng.randbytes(rng.randrange(1, 20))
        elif kind == 4:
            out[at:at] = out[at:at + rng.randrange(1, 200)] * rng.randrange(1, 50)
        else:
            del out[at:]
    return bytes(out)


def head_case(rng: random.Random) -> bytes:
    head = upgrade_head(rng)
    choice = rng.randrange(6)
    if choice == 0:
        return head.replace(b"HTTP/1.1", rng.choice([b"HTTP/1.0", b"HTTP/2.0", b"HTTP/9.9", b"HTTP/1.", b"HTTPS/1.1"]))
    if choice == 1:
        return head.replace(b"\r\n\r\n", b"\r\n" + b"X-Pad: " + b"a" * rng.randrange(1000, 70000) + b"\r\n\r\n")
    if choice == 2:
        return rng.choice([b"HEAD", b"POST", b"get", b"\x00\xff", b"GET GET"]) + head[3:]
    return mutate(rng, head, rng.randrange(1, 8))


def stream_case(rng: random.Random) -> bytes:
    frames = b"".join(frame(rng) for _ in range(rng.randrange(1, 12)))
    if rng.random() < 0.5:
        frames = mutate(rng, frames, rng.randrange(1, 6))
    return upgrade_head(rng) + frames


def run_case(port: int, data: bytes) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        try:
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
            while sock.recv(65536):
                pass
        except OSError:
            pass  # the server may close while we still send: what matters is that it stays healthy


def metric(server, name: str) -> float:
    match = re.search(rf"^{name} (\S+)$", server.http("/metrics")[1], re.M)
    assert match, name
    return float(match.group(1))


def check_healthy(server, baseline_kib: int, context: str) -> None:
    assert server.proc.poll() is None, f"{context}: the server exited\n{server.log()[-3000:]}"
    assert server.http("/healthz")[0] == 200, context
    for route in ROUTES:
        client = RawClient(server.port, route)
        client.send_frame(0x1, b"ok?")
        assert client.read_frame() == (0x1, b"ok?"), f"{context}: {route}"
        client.close()
    grown = server.rss_kib() - baseline_kib
    assert grown < RSS_BOUND_KIB, f"{context}: RSS grew by {grown} KiB"


def test_fuzzed_heads_and_frames_leave_the_server_healthy(serve, tmp_path):
    app = write_scripts(tmp_path / "app", {
        "echo_js.js": "export function onMessage(session, message) { session.send(message); }\n",
        "echo_py.py": "def on_message(session, message):\n    session.send(message)\n",
    })
    server = serve(app, "--max-message-size", "64K", "--send-queue-size", "256K", "--max-buffered", "8M",
                   "--handshake-timeout", "1")
    rng = random.Random(SEED)
    check_healthy(server, server.rss_kib(), "before")
    baseline = server.rss_kib()
    idle = metric(server, "diesel_receive_buffered_bytes")
    deadline = time.monotonic() + SECONDS
    done = 0
    while done < CASES and time.monotonic() < deadline:
        data = head_case(rng) if rng.random() < 0.3 else stream_case(rng)
        run_case(server.port, data)
        done += 1
        if done % 250 == 0:
            check_healthy(server, baseline, f"seed {SEED}, after case {done}")
    assert done >= 200, f"only {done} cases ran in {SECONDS} s"
    check_healthy(server, baseline, f"seed {SEED}, after all {done} cases")
    end = time.monotonic() + 5
    while metric(server, "diesel_receive_buffered_bytes") > idle and time.monotonic() < end:
        time.sleep(0.05)
    assert metric(server, "diesel_receive_buffered_bytes") == idle, f"seed {SEED}: bytes still held"
    log = server.log()
    assert "Traceback" not in log and "Exception ignored" not in log, f"seed {SEED}:\n{log[-5000:]}"
    print(f"seed {SEED}: {done} cases")
