"""permessage-deflate (RFC 7692): negotiation, round trips, shared compression of broadcasts, and
the decompression bomb."""

from __future__ import annotations

import asyncio
import json
import os
import random
import zlib

import pytest
import websockets
from conftest import write_scripts
from rawws import RawClient, client_frame

from dieselengine import wire

#: The wires built here whose request_head negotiates compression: the portable one always.
KINDS = [wire.PORTABLE] + ([wire.load("c")] if wire.why_not_c() is None and wire.load("c").compresses else [])
#: The wire the servers started here run on compresses (the C wire needs zlib's headers at build).
SERVED = os.environ.get("DIESEL_WIRE") == "asyncio" or wire.why_not_c() is not None or wire.load("c").compresses
served = pytest.mark.skipif(not SERVED, reason="the C wire was built without zlib")

UPGRADE = (b"GET /ws/echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n")
ANSWER = "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
CHAT = json.dumps({"type": "message", "from": "alice", "text": "hello everyone, how is it going today?",
                   "timestamp": 1764720000000})


def extension(kind: wire.WireKind, offer: str | None, compression: bool = True) -> str | None:
    """The Sec-WebSocket-Extensions a wire answers an offer with (None: not negotiated)."""
    head = UPGRADE + (f"Sec-WebSocket-Extensions: {offer}\r\n".encode() if offer is not None else b"")
    response = kind.request_head(head.rstrip(b"\r\n"), compression=compression)[4]
    for line in response.decode().split("\r\n"):
        if line.startswith("Sec-WebSocket-Extensions: "):
            return line.removeprefix("Sec-WebSocket-Extensions: ")
    return None


@pytest.mark.parametrize("offer, answer", [
    # Chrome and Edge, Firefox and Safari, Python websockets, Node's ws
    ("permessage-deflate; client_max_window_bits", ANSWER),
    ("permessage-deflate", ANSWER),
    ("permessage-deflate; server_max_window_bits=12; client_max_window_bits=12", f"{ANSWER}; server_max_window_bits=12"),
    ("permessage-deflate; client_max_window_bits=15; client_no_context_takeover", ANSWER),
    ('permessage-deflate; server_max_window_bits="10"', f"{ANSWER}; server_max_window_bits=10"),
    ("PerMessage-Deflate;Server_No_Context_Takeover", ANSWER),
    # declined offers, then one we accept
    ("permessage-deflate; server_max_window_bits=7, permessage-deflate", ANSWER),
    ("x-webkit-deflate-frame, permessage-deflate; server_max_window_bits=8", f"{ANSWER}; server_max_window_bits=8"),
    # declined: unknown or repeated parameters, values where none belong, missing or bad values
    ("permessage-deflate; mystery", None),
    ("permessage-deflate; server_no_context_takeover; server_no_context_takeover", None),
    ("permessage-deflate; client_no_context_takeover=1", None),
    ("permessage-deflate; server_max_window_bits", None),
    ("permessage-deflate; client_max_window_bits=16", None),
    ("x-webkit-deflate-frame", None),
    (None, None),
])
@pytest.mark.parametrize("kind", KINDS, ids=lambda kind: kind.name)
def test_negotiation(kind, offer, answer):
    assert extension(kind, offer) == answer
    assert extension(kind, offer, compression=False) is None


@pytest.mark.parametrize("kind", KINDS, ids=lambda kind: kind.name)
def test_a_second_extensions_header_is_read(kind):
    head = UPGRADE + b"Sec-WebSocket-Extensions: x-unknown\r\nSec-WebSocket-Extensions: permessage-deflate"
    assert ANSWER in kind.request_head(head, compression=True)[4].decode()


@pytest.fixture
def scripts(tmp_path):
    return write_scripts(tmp_path / "scripts", {
        "echo.js": "export function onMessage(session, message) { session.send(message); }\n",
        "room.py": """
            def on_open(session):
                session.room("r").join()

            def on_message(session, message):
                session.room("r").broadcast(message)
        """,
    })


@served
def test_websockets_client_round_trips_text_and_binary(serve, scripts):
    server = serve(scripts, "--max-message-size", "4M")

    async def main():
        async with websockets.connect(server.url("/ws/echo"), max_size=None) as ws:
            assert ws.response.headers["Sec-WebSocket-Extensions"] == ANSWER
            for message in ("short", CHAT, "é" * 100_000, bytes(range(256)) * 4000, b"\x00" * 3_000_000):
                await ws.send(message)
                assert await ws.recv() == message
        async with websockets.connect(server.url("/ws/room"), max_size=None) as ws:  # a Python handler
            await ws.send(CHAT * 10)
            assert await ws.recv() == CHAT * 10

    asyncio.run(asyncio.wait_for(main(), 30))


@served
def test_compression_off_declines(serve, scripts):
    server = serve(scripts, "--compression", "off")

    async def main():
        async with websockets.connect(server.url("/ws/echo")) as ws:
            assert "Sec-WebSocket-Extensions" not in ws.response.headers
            await ws.send(CHAT)
            assert await ws.recv() == CHAT

    asyncio.run(asyncio.wait_for(main(), 30))


def deflate(data: bytes, wbits: int = 15) -> bytes:
    compressor = zlib.compressobj(9, zlib.DEFLATED, -wbits)
    out = compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH)
    assert out.endswith(b"\x00\x00\xff\xff")
    return out[:-4]


def inflate(data: bytes, wbits: int = 15) -> bytes:
    return zlib.decompressobj(-wbits).decompress(data + b"\x00\x00\xff\xff")


@served
def test_browser_offer_on_the_wire(serve, scripts):
    """A raw client with Chrome's offer: compressed frames both ways, and a broadcast reaching a
    compressing and a plain member of one room, each in its own form."""
    server = serve(scripts)
    chrome = RawClient(server.port, "/ws/room", "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n")
    plain = RawClient(server.port, "/ws/room")
    assert f"Sec-WebSocket-Extensions: {ANSWER}" in chrome.head
    assert "Sec-WebSocket-Extensions" not in plain.head
    try:
        chrome.sock.sendall(client_frame(0x41, deflate(CHAT.encode())))  # RSV1: compressed
        for client in (chrome, plain):
            opcode, payload = client.read_frame()
            assert opcode == 0x1
            assert (inflate(payload) if client.rsv1 else payload) == CHAT.encode()
            assert client.rsv1 == (client is chrome)
        # a compressed message in three fragments (RSV1 on the first only), and a binary one
        body = deflate(CHAT.encode() * 20)
        chrome.sock.sendall(client_frame(0x41, body[:5], fin=False) + client_frame(0x0, body[5:9], fin=False)
                            + client_frame(0x0, body[9:]))
        assert inflate(chrome.read_frame()[1]) == CHAT.encode() * 20
        assert plain.read_frame()[1] == CHAT.encode() * 20
        chrome.sock.sendall(client_frame(0x42, deflate(bytes(1000))))
        opcode, payload = chrome.read_frame()
        assert opcode == 0x2 and chrome.rsv1 and inflate(payload) == bytes(1000)
        chrome.sock.sendall(client_frame(0x1, b"not compressed"))  # RSV1 clear: as it is
        assert chrome.read_frame()[1] == b"not compressed" and not chrome.rsv1
    finally:
        chrome.close()
        plain.close()


@served
def test_small_window_asked_by_the_client(serve, scripts):
    """server_max_window_bits=8: the server's frames must inflate with a 256-byte window."""
    server = serve(scripts)
    client = RawClient(server.port, "/ws/echo", "Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=8\r\n")
    try:
        assert "server_max_window_bits=8" in client.head
        message = (CHAT * 40).encode()
        client.sock.sendall(client_frame(0x41, deflate(message)))
        payload = client.read_frame()[1]
        assert client.rsv1 and inflate(payload, wbits=8) == message and len(payload) < len(message)
    finally:
        client.close()


@served
@pytest.mark.parametrize("bits", [8, 9, 12, 15])
def test_small_and_large_messages_in_the_window_asked(serve, scripts, bits):
    """Messages under and over 4 KiB are compressed by different compressors (a larger hash for
    large ones): each inflates with the window the client asked for, text and binary."""
    server = serve(scripts)
    client = RawClient(server.port, "/ws/echo",
                       f"Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits={bits}\r\n")
    verse = ("Habe nun, ach! Philosophie, Juristerei und Medizin, und leider auch Theologie "
             "durchaus studiert, mit heißem Bemühn. ").encode()
    block = random.Random(7).randbytes(3000)  # repeated: matches 3000 bytes back, past a small window
    noise = random.Random(8).randbytes(131072)
    try:
        for opcode, message in ((0x1, (verse * 40)[:4095]), (0x1, verse * 40), (0x1, (verse * 1200)[:131072]),
                                (0x2, (block * 2)[:4095]), (0x2, (block * 2)[:4096]), (0x2, (block * 44)[:131072]),
                                (0x2, noise)):
            client.sock.sendall(client_frame(0x40 | opcode, deflate(message)))
            got, payload = client.read_frame()
            assert got == opcode and (inflate(payload, wbits=bits) if client.rsv1 else payload) == message
            if message is noise:
                assert not client.rsv1  # it cannot shrink: sent plain
            elif opcode == 0x1 or 1 << bits > len(block):  # (a smaller window cannot reach back a block)
                assert client.rsv1
    finally:
        client.close()


@served
@pytest.mark.parametrize("frames, code", [
    # 64 MiB of zeros is 64 KiB compressed: closed with 1009 once past --max-message-size
    ([client_frame(0x41, deflate(bytes(64 << 20)))], 1009),
    ([client_frame(0x41, deflate(bytes(64 << 20))[:30_000], fin=False),
      client_frame(0x0, deflate(bytes(64 << 20))[30_000:])], 1009),
    ([client_frame(0x41, b"\xff\xff\xff\xff not deflate")], 1007),
    ([client_frame(0x41, deflate(b"\xff\xfe"))], 1007),  # inflates to invalid UTF-8
    ([client_frame(0x41, deflate(b"ab"), fin=False), client_frame(0x40, deflate(b"cd"))], 1002),  # RSV1 on a continuation
    ([client_frame(0x49, b"")], 1002),  # RSV1 on a ping
])
def test_bad_compressed_messages_are_closed(serve, scripts, frames, code):
    server = serve(scripts, "--max-message-size", "1M")
    client = RawClient(server.port, "/ws/echo", "Sec-WebSocket-Extensions: permessage-deflate\r\n")
    try:
        client.sock.sendall(b"".join(frames))
        assert client.read_until_close()[0] == code
    finally:
        client.close()
    assert server.http("/healthz")[0] == 200


@served
def test_rsv1_without_negotiation_is_a_protocol_error(serve, scripts):
    server = serve(scripts, "--compression", "off")
    client = RawClient(server.port, "/ws/echo", "Sec-WebSocket-Extensions: permessage-deflate\r\n")
    try:
        assert "Sec-WebSocket-Extensions" not in client.head
        client.sock.sendall(client_frame(0x41, deflate(b"hello")))
        assert client.read_until_close()[0] == 1002
    finally:
        client.close()


def metric(server, name: str) -> float:
    for line in server.http("/metrics")[1].splitlines():
        if line.startswith(f"diesel_{name}_total "):
            return float(line.split()[1])
    raise AssertionError(f"no diesel_{name}_total in /metrics")


@served
def test_a_broadcast_is_compressed_once_for_all_its_members(serve, scripts):
    server = serve(scripts)

    async def main():
        members = [await websockets.connect(server.url("/ws/room")) for _ in range(5)]
        plain = await websockets.connect(server.url("/ws/room"), compression=None)
        await asyncio.sleep(0.2)
        before = metric(server, "messages_deflated")
        await members[0].send(CHAT)  # compressed by the client: one message inflated
        for ws in members + [plain]:
            assert await ws.recv() == CHAT
        assert metric(server, "messages_deflated") - before == 1
        assert metric(server, "messages_inflated") >= 1
        for ws in members + [plain]:
            await ws.close()

    asyncio.run(asyncio.wait_for(main(), 30))
