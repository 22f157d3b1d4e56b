"""The handler API for Python modules, through real sockets: every method and SPEC.md decision."""

from __future__ import annotations

import asyncio
import json
import socket
import struct

import pytest
import websockets
from conftest import write_scripts
from websockets.exceptions import ConnectionClosed

API = '''
import json

def on_open(session):
    session.set_attribute("opened", True)

def on_message(session, message):
    if isinstance(message, bytes):
        session.send(b"bin:" + message)
        return
    op = json.loads(message)
    kind = op["op"]
    if kind == "info":
        session.send(json.dumps({
            "id": session.id,
            "params": {name: session.get_parameter(name) for name in op["params"]},
            "headers": {name: session.get_header(name) for name in op["headers"]},
            "path": session.get_request_path(),
            "addr": session.get_remote_addr(),
            "open": session.is_open(),
        }))
    elif kind == "set":
        session.set_attribute(op["key"], op["value"])
        session.send(json.dumps({"get": session.get_attribute(op["key"]), "missing": session.get_attribute("nope"),
                                 "all": session.get_attributes()}))
    elif kind == "join":
        session.room(op["room"]).join()
        session.send(json.dumps({"members": session.room(op["room"]).members()}))
    elif kind == "leave":
        session.room(op["room"]).leave()
        session.send(json.dumps({"members": session.room(op["room"]).members()}))
    elif kind == "members":
        room = session.room(op["room"])
        session.send(json.dumps({"members": room.members(), "name": room.get_name()}))
    elif kind == "broadcast":
        session.room(op["room"]).broadcast(op["text"])
    elif kind == "except":
        session.room(op["room"]).broadcast_except(op["text"])
    elif kind == "close":
        session.send("bye")
        session.close(op["code"], op["reason"])
        session.send("never delivered")
        session.send(json.dumps({"open": session.is_open()}))
    elif kind == "fail":
        raise ValueError("boom in handler")
'''


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 30))


@pytest.fixture
def api(serve, tmp_path):
    write_scripts(tmp_path / "app", {"api.py": API, "other.py": API, "_helper.py": "X = 1\n"})
    return serve(tmp_path / "app")


async def ask(ws, **op):
    await ws.send(json.dumps(op))
    return json.loads(await ws.recv())


def test_request_accessors(api):
    async def main():
        url = api.url("/ws/api?room=general&user=alice&user=bob&text=hello%20big+world&empty=")
        async with websockets.connect(url, additional_headers={"Authorization": "Bearer t0k"}) as ws:
            info = await ask(ws, op="info", params=["room", "user", "text", "empty", "absent"],
                             headers=["authorization", "AUTHORIZATION", "X-Absent"])
            assert info["params"] == {"room": "general", "user": "alice", "text": "hello big world",
                                      "empty": "", "absent": None}
            assert info["headers"] == {"authorization": "Bearer t0k", "AUTHORIZATION": "Bearer t0k",
                                       "X-Absent": None}
            assert info["path"] == "/ws/api"
            assert info["addr"] == "127.0.0.1"
            assert info["open"] is True
            assert len(info["id"]) == 16
        async with websockets.connect(api.url("/ws/api")) as other:
            assert (await ask(other, op="info", params=[], headers=[]))["id"] != info["id"]
    run(main())


def test_attributes_any_value(api):
    async def main():
        async with websockets.connect(api.url("/ws/api")) as ws:
            reply = await ask(ws, op="set", key="profile", value={"name": "alice", "tags": [1, 2]})
            assert reply["get"] == {"name": "alice", "tags": [1, 2]}
            assert reply["missing"] is None
            assert reply["all"] == {"opened": True, "profile": {"name": "alice", "tags": [1, 2]}}
    run(main())


def test_text_and_binary_frames(api):
    async def main():
        async with websockets.connect(api.url("/ws/api")) as ws:
            await ws.send(b"\x00\xff\x10")
            reply = await ws.recv()
            assert reply == b"bin:\x00\xff\x10"
            assert isinstance(reply, bytes)
    run(main())


def test_rooms_join_leave_broadcast(api):
    async def main():
        async with websockets.connect(api.url("/ws/api")) as a, websockets.connect(api.url("/ws/other")) as b, \
                websockets.connect(api.url("/ws/api")) as outsider:
            assert (await ask(a, op="join", room="lobby")) == {"members": 1}
            assert (await ask(a, op="join", room="lobby")) == {"members": 1}  # idempotent
            # another route shares the server-wide room
            assert (await ask(b, op="join", room="lobby")) == {"members": 2}
            assert (await ask(outsider, op="members", room="lobby")) == {"members": 2, "name": "lobby"}

            await a.send(json.dumps({"op": "broadcast", "room": "lobby", "text": "to all"}))
            assert await a.recv() == "to all"  # the sender is a member, so it gets it too
            assert await b.recv() == "to all"

            await a.send(json.dumps({"op": "except", "room": "lobby", "text": "not me"}))
            assert await b.recv() == "not me"

            # a non-member may broadcast; it does not receive its own broadcast
            await outsider.send(json.dumps({"op": "broadcast", "room": "lobby", "text": "from outside"}))
            assert await a.recv() == "from outside"
            assert await b.recv() == "from outside"

            assert (await ask(b, op="leave", room="lobby")) == {"members": 1}
            assert (await ask(b, op="leave", room="lobby")) == {"members": 1}  # idempotent
            await outsider.send(json.dumps({"op": "broadcast", "room": "lobby", "text": "after leave"}))
            assert await a.recv() == "after leave"
            assert (await ask(b, op="members", room="lobby"))["members"] == 1  # b got nothing in between

            assert (await ask(a, op="leave", room="lobby")) == {"members": 0}
            assert "diesel_rooms 0.0" in api.http("/metrics")[1]  # a room is gone when empty
    run(main())


def test_close_with_code_and_nothing_after(api):
    async def main():
        async with websockets.connect(api.url("/ws/api")) as ws:
            await ws.send(json.dumps({"op": "close", "code": 4001, "reason": "kicked"}))
            assert await ws.recv() == "bye"
            with pytest.raises(ConnectionClosed) as closed:
                await ws.recv()
            assert closed.value.rcvd.code == 4001
            assert closed.value.rcvd.reason == "kicked"
    run(main())


def test_error_in_on_message_is_logged_and_session_goes_on(api):
    async def main():
        async with websockets.connect(api.url("/ws/api")) as ws:
            await ws.send(json.dumps({"op": "fail"}))
            reply = await ask(ws, op="members", room="x")
            assert reply == {"members": 0, "name": "x"}
    run(main())
    api.wait_log(r"ValueError: boom in handler")
    line = API.lstrip().splitlines().index('        raise ValueError("boom in handler")') + 1
    assert f'api.py", line {line}, in on_message' in api.log()
    assert "api.py: uncaught error in the message handler" in api.log()


def test_unknown_paths_get_404_and_endpoints_answer(api):
    assert api.http("/ws/nope")[0] == 404
    assert api.http("/ws/_helper")[0] == 404  # helpers are not routes
    assert api.http("/")[0] == 404
    status, body = api.http("/healthz")
    assert status == 200 and json.loads(body) == {"status": "ok"}
    status, metrics = api.http("/metrics")
    assert status == 200
    for name in ("diesel_sessions_open", "diesel_rooms", "diesel_messages_in_total", "diesel_frames_out_total",
                 "diesel_bytes_in_total", "diesel_bytes_out_total", "diesel_handler_errors_total",
                 "diesel_handler_seconds_total", "diesel_slow_consumer_closes_total", "process_resident_memory_bytes"):
        assert name in metrics

    async def main():
        with pytest.raises(websockets.InvalidStatus) as refused:
            async with websockets.connect(api.url("/ws/missing")):
                pass
        assert refused.value.response.status_code == 404
    run(main())


LIFECYCLE = '''
import asyncio, json, threading

events = []

def on_open(session):
    mode = session.get_parameter("mode")
    events.append(("open", session.get_parameter("name")))
    session.room("life").join()
    if mode == "fail-open":
        raise RuntimeError("open failed")

async def on_message(session, message):
    if message == "events":
        session.send(json.dumps(events))
        return
    if message == "thread":
        def work():
            for i in range(5):
                session.send(f"t{i}")
            session.room("life").broadcast_except("from a thread")
        threading.Thread(target=work).start()
        return
    if message == "slowclose":
        session.close()
        return
    events.append(("start", session.get_parameter("name"), message))
    await asyncio.sleep(0.05 if message.endswith("slow") else 0)
    events.append(("end", session.get_parameter("name"), message))
    session.send("done " + message)

def on_close(session):
    name = session.get_parameter("name")
    events.append(("close", name, session.room("life").members()))
    session.room("life").broadcast_except("left " + str(name))
'''


@pytest.fixture
def life(serve, tmp_path):
    write_scripts(tmp_path / "app", {"life.py": LIFECYCLE})
    return serve(tmp_path / "app")


def test_async_handlers_never_overlap_and_keep_order(life):
    async def main():
        async with websockets.connect(life.url("/ws/life?name=a")) as ws:
            for text in ("1-slow", "2", "3-slow", "4"):
                await ws.send(text)
            assert [await ws.recv() for _ in range(4)] == ["done 1-slow", "done 2", "done 3-slow", "done 4"]
            await ws.send("events")
            events = json.loads(await ws.recv())
        steps = [e for e in events if e[0] in ("start", "end")]
        assert steps == [[kind, "a", text] for text in ("1-slow", "2", "3-slow", "4") for kind in ("start", "end")]
    run(main())


def test_on_close_once_and_membership_after_it(life):
    async def main():
        async with websockets.connect(life.url("/ws/life?name=watcher")) as watcher:
            # a clean close, an abrupt disconnect without closing handshake, a server-side close
            async with websockets.connect(life.url("/ws/life?name=clean")):
                pass
            assert await watcher.recv() == "left clean"
            raw = socket.create_connection(("127.0.0.1", life.port))
            raw.sendall("GET /ws/life?name=abrupt HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n".encode())
            raw.recv(1024)
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            raw.close()  # RST
            assert await watcher.recv() == "left abrupt"
            async with websockets.connect(life.url("/ws/life?name=kicked")) as kicked:
                await kicked.send("slowclose")
                with pytest.raises(ConnectionClosed):
                    await kicked.recv()
            assert await watcher.recv() == "left kicked"
            with pytest.raises(ConnectionClosed) as failed:
                async with websockets.connect(life.url("/ws/life?name=broken&mode=fail-open")) as broken:
                    await broken.recv()
            assert failed.value.rcvd.code == 1011
            assert await watcher.recv() == "left broken"
            await watcher.send("events")
            events = json.loads(await watcher.recv())
        closes = [e for e in events if e[0] == "close"]
        # during on_close the session is still a member (2 = itself + watcher); exactly one each
        assert closes == [["close", name, 2] for name in ("clean", "abrupt", "kicked", "broken")]
    run(main())
    life.wait_log(r"RuntimeError: open failed")


def test_send_and_broadcast_from_another_thread(life):
    async def main():
        async with websockets.connect(life.url("/ws/life?name=a")) as a, \
                websockets.connect(life.url("/ws/life?name=b")) as b:
            await a.send("thread")
            assert [await a.recv() for _ in range(5)] == [f"t{i}" for i in range(5)]
            assert await b.recv() == "from a thread"
    run(main())


def test_helpers_are_per_folder(serve, tmp_path):
    app = write_scripts(tmp_path / "app", {
        "a/_util.py": "NAME = 'a'\n",
        "b/_util.py": "NAME = 'b'\n",
        "a/x.py": "import _util\ndef on_open(session):\n    session.send(_util.NAME)\n",
        "b/y.py": "import _util\ndef on_open(session):\n    session.send(_util.NAME)\n",
    })
    server = serve(app)

    async def main():
        for route, expected in (("/ws/a/x", "a"), ("/ws/b/y", "b")):
            async with websockets.connect(server.url(route)) as ws:
                assert await ws.recv() == expected
    run(main())
