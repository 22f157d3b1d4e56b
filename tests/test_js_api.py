"""The JavaScript handler API through real sockets: the seed's chat verbatim, every accessor,
attributes, binary frames, rooms shared with Python routes, console, timers, async handlers and
helper imports."""

from __future__ import annotations

import asyncio
import json
import re

import websockets
from conftest import ROOT, write_scripts
from rawws import RawClient, client_frame
from websockets.exceptions import ConnectionClosed


def run(main) -> None:
    asyncio.run(asyncio.wait_for(main(), 30))


async def recv_json(ws) -> dict:
    return json.loads(await ws.recv())


def test_seed_chat_verbatim_three_clients(serve, tmp_path):
    # examples/chat.js is the seed's "Full Example: Chat Room", character for character.
    source = (ROOT / "examples" / "chat.js").read_text()
    assert "export function onOpen(session) {" in source and "session.room(\"chat\").broadcastExcept" in source
    folder = write_scripts(tmp_path / "app", {"chat.js": source})
    server = serve(folder)

    async def main():
        async with websockets.connect(server.url("/ws/chat?user=alice")) as alice:
            welcome = await recv_json(alice)
            assert welcome["type"] == "welcome" and isinstance(welcome["id"], str) and welcome["id"]
            async with websockets.connect(server.url("/ws/chat?user=bob")) as bob:
                bob_welcome = await recv_json(bob)
                assert bob_welcome["type"] == "welcome" and bob_welcome["id"] != welcome["id"]
                assert await recv_json(alice) == {"type": "join", "user": "bob"}
                async with websockets.connect(server.url("/ws/chat")) as anon:
                    assert (await recv_json(anon))["type"] == "welcome"
                    assert await recv_json(alice) == {"type": "join", "user": "anonymous"}
                    assert await recv_json(bob) == {"type": "join", "user": "anonymous"}

                    await bob.send("hello everyone")
                    for client in (alice, anon):
                        message = await recv_json(client)
                        assert message["type"] == "message" and message["from"] == "bob"
                        assert message["text"] == "hello everyone"
                        assert isinstance(message["timestamp"], int) and message["timestamp"] > 1_600_000_000_000
                    await anon.send("hi from nobody")
                    for client in (alice, bob):
                        message = await recv_json(client)
                        assert message["from"] == "anonymous" and message["text"] == "hi from nobody"
                # The sender never gets its own broadcastExcept.
                assert await recv_json(alice) == {"type": "leave", "user": "anonymous"}
                assert await recv_json(bob) == {"type": "leave", "user": "anonymous"}
                await bob.send("last")
                assert (await recv_json(alice))["text"] == "last"
            assert await recv_json(alice) == {"type": "leave", "user": "bob"}

    run(main)


API = r'''
let opened = null;   // module-level state, shared by the script's sessions

export function onOpen(session) {
  const box = { hits: 0 };
  opened = box;
  session.setAttribute("box", box);
  session.setAttribute("user", session.getParameter("user"));
}

export function onMessage(session, message) {
  if (typeof message !== "string") {
    const bytes = Array.from(message);
    session.send(JSON.stringify({ binary: message instanceof Uint8Array, bytes }));
    session.send(new Uint8Array(bytes.slice().reverse()));
    session.send(new Uint8Array([9, 8, 7]).buffer);
    session.send(new DataView(new Uint8Array([1, 2, 3, 4]).buffer, 1, 2));
    return;
  }
  const op = JSON.parse(message);
  if (op.op === "info") {
    const params = {}, headers = {};
    for (const p of op.params) params[p] = session.getParameter(p);
    for (const h of op.headers) headers[h] = session.getHeader(h);
    session.send(JSON.stringify({
      id: session.id, params, headers, path: session.getRequestPath(),
      addr: session.getRemoteAddr(), open: session.isOpen(),
      idType: typeof session.id,
    }));
  } else if (op.op === "attrs") {
    const box = session.getAttribute("box");
    box.hits += 1;
    session.setAttribute("n", 42);
    session.setAttribute("list", [1, "two", { three: 3 }]);
    const all = session.getAttributes();
    session.send(JSON.stringify({
      same: box === session.getAttribute("box") && all.box === box,
      hits: session.getAttribute("box").hits,
      lastOpenedIsMine: opened === box,
      missing: session.getAttribute("nope"),
      plain: Object.getPrototypeOf(all) === Object.prototype,
      keys: Object.keys(all).sort(),
      user: session.getAttribute("user"),
      n: all.n,
    }));
  } else if (op.op === "rooms") {
    const a = session.room("a"), b = session.room("b");
    const seen = [a.members()];
    a.join(); seen.push(a.members());
    a.join(); seen.push(a.members());           // idempotent
    b.join(); seen.push(b.members());
    a.leave(); seen.push(a.members());
    a.leave(); seen.push(a.members());           // idempotent
    session.send(JSON.stringify({ seen, name: b.getName(), other: session.room("a").getName() }));
  } else if (op.op === "count") {
    session.send(JSON.stringify({ members: session.room(op.room).members() }));
  } else if (op.op === "join") {
    session.room(op.room).join();
    session.send(JSON.stringify({ joined: op.room, members: session.room(op.room).members() }));
  } else if (op.op === "broadcast") {
    session.room(op.room).broadcast(op.text);
  } else if (op.op === "except") {
    session.room(op.room).broadcastExcept(op.text);
  } else if (op.op === "text") {
    session.send(op.text);
  } else if (op.op === "close") {
    session.send("bye");
    session.close(op.code, op.reason);
    session.send("never delivered");
  } else if (op.op === "log") {
    console.log("hello from", session.getAttribute("user"), { n: 1 });
    console.warn("careful");
    console.error(new Error("shown with its stack"));
    session.send("logged");
  }
}
'''

PY_ROOM = '''
import json

def on_message(session, message):
    op = json.loads(message)
    room = session.room(op["room"])
    if op["op"] == "join":
        room.join()
        session.send(json.dumps({"joined": op["room"], "members": room.members()}))
    elif op["op"] == "broadcast":
        room.broadcast(op["text"])
'''


def test_accessors_attributes_rooms_binary_close(serve, tmp_path):
    folder = write_scripts(tmp_path / "app", {"api.js": API, "py.py": PY_ROOM})
    server = serve(folder)

    async def main():
        url = server.url("/ws/api?user=alice&x=a%20b+c&x=second&empty=")
        async with websockets.connect(url, additional_headers={"X-Token": "t0k", "X-Two": "2"}) as ws:
            await ws.send(json.dumps({"op": "info", "params": ["user", "x", "empty", "nope"],
                                      "headers": ["x-token", "X-TOKEN", "X-Two", "Host", "Nope"]}))
            info = await recv_json(ws)
            assert info["idType"] == "string" and info["id"]
            assert info["params"] == {"user": "alice", "x": "a b c", "empty": "", "nope": None}
            assert info["headers"]["x-token"] == "t0k" and info["headers"]["X-TOKEN"] == "t0k"
            assert info["headers"]["X-Two"] == "2" and info["headers"]["Nope"] is None
            assert info["headers"]["Host"].startswith("127.0.0.1")
            assert info["path"] == "/ws/api" and info["addr"] == "127.0.0.1" and info["open"] is True

            await ws.send(json.dumps({"op": "attrs"}))
            attrs = await recv_json(ws)
            assert attrs == {"same": True, "hits": 1, "lastOpenedIsMine": True, "missing": None, "plain": True,
                             "keys": ["box", "list", "n", "user"], "user": "alice", "n": 42}
            await ws.send(json.dumps({"op": "attrs"}))
            assert (await recv_json(ws))["hits"] == 2  # the very object, kept in the context

            await ws.send(json.dumps({"op": "rooms"}))
            assert await recv_json(ws) == {"seen": [0, 1, 1, 1, 0, 0], "name": "b", "other": "a"}

            await ws.send(bytes([1, 2, 250]))
            assert await recv_json(ws) == {"binary": True, "bytes": [1, 2, 250]}
            assert await ws.recv() == bytes([250, 2, 1])
            assert await ws.recv() == bytes([9, 8, 7])
            assert await ws.recv() == bytes([2, 3])

            # Text that the engine's C strings cannot carry as is: U+0000, astral characters, long.
            for text in ["a\x00b", "emoji \U0001f600 ok", "\x00", "x" * 70000 + "\U0001f600", "é" * 600]:
                await ws.send(json.dumps({"op": "text", "text": text}))
                assert await ws.recv() == text

            await ws.send(json.dumps({"op": "close", "code": 4001, "reason": "done"}))
            assert await ws.recv() == "bye"
            try:
                extra = await ws.recv()
                raise AssertionError(f"received {extra!r} after close()")
            except ConnectionClosed:
                pass
            assert ws.close_code == 4001 and ws.close_reason == "done"

    run(main)


def test_rooms_shared_between_js_and_python_routes(serve, tmp_path):
    folder = write_scripts(tmp_path / "app", {"api.js": API, "py.py": PY_ROOM})
    server = serve(folder)

    async def main():
        async with websockets.connect(server.url("/ws/api")) as js, websockets.connect(server.url("/ws/py")) as py:
            await js.send(json.dumps({"op": "join", "room": "shared"}))
            assert await recv_json(js) == {"joined": "shared", "members": 1}
            await py.send(json.dumps({"op": "join", "room": "shared"}))
            assert await recv_json(py) == {"joined": "shared", "members": 2}
            # A join by another route shows in members() on the next call.
            await js.send(json.dumps({"op": "count", "room": "shared"}))
            assert await recv_json(js) == {"members": 2}
            await py.send(json.dumps({"op": "broadcast", "room": "shared", "text": "from python"}))
            assert await js.recv() == "from python"
            assert await py.recv() == "from python"
            await js.send(json.dumps({"op": "except", "room": "shared", "text": "from js"}))
            assert await py.recv() == "from js"
            await js.send(json.dumps({"op": "broadcast", "room": "shared", "text": "to all"}))
            assert await js.recv() == "to all"
            assert await py.recv() == "to all"
        # Both gone: a new JS session sees an empty room.
        async with websockets.connect(server.url("/ws/api")) as js:
            for _ in range(50):
                await js.send(json.dumps({"op": "count", "room": "shared"}))
                if (await recv_json(js))["members"] == 0:
                    break
                await asyncio.sleep(0.05)
            else:
                raise AssertionError("members() never dropped to 0")

    run(main)


def test_console_goes_to_the_log_tagged_with_the_script(serve, tmp_path):
    folder = write_scripts(tmp_path / "app", {"api.js": API})
    server = serve(folder)

    async def main():
        async with websockets.connect(server.url("/ws/api?user=zoe")) as ws:
            await ws.send(json.dumps({"op": "log"}))
            assert await ws.recv() == "logged"

    run(main)
    server.wait_log(r"INFO dieselengine\.script\.api\.js: hello from zoe \{\"n\":1\}")
    server.wait_log(r"WARNING dieselengine\.script\.api\.js: careful")
    server.wait_log(r"ERROR dieselengine\.script\.api\.js: Error: shown with its stack\n\s+at onMessage \(api\.js:\d+:\d+\)")


TIMERS = r'''
const log = [];
let ticks = 0;
const started = setInterval(() => { ticks += 1; }, 5);   // module-level timer
clearInterval(started);

export function onMessage(session, message) {
  if (message === "timers") {
    const cancelled = setTimeout(() => session.send("never"), 10);
    clearTimeout(cancelled);
    setTimeout((a, b) => session.send("timeout " + a + b), 20, "x", "y");
    let n = 0;
    const id = setInterval(() => {
      n += 1;
      session.send("interval " + n);
      if (n === 3) { clearInterval(id); setTimeout(() => session.send("after " + ticks), 30); }
    }, 10);
    queueMicrotask(() => session.send("microtask"));
    Promise.resolve().then(() => session.send("then"));
    session.send("sync " + Date.now().toString().length);
  } else if (message === "throwing") {
    setTimeout(() => { throw new Error("timer boom"); }, 1);
    setTimeout(() => session.send("still ticking"), 20);
  }
}
'''


def test_timers_and_microtasks_run_on_the_event_loop(serve, tmp_path):
    folder = write_scripts(tmp_path / "app", {"timers.js": TIMERS})
    server = serve(folder)

    async def main():
        async with websockets.connect(server.url("/ws/timers")) as ws:
            await ws.send("timers")
            got = [await ws.recv() for _ in range(8)]
            assert got[:3] == ["sync 13", "microtask", "then"]
            assert sorted(got[3:]) == sorted(["timeout xy", "interval 1", "interval 2", "interval 3", "after 0"])
            assert got.index("interval 1") < got.index("interval 2") < got.index("interval 3") < got.index("after 0")
            await ws.send("throwing")
            assert await ws.recv() == "still ticking"

    run(main)
    server.wait_log(r"dieselengine\.script\.timers\.js: uncaught error in a timer callback\nError: timer boom\n"
                    r"\s+at <anonymous> \(timers\.js:21:")
    assert "never" not in server.log()


ASYNC = r'''
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

export async function onOpen(session) {
  if (session.getParameter("fail")) { await sleep(5); throw new Error("open failed later"); }
  await sleep(5);
  session.send("opened");
}

export const onMessage = async (session, message) => {
  if (message === "reject") { await sleep(1); throw new TypeError("async boom"); }
  if (message === "sync-reject") throw new RangeError("early boom");
  await sleep(message === "slow" ? 40 : 1);
  session.send("done " + message);
};

export async function onClose(session) {
  await sleep(1);
}
'''


def test_async_handlers_are_awaited_in_order(serve, tmp_path):
    folder = write_scripts(tmp_path / "app", {"async.js": ASYNC})
    server = serve(folder)

    async def main():
        async with websockets.connect(server.url("/ws/async")) as ws:
            assert await ws.recv() == "opened"
            # The slow one finishes first even though the next is quicker: calls never overlap.
            await ws.send("slow")
            await ws.send("quick")
            await ws.send("reject")
            await ws.send("sync-reject")
            await ws.send("after")
            assert [await ws.recv() for _ in range(3)] == ["done slow", "done quick", "done after"]
        async with websockets.connect(server.url("/ws/async?fail=1")) as ws:
            try:
                await ws.recv()
            except ConnectionClosed:
                pass
            assert ws.close_code == 1011

    run(main)
    server.wait_log(r"async\.js: uncaught error in the message handler \(session \w+\)\nTypeError: async boom\n"
                    r"\s+at onMessage \(async\.js:10:")
    server.wait_log(r"RangeError: early boom\n\s+at onMessage \(async\.js:11:")
    server.wait_log(r"uncaught error in the open handler .*\nError: open failed later")


HELPERS = {
    "_util.js": r'''
        import { PREFIX } from "./lib/_consts.js";
        export function fmt(user, text) { return `${PREFIX}${user}: ${text}`; }
        export const VERSION = 3, NAME = "util";
        export default function shout(text) { return text.toUpperCase(); }
        let counter = 0;
        export function next() { return ++counter; }
        export { counter as current };
    ''',
    "lib/_consts.js": r'''
        export const PREFIX = "> ";
        export * from "./_more.js";
    ''',
    "lib/_more.js": r'''
        export const MORE = "more";
    ''',
    "helped.js": r'''
        import shout, { fmt, VERSION as V, next } from "./_util.js";
        import * as util from "./_util.js";
        import { MORE } from "./lib/_consts.js";

        export function onMessage(session, message) {
          session.send(JSON.stringify({
            fmt: fmt("ann", message), shout: shout(message), V, name: util.NAME,
            n: next(), n2: util.next(), current: util.current, more: MORE,
            keys: Object.keys(util).sort(),
          }));
        }
    ''',
}


def test_helper_imports(serve, tmp_path):
    folder = write_scripts(tmp_path / "app", HELPERS)
    server = serve(folder)

    async def main():
        async with websockets.connect(server.url("/ws/helped")) as ws:
            await ws.send("hi")
            assert await recv_json(ws) == {
                "fmt": "> ann: hi", "shout": "HI", "V": 3, "name": "util", "n": 1, "n2": 2, "current": 2,
                "more": "more", "keys": ["NAME", "VERSION", "current", "default", "fmt", "next"],
            }

    run(main)
    # Helpers are not routes.
    assert server.http("/ws/_util")[0] == 404


# Every other snippet of spec/websocket-session.txt, as written there, in handlers.
SNIPPETS = r'''
export function onOpen(session) {
  console.log("Client connected:", session.id);
  const username = session.getParameter("user");
  session.setAttribute("username", username);
  session.send(JSON.stringify({ type: "welcome", id: session.id }));
  session.room("lobby").join();
  const count = session.room("lobby").members();
  session.send(JSON.stringify({ type: "roster", online: count }));
}

export function onMessage(session, message) {
  // ws://host/ws/chat?room=general&user=alice
  const room = session.getParameter("room");   // "general"
  const user = session.getParameter("user");   // "alice"
  const token = session.getHeader("Authorization");
  session.send(JSON.stringify({ room, user, token, path: session.getRequestPath(), open: session.isOpen() }));

  const username = session.getAttribute("username");
  const payload = JSON.stringify({ from: username, text: message });
  session.room("chat").broadcastExcept(payload);

  session.room("lobby").broadcast(JSON.stringify({
    type: "announcement",
    text: "Server maintenance in 5 minutes"
  }));
  session.room("lobby").broadcastExcept(JSON.stringify({
    type: "message",
    from: session.getAttribute("username"),
    text: message
  }));

  const shouldDisconnect = message === "kick";
  if (shouldDisconnect) {
    session.send(JSON.stringify({ type: "kicked", reason: "timeout" }));
    session.close();
  }
  session.room("lobby").leave();
}
'''


def test_seed_snippets(serve, tmp_path):
    folder = write_scripts(tmp_path / "app", {"chat.js": SNIPPETS})
    server = serve(folder)

    async def main():
        url = server.url("/ws/chat?room=general&user=alice")
        async with websockets.connect(url, additional_headers={"Authorization": "Bearer x"}) as ws:
            assert (await recv_json(ws))["type"] == "welcome"
            assert await recv_json(ws) == {"type": "roster", "online": 1}
            await ws.send("hello")
            assert await recv_json(ws) == {"room": "general", "user": "alice", "token": "Bearer x",
                                           "path": "/ws/chat", "open": True}
            assert await recv_json(ws) == {"type": "announcement", "text": "Server maintenance in 5 minutes"}
            await ws.send("kick")
            assert (await recv_json(ws))["token"] == "Bearer x"
            assert await recv_json(ws) == {"type": "kicked", "reason": "timeout"}
            try:
                await ws.recv()
            except ConnectionClosed:
                pass
            assert ws.close_code == 1000

    run(main)
    server.wait_log(r"INFO dieselengine\.script\.chat\.js: Client connected: [0-9a-f]+")


# A hook whose only effect is one join or leave comes back without JSON, and the script's own
# count change is not pushed back into its context: counts must still be right everywhere.
ROOMS = r'''
export function onOpen(session) {
  session.room("r").join();
}

export function onMessage(session, message) {
  const op = JSON.parse(message);
  const room = session.room(op.room ?? "r");
  if (op.op === "join") room.join();
  else if (op.op === "leave") room.leave();
  else if (op.op === "count") session.send(String(room.members()));
  else if (op.op === "say") room.broadcastExcept(op.text);
}
'''


def test_counts_after_single_joins_and_leaves(serve, tmp_path):
    folder = write_scripts(tmp_path / "app", {"a.js": ROOMS, "b.js": ROOMS, "py.py": PY_ROOM})
    server = serve(folder)

    async def op(ws, name, room="r", **extra):
        await ws.send(json.dumps({"op": name, "room": room, **extra}))

    async def count(ws, room="r") -> int:
        await op(ws, "count", room)
        return int(await ws.recv())

    async def main():
        async with websockets.connect(server.url("/ws/a")) as a1, websockets.connect(server.url("/ws/a")) as a2:
            assert await count(a1) == 2 and await count(a2) == 2
            async with websockets.connect(server.url("/ws/b")) as b1, \
                    websockets.connect(server.url("/ws/py")) as py:
                assert await count(b1) == 3
                await op(py, "join")
                assert (await recv_json(py))["members"] == 4
                assert [await count(ws) for ws in (a1, a2, b1)] == [4, 4, 4]
                await op(a2, "leave")
                assert [await count(ws) for ws in (a2, a1, b1)] == [3, 3, 3]
                await op(a2, "join")
                await op(a2, "join")   # idempotent
                assert [await count(ws) for ws in (a2, a1, b1)] == [4, 4, 4]

                # Room names reach the hub unchanged: a U+0000 (fetched again) and a lone surrogate
                # (sent as JSON); the Python route's join lands in the same room.
                for name in ("nul\u0000in", "lone\ud800"):
                    for n, ws in enumerate((a1, a2, b1), 1):
                        await op(ws, "join", name)
                        assert await count(ws, name) == n
                    await op(py, "join", name)
                    assert (await recv_json(py))["members"] == 4
                    await op(a1, "say", name, text="hi " + str(len(name)))
                    for ws in (a2, b1, py):
                        assert await ws.recv() == "hi " + str(len(name))
                    await op(a1, "leave", name)
                    assert [await count(ws, name) for ws in (a1, a2, b1)] == [3, 3, 3]
            # b1 and py are gone: their leaves are pushed into a.js's context.
            for _ in range(50):
                if await count(a1) == 2:
                    break
                await asyncio.sleep(0.05)
            else:
                raise AssertionError("members() never dropped to 2")

    run(main)
    assert "internal" not in server.log()


DEAD_JOIN = r"""
let left = null;
export function onOpen(session) {
  if (session.getParameter("quiet")) return;
  session.room("r").join();
  if (session.getParameter("attr")) session.setAttribute("k", "v");
}
export function onMessage(session, message) {
  if (message === "count") session.send(String(session.room("r").members()));
  else if (message === "dead") session.send(String(left.isOpen()) + " " + left.getAttribute("k"));
}
export function onClose(session) {
  left = session;
  // A timer that outlives the session: its join must not count it back into the room.
  setTimeout(() => session.room("r").join(), 20);
}
"""


def test_a_session_whose_on_close_ran_cannot_join_again(serve, tmp_path):
    """A closed session may still be reachable from module state and timers; joining from there is
    a no-op, in the script's counts as in the server's, and its attributes stay readable."""
    for query in ("", "?attr=1"):
        folder = write_scripts(tmp_path / ("app" + query[1:5]), {"dead.js": DEAD_JOIN})
        server = serve(folder)

        async def main():
            async with websockets.connect(server.url("/ws/dead?quiet=1")) as watcher:
                async with websockets.connect(server.url("/ws/dead" + query)):
                    pass
                await asyncio.sleep(0.3)  # onClose ran, then its timer
                await watcher.send("count")
                assert await watcher.recv() == "0"
                await watcher.send("dead")
                assert await watcher.recv() == ("false v" if query else "false null")

        run(main)
        assert "error" not in server.log().lower()


ROOMS_V1 = r'''
export function onOpen(session) {
  session.room("x").join();
  if (session.getParameter("both")) session.room("y").join();
  session.send("v1");
}
'''

ROOMS_V2 = ROOMS.replace('session.room("r").join();', "")


def test_reload_carries_one_and_several_rooms(serve, tmp_path):
    folder = write_scripts(tmp_path / "app", {"live.js": ROOMS_V1})
    server = serve(folder, "--reload")

    async def op(ws, name, room):
        await ws.send(json.dumps({"op": name, "room": room}))

    async def count(ws, room) -> int:
        await op(ws, "count", room)
        return int(await ws.recv())

    async def main():
        async with websockets.connect(server.url("/ws/live?both=1")) as both, \
                websockets.connect(server.url("/ws/live")) as one:
            assert await both.recv() == "v1" and await one.recv() == "v1"
            write_scripts(folder, {"live.js": ROOMS_V2})
            await asyncio.to_thread(server.wait_log, r"reloaded live\.js \(2 live sessions\)")
            assert await count(one, "x") == 2 and await count(one, "y") == 1
            await op(one, "join", "x")   # already a member: nothing changes
            await op(both, "leave", "y")
            assert await count(both, "y") == 0 and await count(one, "x") == 2
            await op(one, "leave", "x")
            await op(one, "leave", "x")
            assert await count(one, "x") == 1 and await count(both, "x") == 1
            await op(both, "join", "y")
            await op(one, "join", "y")
            assert await count(one, "y") == 2 and await count(both, "y") == 2

    run(main)


ORDER = """
export function onOpen(session) { session.room("r").join(); }
export function onMessage(session, message) {
  if (message.startsWith("all:")) session.room("r").broadcast(message);
  else if (message === "boom") throw new Error("boom in " + session.id);
  else session.send(message);
}
"""


def test_echoes_the_wire_sends_itself_keep_their_order(serve, tmp_path):
    # A plain echo goes from the engine to the socket without Python (_wire.Entry). It must not
    # overtake what is already queued for the tick: here broadcasts from earlier messages of the
    # same read. A throwing handler still reaches the log, and counters include direct calls.
    server = serve(write_scripts(tmp_path / "app", {"order.js": ORDER}))
    sender, member = RawClient(server.port, "/ws/order"), RawClient(server.port, "/ws/order")
    try:
        sequence = [b"e0", b"all:1", b"e1", b"e2", b"all:2", b"boom", b"e3"]
        sender.sock.sendall(b"".join(client_frame(0x1, text) for text in sequence))
        expected = [text for text in sequence if text != b"boom"]
        assert [sender.read_frame()[1] for _ in expected] == expected
        assert [member.read_frame()[1] for _ in range(2)] == [b"all:1", b"all:2"]
        for round_trip in range(50):  # direct echoes, one at a time
            sender.send_frame(0x1, b"again %d" % round_trip)
            assert sender.read_frame() == (0x1, b"again %d" % round_trip)
    finally:
        sender.close()
        member.close()
    server.wait_log(r"order\.js: uncaught error in the message handler \(session \w+\)\nError: boom in \w+\n"
                    r"\s+at onMessage \(order\.js:4:")
    _, metrics = server.http("/metrics")
    calls = float(re.search(r"^diesel_handler_calls_total (\S+)", metrics, re.M).group(1))
    frames = float(re.search(r"^diesel_frames_out_total (\S+)", metrics, re.M).group(1))
    assert calls >= 2 + len(sequence) + 50  # two onOpen, every message
    assert frames >= len(expected) + 2 + 50
