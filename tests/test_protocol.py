"""Protocol handling and limits: fragments, sizes, UTF-8, keepalive, handshake deadline, shutdown."""

from __future__ import annotations

import asyncio
import os
import resource
import signal
import socket
import time

import pytest
import websockets
from conftest import write_scripts
from rawws import RawClient
from websockets.exceptions import ConnectionClosed

ECHO = '''
def on_message(session, message):
    session.send(message)

def on_close(session):
    print("on_close ran for", session.get_parameter("name"), flush=True)
'''


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 30))


@pytest.fixture
def echo(serve, tmp_path):
    write_scripts(tmp_path / "app", {"echo.py": ECHO})
    return serve(tmp_path / "app", "--max-message-size", "64K", "--ping-interval", "0.5",
                 "--handshake-timeout", "0.5")


def test_fragmented_messages_are_reassembled(echo):
    async def main():
        async with websockets.connect(echo.url("/ws/echo"), max_size=None) as ws:
            await ws.send(["héllo ", "wörld", "!"])
            assert await ws.recv() == "héllo wörld!"
            await ws.send([b"\x00" * 1000, b"\x01" * 1000])
            assert await ws.recv() == b"\x00" * 1000 + b"\x01" * 1000
    run(main())


def test_large_messages_arrive_whole(serve, tmp_path):
    server = serve(write_scripts(tmp_path / "app", {"echo.py": ECHO}), "--max-message-size", "2M")

    async def main():
        async with websockets.connect(server.url("/ws/echo"), max_size=None) as ws:
            for size in (70_000, 1_500_000):
                payload = bytes(range(256)) * (size // 256)
                await ws.send(payload)
                assert await ws.recv() == payload
            await ws.send("é" * 600_000)
            assert await ws.recv() == "é" * 600_000
    run(main())


def test_utf8_split_across_fragments(echo):
    client = RawClient(echo.port, "/ws/echo")
    data = "añb".encode()
    client.send_frame(0x1, data[:2], fin=False)  # 'a' and half of 'ñ'
    client.send_frame(0x0, data[2:], fin=True)
    assert client.read_frame() == (0x1, data)
    client.close()


@pytest.mark.parametrize("fragmented", [False, True])
def test_too_big_message_closes_with_1009(echo, fragmented):
    client = RawClient(echo.port, "/ws/echo")
    if fragmented:
        client.send_frame(0x2, b"x" * 30_000, fin=False)  # each frame is under the limit,
        client.send_frame(0x0, b"x" * 30_000, fin=False)  # the message is not
        client.send_frame(0x0, b"x" * 30_000, fin=True)
    else:
        client.send_frame(0x2, b"x" * 70_000)
    code, _ = client.read_until_close()
    assert code == 1009
    client.close()


def test_invalid_utf8_closes_with_1007(echo):
    client = RawClient(echo.port, "/ws/echo")
    client.send_frame(0x1, b"ok \xff\xfe")
    code, _ = client.read_until_close()
    assert code == 1007


def test_stray_continuation_closes_with_1002(echo):
    client = RawClient(echo.port, "/ws/echo")
    client.send_frame(0x0, b"nothing to continue")
    code, _ = client.read_until_close()
    assert code == 1002


def test_peer_that_stops_answering_pings_is_closed(echo):
    client = RawClient(echo.port, "/ws/echo?name=silent")
    client.sock.settimeout(5)
    pings = 0
    try:
        while True:  # never answer: the server pings, then drops the connection
            opcode, _ = client.read_frame()
            pings += opcode == 0x9
    except ConnectionError:
        pass
    assert pings >= 1
    echo.wait_log("on_close ran for silent")


def test_client_answering_pings_stays_connected(echo):
    async def main():
        async with websockets.connect(echo.url("/ws/echo")) as ws:
            await asyncio.sleep(2)  # four ping intervals
            await ws.send("still here")
            assert await ws.recv() == "still here"
    run(main())


def test_unfinished_handshake_is_dropped(echo):
    sock = socket.create_connection(("127.0.0.1", echo.port), timeout=5)
    sock.sendall(b"GET /ws/echo HTTP/1.1\r\nHost: x\r\n")  # never finishes the request
    started = time.monotonic()
    assert sock.recv(1024) == b""
    assert time.monotonic() - started < 4


def test_sigterm_closes_sessions_with_1001_and_runs_on_close(echo):
    async def main():
        clients = [await websockets.connect(echo.url(f"/ws/echo?name=c{i}")) for i in range(3)]
        await clients[0].send("ping")
        assert await clients[0].recv() == "ping"
        echo.proc.send_signal(signal.SIGTERM)
        for ws in clients:
            with pytest.raises(ConnectionClosed):
                await ws.recv()
            assert ws.close_code == 1001
    run(main())
    assert echo.proc.wait(15) == 0
    for i in range(3):
        assert f"on_close ran for c{i}" in echo.log()


def _upgrade(port: int) -> socket.socket:
    """An upgrade request sent, its answer not read."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(b"GET /ws/echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
    return sock


def _descriptors(pid: int) -> set[int]:
    return {int(fd) for fd in os.listdir(f"/proc/{pid}/fd")}


def test_out_of_descriptors_pauses_accepting_then_resumes(serve, tmp_path):
    # With its file descriptors used up the server cannot accept: it says so, keeps serving the
    # sessions it has, and accepts the waiting clients once a connection closes.
    echo = serve(write_scripts(tmp_path / "app", {"echo.py": ECHO}), "--ping-interval", "60")
    pid = echo.proc.pid
    # The limit bounds descriptor numbers, not their count (the server may inherit a high one):
    # it is set just above the three lowest free numbers, once the readiness probe's socket closed.
    in_use = _descriptors(pid)
    while True:
        time.sleep(0.2)
        settled = _descriptors(pid)
        if settled == in_use:
            break
        in_use = settled
    free = [fd for fd in range(len(in_use) + 3) if fd not in in_use][:3]
    resource.prlimit(pid, resource.RLIMIT_NOFILE, (free[-1] + 1, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
    admitted = [RawClient(echo.port, "/ws/echo") for _ in range(3)]
    assert [client.status for client in admitted] == [101, 101, 101]
    waiting = [_upgrade(echo.port) for _ in range(2)]  # in the kernel's backlog, not yet accepted
    echo.wait_log(r"cannot accept connections \(Too many open files\) with 3 open; pausing accept")
    waiting[0].settimeout(0.5)
    with pytest.raises(socket.timeout):
        waiting[0].recv(4096)
    admitted[2].send_frame(0x1, b"still here")
    assert admitted[2].read_frame() == (0x1, b"still here")
    admitted[0].close()
    admitted[1].close()
    for sock in waiting:
        sock.settimeout(10)
        assert sock.recv(4096).startswith(b"HTTP/1.1 101 ")
        sock.close()
    admitted[2].close()
    assert echo.proc.poll() is None
