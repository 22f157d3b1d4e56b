"""The inspector (/_diesel/inspect): off by default; behind --inspect TOKEN or --api-key; its data
(rooms, sessions with attributes and their messages and bytes each way, totals, recent errors) and
actions (close, broadcast); and the page in a real Chromium showing a session and closing it."""

from __future__ import annotations

import asyncio
import json
import urllib.request

import pytest
import websockets
from websockets.sync.client import connect
from browser import browser  # noqa: F401  (the fixture)
from conftest import write_scripts

SCRIPTS = {
    "py.py": """
        def on_open(session):
            session.set_attribute("user", session.get_parameter("user"))
            session.room("lobby").join()

        def on_message(session, message):
            raise RuntimeError("inspect me")
        """,
    "js.js": """
        export function onOpen(session) {
          session.setAttribute("profile", { name: session.getParameter("user"), langs: ["js"] });
          session.room("lobby").join();
          session.room("js-only").join();
        }
        """,
}


#: For the counts: an echo (on the C wire, JavaScript's direct path: the wire writes the echo
#: itself) and a room whose every message goes to all its members, the sender included.
COUNTED = {
    "echo.js": """
        export function onOpen(session) { session.setAttribute("name", session.getParameter("name")); }
        export function onMessage(session, message) { session.send(message); }
        """,
    "room.py": """
        def on_open(session):
            session.set_attribute("name", session.get_parameter("name"))
            session.room("all").join()

        def on_message(session, message):
            session.room("all").broadcast(message)
        """,
}


def request(server, path, token=None, method="GET", body=None):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    req = urllib.request.Request(f"http://127.0.0.1:{server.port}{path}", data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def test_inspector_is_off_by_default(serve, tmp_path):
    server = serve(write_scripts(tmp_path, SCRIPTS))
    assert server.http("/_diesel/inspect")[0] == 404
    assert server.http("/_diesel/inspect/state")[0] == 404


def test_inspector_data_and_actions(serve, tmp_path):
    server = serve(write_scripts(tmp_path, SCRIPTS), "--inspect", "s3cret", "--api-key", "k3y")
    status, page = request(server, "/_diesel/inspect")
    assert status == 200 and "dieselengine inspector" in page
    assert request(server, "/_diesel/inspect/state")[0] == 401
    assert request(server, "/_diesel/inspect/state", "nope")[0] == 403

    async def main():
        async with websockets.connect(server.url("/ws/py?user=ann")) as ann, \
                websockets.connect(server.url("/ws/js?user=bob")) as bob:
            await ann.send("x")  # a handler error the page lists
            state = {}
            for _ in range(100):
                status, text = await asyncio.to_thread(request, server, "/_diesel/inspect/state", "s3cret")
                state = json.loads(text)
                if state["errors"] and len(state["sessions"]) == 2:
                    break
                await asyncio.sleep(0.1)
            assert status == 200
            sessions = {s["route"]: s for s in state["sessions"]}
            assert sessions["/ws/py"]["attributes"] == {"user": "ann"}
            assert sessions["/ws/js"]["attributes"] == {"profile": {"name": "bob", "langs": ["js"]}}
            assert sessions["/ws/js"]["rooms"] == ["js-only", "lobby"]
            assert sessions["/ws/py"]["remote_addr"] == "127.0.0.1" and sessions["/ws/py"]["age"] >= 0
            assert {"name": "lobby", "members": 2} in state["rooms"]
            assert state["totals"]["sessions"] == 2 and state["totals"]["messages_in"] >= 1
            assert "inspect me" in state["errors"][-1]["text"]
            # the API key opens it too
            assert (await asyncio.to_thread(request, server, "/_diesel/inspect/state", "k3y"))[0] == 200

            status, _ = await asyncio.to_thread(request, server, "/_diesel/inspect/api/rooms/lobby/broadcast",
                                                "s3cret", "POST", b"hello lobby")
            assert status == 202
            assert await ann.recv() == b"hello lobby" and await bob.recv() == b"hello lobby"
            body = json.dumps({"code": 4000, "reason": "bye"}).encode()
            status, _ = await asyncio.to_thread(request, server, f"/_diesel/inspect/api/sessions/{sessions['/ws/js']['id']}/close",
                                                "s3cret", "POST", body)
            assert status == 202
            with pytest.raises(websockets.ConnectionClosed):
                await bob.recv()
            assert (bob.close_code, bob.close_reason) == (4000, "bye")

    asyncio.run(asyncio.wait_for(main(), 60))


def test_inspector_counts_messages_and_bytes_each_way(serve, tmp_path):
    server = serve(write_scripts(tmp_path, COUNTED), "--inspect", "s3cret", "--ping-interval", "600")

    async def counts(expected_sessions):
        """{name: (messages_in, bytes_in, messages_out, bytes_out)} once every session is listed."""
        for _ in range(100):
            status, text = await asyncio.to_thread(request, server, "/_diesel/inspect/state", "s3cret")
            assert status == 200
            sessions = json.loads(text)["sessions"]
            if len(sessions) == expected_sessions:
                return {s["attributes"]["name"]: (s["messages_in"], s["bytes_in"], s["messages_out"], s["bytes_out"])
                        for s in sessions}
            await asyncio.sleep(0.1)
        raise AssertionError(f"not {expected_sessions} sessions: {sessions}")

    async def main():
        options = {"ping_interval": None, "compression": None}  # no pings or pongs: only the messages count
        async with websockets.connect(server.url("/ws/echo?name=echo"), **options) as echo, \
                websockets.connect(server.url("/ws/room?name=a"), **options) as a, \
                websockets.connect(server.url("/ws/room?name=b"), **options) as b, \
                websockets.connect(server.url("/ws/room?name=c"), **options) as c:
            before = await counts(4)
            for name in before:  # only the 101 has been written
                assert before[name][:3] == (0, 0, 0) and before[name][3] > 100
            for _ in range(3):
                await echo.send("hello")  # 5 bytes in, a 7-byte frame out
                assert await echo.recv() == "hello"
            for _ in range(2):
                await echo.send(b"\x00\x01\x02\x03")  # binary: through the Python side
                assert await echo.recv() == b"\x00\x01\x02\x03"
            await a.send("xy")
            await a.send("z")
            for client in (a, b, c):
                assert [await client.recv(), await client.recv()] == ["xy", "z"]
            status, _ = await asyncio.to_thread(request, server, "/_diesel/inspect/api/rooms/all/broadcast",
                                                "s3cret", "POST", b"hey")
            assert status == 202
            for client in (a, b, c):
                assert await client.recv() == b"hey"
            after = await counts(4)
            grown = {name: tuple(x - y for x, y in zip(after[name], before[name])) for name in after}
            assert grown["echo"] == (5, 3 * 5 + 2 * 4, 5, 3 * 7 + 2 * 6)
            # a broadcast counts once per recipient: three frames to each member, 4 + 3 + 5 bytes
            assert grown["a"] == (2, 3, 3, 12)
            assert grown["b"] == grown["c"] == (0, 0, 3, 12)

    asyncio.run(asyncio.wait_for(main(), 60))


def test_inspector_page_shows_a_session_and_closes_it(browser, serve, tmp_path):  # noqa: F811
    server = serve(write_scripts(tmp_path, SCRIPTS), "--inspect", "s3cret", "--ping-interval", "600")
    # the synchronous client: Playwright's synchronous API owns this thread's event loop
    with connect(server.url("/ws/js?user=carol"), ping_interval=None, compression=None) as carol:
        carol.send("hi")
        page = browser.new_page()
        page.set_default_timeout(20_000)
        page.goto(f"http://127.0.0.1:{server.port}/_diesel/inspect#token=s3cret")
        row = page.locator("#sessions tr", has_text="/ws/js")
        row.wait_for()
        assert "carol" in row.inner_text() and "lobby" in row.inner_text()
        assert "lobby" in page.inner_text("#rooms")
        row.locator("td.in", has_text="1 msg · 2 B").wait_for()
        assert row.locator("td.out").inner_text().startswith("0 msgs · ")
        # a broadcast from the page reaches carol, and her row counts it
        lobby = page.locator("#rooms tr", has_text="lobby")
        lobby.locator("input").fill("hello")
        lobby.locator("button", has_text="Broadcast").click()
        assert carol.recv(timeout=20) in ("hello", b"hello")
        row.locator("td.out", has_text="1 msg · ").wait_for()
        row.locator("button", has_text="Close").click()
        page.wait_for_selector("#sessions .empty")
        with pytest.raises(websockets.ConnectionClosed):
            carol.recv(timeout=20)
        assert (carol.close_code, carol.close_reason) == (1000, "closed from the inspector")
        page.close()
