"""`diesel serve --reload` with JavaScript: new code, same connections, attributes and rooms."""

from __future__ import annotations

import asyncio
import json

import websockets
from conftest import write_scripts

V1 = r'''
let ticks = 0;
setInterval(() => { ticks += 1; if (ticks % 5 === 0) console.log("v1 tick"); }, 5);

export function onOpen(session) {
  session.setAttribute("name", session.getParameter("name"));
  session.setAttribute("profile", { langs: ["js", "py"], n: 1 });
  session.setAttribute("callback", () => 1);   // not JSON: dropped on reload, with a warning
  session.room("lobby").join();
  session.send("v1 open");
}

export function onMessage(session, message) {
  session.send("v1 " + message);
}
'''

V2 = r'''
let calls = 0;
export function onMessage(session, message) {
  calls += 1;
  session.room("lobby").broadcast(JSON.stringify({
    v: 2, calls, msg: message, name: session.getAttribute("name"),
    profile: session.getAttribute("profile"), callback: session.getAttribute("callback"),
    members: session.room("lobby").members(), open: session.isOpen(),
  }));
}
'''

BROKEN = r'''
export function onMessage(session, message) {
  session.send("v3 " + message;
}
'''


def test_reload_keeps_connections_attributes_and_rooms(serve, tmp_path):
    folder = write_scripts(tmp_path / "app", {"live.js": V1})
    server = serve(folder, "--reload")

    async def main():
        async with websockets.connect(server.url("/ws/live?name=ann")) as ann, \
                websockets.connect(server.url("/ws/live?name=bob")) as bob:
            assert await ann.recv() == "v1 open"
            assert await bob.recv() == "v1 open"
            await ann.send("hello")
            assert await ann.recv() == "v1 hello"

            write_scripts(folder, {"live.js": V2})
            await asyncio.to_thread(server.wait_log, r"reloaded live\.js \(2 live sessions\)")
            await ann.send("after reload")
            expected = {"v": 2, "calls": 1, "msg": "after reload", "name": "ann",
                        "profile": {"langs": ["js", "py"], "n": 1}, "callback": None, "members": 2, "open": True}
            assert json.loads(await ann.recv()) == expected
            assert json.loads(await bob.recv()) == expected   # bob is still in the room
            # The old version's timers stopped with it.
            await asyncio.sleep(0.2)
            ticks = server.log().count("v1 tick")
            await asyncio.sleep(0.3)
            assert server.log().count("v1 tick") == ticks

            write_scripts(folder, {"live.js": BROKEN})
            await asyncio.to_thread(server.wait_log, r"reload of live\.js failed, keeping the running version:\n"
                                                     r".*live\.js:2:\d+: SyntaxError")
            await bob.send("still v2")
            reply = json.loads(await ann.recv())
            assert reply["v"] == 2 and reply["name"] == "bob" and reply["calls"] == 2

    asyncio.run(asyncio.wait_for(main(), 60))
    assert "reload: attribute \"callback\" of session" in server.log()
