"""ES module semantics of scripts and their helpers (js/modules.py): the engine's own linking."""

from __future__ import annotations

import asyncio
import json

import websockets

from conftest import write_scripts

SCRIPTS = {
    "_counter.js": "export let counter = 0;\nexport function increment() { counter += 1; }\nexport default 'dflt';\n",
    "_reexport.js": ('export { counter as count, increment } from "./_counter.js";\n'
                     'export * from "./_more.js";\nexport * as counterModule from "./_counter.js";\n'),
    "_more.js": "export const more = 'more';\nexport default 'not re-exported by export *';\n",
    # a cycle: each uses the other's function at run time (after both are evaluated)
    "_ping.js": 'import { pong } from "./_pong.js";\nexport const ping = (n) => (n ? pong(n - 1) : "ping");\n',
    "_pong.js": 'import { ping } from "./_ping.js";\nexport const pong = (n) => (n ? ping(n - 1) : "pong");\n',
    "sub/_meta.js": "export const url = import.meta.url;\n",
    "main.js": """
        import { counter, increment } from "./_counter.js";
        import dflt, * as ns from "./_counter.js";
        import { count, increment as inc2, more, counterModule } from "./_reexport.js";
        import * as re from "./_reexport.js";
        import { ping } from "./_ping.js";
        import { url } from "./sub/_meta.js";
        export function onMessage(session) {
          const before = [counter, ns.counter, count];
          increment();
          inc2();
          let assign;
          try { ns.counter = 5; assign = "assigned"; } catch (e) { assign = e.name; }
          session.send(JSON.stringify({
            before, after: [counter, ns.counter, count, counterModule.counter], dflt, more,
            reDefault: "default" in re, nsKeys: Object.keys(ns), tag: ns[Symbol.toStringTag],
            assign, cycle: [ping(3), ping(4)], url, main: import.meta.url,
          }));
        }
    """,
}


def test_module_semantics(serve, tmp_path):
    server = serve(write_scripts(tmp_path / "app", SCRIPTS))

    async def main():
        async with websockets.connect(server.url("/ws/main")) as ws:
            await ws.send("1")
            first = json.loads(await ws.recv())
            await ws.send("2")
            return first, json.loads(await ws.recv())

    first, second = asyncio.run(asyncio.wait_for(main(), 20))
    assert first["before"] == [0, 0, 0]
    assert first["after"] == [2, 2, 2, 2]  # imported bindings are live, through re-exports too
    assert second["before"] == [2, 2, 2] and second["after"] == [4, 4, 4, 4]
    assert first["dflt"] == "dflt" and first["more"] == "more"
    assert first["reDefault"] is False  # export * does not re-export default
    assert first["nsKeys"] == ["counter", "default", "increment"] and first["tag"] == "Module"
    assert first["assign"] == "TypeError"  # a namespace is read-only (modules are strict)
    assert first["cycle"] == ["pong", "ping"]
    assert first["url"] == "file:///sub/_meta.js" and first["main"] == "file:///main.js"
