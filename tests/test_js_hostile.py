"""Hostile scripts (issue 13): a script that attacks the server hurts only itself.

Every attack runs beside an innocent JavaScript route, a Python route and `/healthz`, which must
keep answering while it runs: a new connection's reply within 2 s, `/healthz` within 3 s (bounds
generous enough for a shared machine; a stalled event loop misses them by far).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
from pathlib import Path

import pytest
import websockets
from conftest import write_scripts

INNOCENT = r'''
export function onOpen(session) { session.room("innocent").join(); }
export function onMessage(session, message) {
  session.send("js " + message + " " + session.room("innocent").members());
}
'''

PYTHON = r'''
def on_message(session, message):
    session.send("py " + message)
'''


def app(tmp_path, hostile: str, **more: str):
    return write_scripts(tmp_path / "app", {"innocent.js": INNOCENT, "py.py": PYTHON, "hostile.js": hostile, **more})


async def _healthz(port: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        head = await reader.readline()
        assert head.split()[1] in (b"200", b"503"), head
    finally:
        writer.close()


async def _round_trip(url: str, expected: str) -> None:
    async with websockets.connect(url, open_timeout=None, close_timeout=1) as ws:
        await ws.send("ping")
        reply = await ws.recv()
        assert reply.startswith(expected), reply


def _cpu_seconds(server) -> float:
    """The server process's CPU time so far (user + system)."""
    fields = Path(f"/proc/{server.proc.pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def bystanders(server, seconds: float, until: asyncio.Future | None = None) -> int:
    """Probe the innocent routes for `seconds` (and until `until` is done); returns the rounds made.
    A probe past its bound says how much CPU time the server had meanwhile: a server that used
    little of it was kept waiting by the machine (other processes on its cores), not by a script."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    rounds = 0
    while loop.time() < deadline or (until is not None and not until.done()):
        for what, probe, limit in (
                ("the innocent JS route", lambda: _round_trip(server.url("/ws/innocent"), "js ping"), 2.0),
                ("the Python route", lambda: _round_trip(server.url("/ws/py"), "py ping"), 2.0),
                ("/healthz", lambda: _healthz(server.port), 3.0)):
            cpu = _cpu_seconds(server)
            try:
                await asyncio.wait_for(probe(), limit)
            except asyncio.TimeoutError:
                used = _cpu_seconds(server) - cpu
                raise AssertionError(f"{what} did not answer within {limit} s during the attack (round {rounds}; "
                                     f"the server had {used:.2f} s of CPU time meanwhile)\n"
                                     f"{server.log()[-3000:]}") from None
        rounds += 1
        await asyncio.sleep(0.05)
    assert rounds >= 1
    return rounds


async def attack(server, messages: list[str], seconds: float = 2.0, path: str = "/ws/hostile") -> None:
    """Send each message from a hostile session, probing bystanders while each one runs."""
    async with websockets.connect(server.url(path), open_timeout=None, close_timeout=1) as bad:
        for message in messages:
            await bad.send(message)
            await bystanders(server, seconds)


def run(main, timeout: float = 120) -> None:
    asyncio.run(asyncio.wait_for(main(), timeout))


# ---- item 5: rooms cost O(1) per join and leave, and a session's count is capped ------------------

ROOMS_PY = r'''
def on_message(session, message):
    command, _, n = message.partition(" ")
    if command == "join":
        for i in range(int(n)):
            session.room(f"r{i}").join()
        session.send(f"in {n}")
    elif command == "over":
        try:
            session.room("one-too-many").join()
        except ValueError as exc:
            session.send(f"{type(exc).__name__}: {exc}")
'''


def test_a_python_session_in_50000_rooms_joins_and_leaves_them_without_stalling(serve, tmp_path):
    folder = app(tmp_path, "export function onMessage() {}\n", **{"rooms.py": ROOMS_PY})
    server = serve(folder, "--max-rooms-per-session", "60000")

    async def main():
        ws = await websockets.connect(server.url("/ws/rooms"), open_timeout=None)
        await ws.send("join 50000")
        assert await asyncio.wait_for(ws.recv(), 60) == "in 50000"
        await ws.close()  # leaves 50,000 rooms at once
        await bystanders(server, 1.5)
        _, metrics = server.http("/metrics")
        assert re.search(r"^diesel_rooms 0(\.0)?$", metrics, re.M), metrics  # all 50,000 left

    run(main)


def test_a_python_join_past_the_cap_raises(serve, tmp_path):
    folder = app(tmp_path, "export function onMessage() {}\n", **{"rooms.py": ROOMS_PY})
    server = serve(folder, "--max-rooms-per-session", "3")

    async def main():
        async with websockets.connect(server.url("/ws/rooms")) as ws:
            await ws.send("join 3")
            assert await ws.recv() == "in 3"
            await ws.send("over")
            reply = await ws.recv()
            assert reply.startswith("RoomLimitError: session ") and "already in 3 rooms" in reply, reply
            assert "--max-rooms-per-session" in reply

    run(main)


# ---- item 1: native work the engine does not interrupt stalls only its own route -----------------

NATIVE_HOG = r'''
export function onMessage(session, message) {
  const text = "a".repeat(1e6), pattern = "a".repeat(1e4) + "b";
  if (message === "indexOf") session.send(String(text.indexOf(pattern)));
  else if (message === "includes") session.send(String(text.includes(pattern)));
  else if (message === "split") session.send(String(text.split(pattern).length));
  else if (message === "replaceAll") session.send(String(text.replaceAll(pattern, "").length));
  else if (message === "loop") { for (;;) "a".repeat(1e5).indexOf("a".repeat(100) + "b"); }
  else if (message === "sparse") { const a = []; a[2 ** 30] = 1; a.reverse(); }
  else if (message === "dense") { const a = new Array(4e6).fill(1); for (;;) a.reverse(); }
  else if (message === "small") session.send(String("abcabd".indexOf("abd")) + " " + "a,b".split(",").length);
  else session.send("hostile " + message);
}
'''


def test_native_work_the_engine_does_not_interrupt_stalls_only_its_own_route(serve, tmp_path):
    server = serve(app(tmp_path, NATIVE_HOG), "--script-timeout", "0.25")

    async def main():
        await attack(server, ["indexOf", "includes", "split", "replaceAll", "loop", "sparse", "dense"], 1.0)
        async with websockets.connect(server.url("/ws/hostile")) as ws:
            await ws.send("small")
            assert await ws.recv() == "3 2"  # ordinary searches are untouched

    run(main)
    log = server.log()
    assert log.count("InternalError: interrupted (the call used more than its 0.25 s") == 6, log
    assert "RangeError: Array.prototype.reverse on 1073741825 elements" in log
    assert re.search(r"hostile\.js: uncaught error in the message handler \(session \w+\)\n"
                     r"InternalError: interrupted .*\n(\s+at .*\n)*\s+at onMessage \(hostile\.js:3:", log), log


# ---- item 2: job loops are bounded --------------------------------------------------------------

JOB_LOOPS = r'''
export function onMessage(session, message) {
  if (message === "microtask") {
    const again = () => queueMicrotask(again);
    again();
  } else if (message === "then") {
    const again = () => Promise.resolve().then(again);
    again();
  } else if (message === "await") {
    (async () => { for (;;) await null; })();
  } else if (message === "timer") {
    setTimeout(() => { for (;;) {} }, 1);
  } else if (message === "await-counting") {
    (async () => { let n = 0; for (;;) { n++; await null; } })();
  } else {
    Promise.resolve().then(() => session.send("hostile " + message));
  }
}
'''


@pytest.mark.parametrize("loop", ["microtask", "then", "await", "await-counting"])
def test_a_promise_job_loop_is_stopped_within_the_cpu_limit_and_logged_once(serve, tmp_path, loop):
    server = serve(app(tmp_path, JOB_LOOPS), "--script-timeout", "0.25")

    async def main():
        await attack(server, [loop], 1.5)
        async with websockets.connect(server.url("/ws/hostile")) as ws:  # its promises work again
            await ws.send("after")
            assert await asyncio.wait_for(ws.recv(), 5) == "hostile after"

    run(main)
    # Located at the loop: the call that queues the next job (refused), or the awaiting function's
    # loop (stopped there: not before its frame runs, which has no position).
    where = re.escape({"microtask": "hostile.js:3:40", "then": "hostile.js:6:48", "await": "hostile.js:9:29",
                       "await-counting": "hostile.js:13:42"}[loop])
    server.wait_log(rf"ERROR dieselengine\.script\.hostile\.js: {where}: a chain of promise jobs used more than its "
                    rf"0\.25 s of CPU time \(--script-timeout\) and was stopped\n.*\n\s+at .*\({where}\)")
    assert server.log().count("a chain of promise jobs") == 1, server.log()
    assert server.log().count("ERROR") == 1, server.log()


def test_a_timer_callback_counts_against_the_cpu_limit(serve, tmp_path):
    server = serve(app(tmp_path, JOB_LOOPS), "--script-timeout", "0.25")
    run(lambda: attack(server, ["timer"], 1.0))
    server.wait_log(r"uncaught error in a timer callback\nInternalError: interrupted \(the call used more than its "
                    r"0\.25 s of CPU time: --script-timeout\)\n\s+at <anonymous> \(hostile\.js:11:")


# ---- item 3: the host boundary trusts nothing from the script -----------------------------------

FORGER = r'''
let out = null, handle = null;
// A setter on an index of Array.prototype sees the prelude's outbox (and the session's handle)
// when the outbox has no own element there yet.
Object.defineProperty(Array.prototype, "1", {
  configurable: true,
  set(value) {
    if (out === null) { out = this; handle = value; }
    Object.defineProperty(this, "1", { value, writable: true, enumerable: true, configurable: true });
  },
});

export function onOpen(session) {
  session.send("hello");   // the outbox is captured here
  delete Array.prototype[1];
}

export function onMessage(session, message) {
  if (message === "join-number") {
    out.push(5, handle, 123, 5, handle, 456);
  } else if (message === "toJSON") {
    Array.prototype.toJSON = function () { return [5, handle, 789]; };
    session.room("real").join();
    session.send("joined " + session.room("real").members());
    delete Array.prototype.toJSON;
  } else if (message === "timers") {
    for (let id = 1; id <= 100001; id++) out.push(11, 1000000 + id, 2147483647);
  } else if (message === "close") {
    out.push(4, handle, "not a code", { reason: 1 });
  } else if (message === "bad-op") {
    out.push(99, handle);
  } else if (message === "timer") {
    setTimeout(() => out.push(9, handle, "real", 0), 1);  // a broadcast of "the message", in a timer
  } else {
    session.send("hostile " + message);
  }
}
'''


def test_a_forged_outbox_is_the_script_s_own_error(serve, tmp_path):
    server = serve(app(tmp_path, FORGER))

    async def main():
        async with websockets.connect(server.url("/ws/hostile")) as bad:
            assert await bad.recv() == "hello"
            for message in ("join-number", "toJSON", "timer", "timers", "close", "bad-op"):
                await bad.send(message)
                await bystanders(server, 0.5)
                if message == "toJSON":
                    assert await bad.recv() == "joined 1"
            await bad.send("still there?")
            assert await bad.recv() == "hostile still there?"
        # 50 new connections to the innocent route all open, join and count.
        for _ in range(50):
            await _round_trip(server.url("/ws/innocent"), "js ping 1")

    run(main)
    log = server.log()
    for what in (r"a room name that is not a string: 123", r"more than 100000 timers",
                 r"a close code and reason: \['not a code', \{'reason': 1\}\]", r"an unknown operation: 99"):
        assert re.search(r"ERROR dieselengine: hostile\.js: uncaught error in the message handler \(session \w+\)\n"
                         r"TypeError: the script handed the server " + what, log), (what, log)
    assert re.search(r"ERROR dieselengine\.script\.hostile\.js: TypeError: the script handed the server an "
                     r"operation on the incoming message outside onMessage", log), log
    assert "internal" not in log and "Traceback" not in log, log
    _, metrics = server.http("/metrics")
    assert not re.search(r"\b(123|456|789)\b", "\n".join(line for line in metrics.splitlines()
                                                         if "room" in line)), metrics


# ---- item 4: a script sees only its own rooms ----------------------------------------------------

SPY = r'''
const seen = new Set();
const add = Set.prototype.add, has = Set.prototype.has, mapKeys = Map.prototype.keys;
const names = Object.getOwnPropertyNames;
const call = Function.prototype.call;
function record(x) { if (typeof x === "string") call.call(add, seen, x); }
function harvest(o) {
  try { for (const k of call.call(mapKeys, o)) record(k); } catch (e) {}
  try { for (const k of names(o)) record(k); } catch (e) {}
}
// Every method the prelude could call on its tables, replaced by one that looks inside `this`.
for (const C of [Map, Set, WeakMap, Object, Array, String]) {
  for (const name of names(C.prototype)) {
    const original = Object.getOwnPropertyDescriptor(C.prototype, name).value;
    if (typeof original !== "function" || name === "constructor") continue;
    C.prototype[name] = function (...args) {
      harvest(this);
      for (const a of args) record(a);
      return call.call(original, this, ...args);
    };
  }
}

export function onMessage(session, message) {
  const room = session.room("spy-room");
  room.join();
  room.members();
  session.room("other").members();
  server.room("third").members();
  let found = "";
  for (const name of ["secret-1", "secret-2", "secret-3"]) if (call.call(has, seen, name)) found += name;
  session.send(found === "" ? "nothing" : found);
}
'''

SECRET = r'''
export function onOpen(session) { session.room("secret-" + session.getParameter("n")).join(); }
export function onMessage(session, message) { session.send(String(session.room("secret-" + message).members())); }
'''


def test_a_script_sees_only_its_own_rooms(serve, tmp_path):
    server = serve(app(tmp_path, SPY, **{"secret.js": SECRET}))

    async def main():
        async with websockets.connect(server.url("/ws/secret?n=1")) as one, \
                websockets.connect(server.url("/ws/secret?n=2")) as two:
            await one.send("2")
            assert await one.recv() == "1"  # its own count still reads right
            async with websockets.connect(server.url("/ws/hostile")) as spy:
                for _ in range(3):
                    await spy.send("look")
                    assert await spy.recv() == "nothing"
                    async with websockets.connect(server.url("/ws/secret?n=3")):
                        await two.send("3")
                        assert await two.recv() == "1"
                await bystanders(server, 0.3)

    run(main)


# ---- item 5 in JavaScript: the room cap, and 50,000 rooms joined and left -------------------------

ROOMS_JS = r'''
export function onMessage(session, message) {
  const [command, n] = message.split(" ");
  if (command === "join") {
    for (let i = 0; i < Number(n); i++) session.room("r" + i).join();
    session.send("in " + n);
  } else {
    try {
      session.room("one-too-many").join();
      session.send("joined");
    } catch (e) {
      session.send(String(e));
    }
  }
}
'''


def test_a_js_session_in_50000_rooms_joins_and_leaves_them_without_stalling(serve, tmp_path):
    server = serve(app(tmp_path, ROOMS_JS), "--max-rooms-per-session", "60000")

    async def main():
        ws = await websockets.connect(server.url("/ws/hostile"), open_timeout=None)
        await ws.send("join 50000")
        assert await asyncio.wait_for(ws.recv(), 60) == "in 50000"
        await bystanders(server, 1.0)
        await ws.close()
        await bystanders(server, 1.5)
        _, metrics = server.http("/metrics")
        assert re.search(r"^diesel_rooms 0(\.0)?$", metrics, re.M), metrics

    run(main)


def test_a_js_join_past_the_cap_throws_a_range_error(serve, tmp_path):
    server = serve(app(tmp_path, ROOMS_JS), "--max-rooms-per-session", "3")

    async def main():
        async with websockets.connect(server.url("/ws/hostile")) as ws:
            await ws.send("join 3")
            assert await ws.recv() == "in 3"
            await ws.send("over")
            assert await ws.recv() == ("RangeError: join(): the session is already in 3 rooms, the most a session "
                                       "may join (--max-rooms-per-session)")

    run(main)


# ---- item 6: every error is logged truthfully -----------------------------------------------------

THROWS = r'''
export function onOpen(session) {
  if (session.getParameter("open") === "null") throw null;
  if (session.getParameter("open") === "spin") {
    let n = 0;
    while (true) n++;
  }
}

export function onMessage(session, message) {
  if (message === "symbol") throw Symbol("sym");
  if (message === "proxy") throw new Proxy({}, {});
  if (message === "string") throw "a string";
  if (message === "undefined") return Promise.reject(undefined);
  if (message === "import") return import("fs");
  session.send("hostile " + message);
}

export function onClose(session) {
  if (session.getParameter("close") === "spin") {
    let n = 0;
    while (true) n++;
  }
}
'''


def test_every_thrown_value_is_logged_truthfully(serve, tmp_path):
    server = serve(app(tmp_path, THROWS), "--script-timeout", "0.25")

    async def main():
        for query in ("open=null", "open=spin", "close=spin"):
            async with websockets.connect(server.url("/ws/hostile?" + query)) as ws:
                try:
                    await ws.send("x")
                    await asyncio.wait_for(ws.recv(), 2)
                except websockets.ConnectionClosed:
                    pass
            await bystanders(server, 0.3)
        await attack(server, ["symbol", "proxy", "string", "undefined", "import"], 0.3)

    run(main)
    log = server.log()
    head = r"ERROR dieselengine: hostile\.js: uncaught error in the {} handler \(session \w+\)\n"
    for hook, first in (("open", r"Uncaught null \(thrown as it is, not as an Error"),
                        ("message", r"Uncaught Symbol\(sym\) \(thrown as it is"),
                        ("message", r"Uncaught \{\} \(thrown as it is"),
                        ("message", r'Uncaught "a string" \(thrown as it is'),
                        ("message", r"Uncaught \(in promise\) undefined \(thrown as it is"),
                        ("message", r'TypeError: \S*hostile\.js:\d+:\d+: import "fs" is not allowed'),
                        # at the loop that ran (`n++`), not at the code before it
                        ("open", r"InternalError: interrupted \(the call used more than its 0\.25 s.*\n"
                                 r"\s+at onOpen \(hostile\.js:5:18\)"),
                        ("close", r"InternalError: interrupted \(the call used more than its 0\.25 s.*\n"
                                  r"\s+at onClose \(hostile\.js:21:18\)")):
        assert re.search(head.format(hook) + first, log), (first, log)
    assert "out of memory" not in log and "Failed obtaining" not in log, log


# ---- item 8: the prelude's functions stay out of reach ----------------------------------------------

STACKS = r'''
export function onMessage(session, message) {
  const found = [];
  Error.prepareStackTrace = (error, sites) => {
    for (const site of sites) found.push(typeof site.getFunction === "function" ? site.getFunction() : undefined);
    return "prepared";
  };
  const stack = new Error("look").stack;
  const functions = found.filter((f) => typeof f === "function").map((f) => f.name);
  session.send(JSON.stringify({ stack: typeof stack, prepared: stack === "prepared", functions }));
}
'''


def test_prepare_stack_trace_hands_out_no_function(serve, tmp_path):
    server = serve(app(tmp_path, STACKS))

    async def main():
        async with websockets.connect(server.url("/ws/hostile")) as ws:
            await ws.send("x")
            assert json.loads(await ws.recv()) == {"stack": "string", "prepared": False, "functions": []}
            await bystanders(server, 0.3)

    run(main)


# ---- item 7: reload survives any script ------------------------------------------------------------

GOOD = r'''
export function onMessage(session, message) { session.send("v1 " + message); }
'''

HOSTILE_VERSIONS = {
    "native": 'const n = "a".repeat(1e6).indexOf("a".repeat(1e4) + "b");\nexport function onMessage() {}\n',
    "spin": "for (;;) {}\nexport function onMessage() {}\n",
    "jobs": "for (;;) await null;\nexport function onMessage() {}\n",
    "symbol": 'throw Symbol("top");\n',
    "stack": "Error.prepareStackTrace = (e, sites) => sites;\nfunction f() { return f(); }\nf();\n",
}


def test_reload_survives_any_new_version(serve, tmp_path):
    folder = app(tmp_path, GOOD)
    server = serve(folder, "--reload", "--script-timeout", "0.25")

    async def main():
        async with websockets.connect(server.url("/ws/hostile")) as ws:
            for n, (name, source) in enumerate(HOSTILE_VERSIONS.items(), 1):
                write_scripts(folder, {"hostile.js": f"// {name}\n" + source})
                await asyncio.to_thread(server.wait_log, r"(?s)(reload of hostile\.js failed.*){%d}" % n, 30)
                await bystanders(server, 0.3)
                await ws.send(name)
                assert await ws.recv() == "v1 " + name  # the running version still serves
            write_scripts(folder, {"hostile.js": GOOD.replace("v1", "v2")})  # the watcher is alive
            await asyncio.to_thread(server.wait_log, r"reloaded hostile\.js \(1 live sessions\)", 30)
            await ws.send("after")
            assert await ws.recv() == "v2 after"

    run(main)
    log = server.log()
    assert "Traceback" not in log, log
    assert "InternalError: interrupted" in log and "did not settle" in log and "Uncaught Symbol(top)" in log, log


# ---- item 1, the rest: the watchdog --------------------------------------------------------------

# The prelude reads a generic object's length once, the engine again: this one is 0, then 2^28,
# which the engine's reverse walks in C without checking its interrupt handler (seconds).
WEDGE = r'''
let calls = 0;
export function onOpen(session) { session.send("open " + calls); }
export function onMessage(session, message) {
  calls += 1;
  if (message === "wedge") {
    let reads = 0;
    Array.prototype.reverse.call({ get length() { reads += 1; return reads === 1 ? 0 : 2 ** 28; } });
  }
  session.send("calls " + calls);
}
'''


def test_a_call_past_the_hard_deadline_is_reported_and_its_script_replaced(serve, tmp_path):
    server = serve(app(tmp_path, WEDGE), "--script-timeout", "0.25")

    async def main():
        async with websockets.connect(server.url("/ws/hostile")) as ws, \
                websockets.connect(server.url("/ws/hostile")) as other:
            assert await ws.recv() == "open 0" and await other.recv() == "open 0"
            await ws.send("hello")
            assert await ws.recv() == "calls 1"
            await ws.send("wedge")
            for client in (ws, other):
                with pytest.raises(websockets.ConnectionClosed):
                    while True:  # what the wedged call sent before it returned, then the close
                        await asyncio.wait_for(client.recv(), 120)
                assert client.close_code == 1011
        await bystanders(server, 0.5)
        async with websockets.connect(server.url("/ws/hostile")) as fresh:
            assert await fresh.recv() == "open 0"  # a fresh runtime: its module state is new

    run(main, 240)
    log = server.log()
    assert re.search(r"ERROR dieselengine: watchdog: hostile\.js: a call has held the event loop for \d+\.\d s of "
                     r"CPU time, past its 0\.25 s \(--script-timeout\)", log), log
    assert "hostile.js: replaced by a fresh runtime after a call wedged the event loop; 2 session(s) closed with 1011" \
        in log, log
