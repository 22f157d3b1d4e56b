"""npm packages in scripts (js/resolve.py, js/modules.py, js/commonjs.js): real packages of every
shape from the npm registry, installed by the test with `npm install`, used through real
connections; and the errors of packages that cannot load."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import websockets

from conftest import write_scripts

#: Popular packages of different shapes: ESM-only (nanoid, valibot, marked), dual with exports
#: conditions (zod, uuid, immer, date-fns with subpath exports and many files), CommonJS (lodash with
#: hundreds of files reached by path, ms, fast-deep-equal, dayjs with a plugin by subpath), and yup
#: (ESM with CommonJS dependencies).
PACKAGES = {
    "zod": "3.23.8", "nanoid": "5.0.9", "date-fns": "4.1.0", "lodash": "4.17.21", "uuid": "11.0.3",
    "ms": "2.1.3", "dayjs": "1.11.13", "immer": "10.1.1", "fast-deep-equal": "3.1.3", "marked": "15.0.4",
    "valibot": "1.0.0", "yup": "1.6.1",
}

SCRIPT = r'''
import { z } from "zod";
import { nanoid } from "nanoid";
import { format } from "date-fns/format";
import { addDays } from "date-fns";
import chunk from "lodash/chunk";
import _ from "lodash";
import { v4 as uuidv4, validate } from "uuid";
import ms from "ms";
import dayjs from "dayjs";
import utc from "dayjs/plugin/utc";
import { produce } from "immer";
import equal from "fast-deep-equal";
import { marked } from "marked";
import * as v from "valibot";
import * as yup from "yup";

dayjs.extend(utc);
const User = z.object({ name: z.string().min(2), age: z.number().int() });
const Text = v.object({ text: v.pipe(v.string(), v.minLength(1)) });
const Email = yup.object({ email: yup.string().email().required() });

export async function onMessage(session, message) {
  session.send(JSON.stringify({
    zod: [User.safeParse({ name: "Al", age: 3 }).success, User.safeParse({ name: "A", age: 1.5 }).error.issues.length],
    nanoid: [nanoid().length, nanoid() !== nanoid()],
    dateFns: format(addDays(new Date(2024, 0, 30), 3), "yyyy-MM-dd"),
    lodash: [chunk([1, 2, 3, 4, 5], 2), _.uniq([1, 1, 2]), typeof _.debounce],
    uuid: validate(uuidv4()),
    ms: [ms("2 days"), ms(60000)],
    dayjs: dayjs.utc("2024-01-02T03:04:05Z").add(1, "day").format("YYYY-MM-DD HH:mm"),
    immer: produce({ a: [1] }, (draft) => { draft.a.push(2); }),
    equal: [equal({ a: [1, { b: 2 }] }, { a: [1, { b: 2 }] }), equal({ a: 1 }, { a: 2 })],
    marked: marked.parse("# Hi *there*").trim(),
    valibot: [v.safeParse(Text, { text: "x" }).success, v.safeParse(Text, { text: "" }).success],
    yup: [await Email.isValid({ email: "a@b.co" }), await Email.isValid({ email: "nope" })],
  }));
}
'''


def npm_install(folder: Path, packages: dict[str, str]) -> None:
    """`npm install` into folder, with a cache that outlives the test run (CI stays fast)."""
    npm = shutil.which("npm")
    if npm is None:
        pytest.skip("npm is not installed (.ci/run installs it)")
    cache = Path(os.environ.get("DIESEL_NPM_CACHE", Path.home() / ".cache" / "dieselengine-tests" / "npm"))
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "package.json").write_text(json.dumps({"name": "app", "private": True, "dependencies": packages}))
    subprocess.run([npm, "install", "--no-audit", "--no-fund", "--ignore-scripts", "--prefer-offline",
                    "--cache", str(cache)], cwd=folder, check=True, capture_output=True, timeout=300)


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    folder = tmp_path_factory.mktemp("npm") / "app"
    npm_install(folder, PACKAGES)
    return folder


def test_popular_packages_work(serve, app):
    write_scripts(app, {"main.js": SCRIPT})
    server = serve(app)

    async def main():
        async with websockets.connect(server.url("/ws/main")) as ws:
            await ws.send("go")
            return json.loads(await asyncio.wait_for(ws.recv(), 20))

    r = asyncio.run(asyncio.wait_for(main(), 30))
    assert r == {
        "zod": [True, 2], "nanoid": [21, True], "dateFns": "2024-02-02",
        "lodash": [[[1, 2], [3, 4], [5]], [1, 2], "function"], "uuid": True, "ms": [172800000, "1m"],
        "dayjs": "2024-01-03 03:04", "immer": {"a": [1, 2]}, "equal": [True, False],
        "marked": "<h1>Hi <em>there</em></h1>", "valibot": [True, False], "yup": [True, False],
    }
    # Nothing in node_modules is a route, however many .js files it holds.
    assert server.http("/healthz")[0] == 200
    assert "node_modules" not in server.log()


def check(folder: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "dieselengine", "check", str(folder)], capture_output=True,
                          text=True, timeout=60)


def test_package_shapes_and_errors(tmp_path, serve):
    """Hand-made packages for what real ones rarely show at once: exports patterns and conditions,
    CommonJS cycles and JSON, a built-in required lazily, and packages that cannot load."""
    folder = write_scripts(tmp_path / "app", {
        "node_modules/shapes/package.json": json.dumps({
            "name": "shapes", "type": "module",
            "exports": {
                ".": {"node": "./node.js", "worker": "./worker.js", "default": "./node.js"},
                "./feature/*": {"import": "./features/*.js", "require": "./features/*.cjs"},
                "./data": "./data.json",
                "./private/*": None,
            },
        }),
        "node_modules/shapes/worker.js": 'export const where = "worker";\nexport * from "./more.js";\n',
        "node_modules/shapes/node.js": 'import fs from "fs";\nexport const where = "node";\n',
        "node_modules/shapes/more.js": "export let count = 0;\nexport const bump = () => ++count;\n",
        "node_modules/shapes/features/a.js": 'export default "feature a (esm)";\n',
        "node_modules/shapes/data.json": '{"answer": 42}',
        "node_modules/cjs/package.json": json.dumps({"name": "cjs", "main": "lib"}),
        "node_modules/cjs/lib/index.js": (
            'const b = require("./b");\nexports.fromB = b.seenA;\nexports.name = "cjs";\n'
            'exports.lazy = () => require("crypto");\nexports.json = require("./data.json").n;\n'),
        "node_modules/cjs/lib/b.js": 'const a = require("./index.js");\nexports.seenA = Object.keys(a).length;\n',
        "node_modules/cjs/lib/data.json": '{"n": 7}',
        "node_modules/@scope/esm/package.json": json.dumps({"name": "@scope/esm", "module": "m.mjs", "main": "c.js"}),
        "node_modules/@scope/esm/m.mjs": 'export default function hello() { return "hello from @scope/esm"; }\n',
        "node_modules/.bin/tool.js": "this is not a route\n",
        ".hidden/x.js": "neither is this\n",
        "main.js": '''
            import { where, bump, count } from "shapes";
            import a from "shapes/feature/a";
            import data from "shapes/data";
            import cjs, { fromB, name, json } from "cjs";
            import hello from "@scope/esm";
            export function onMessage(session) {
              bump();
              let lazy;
              try { cjs.lazy(); } catch (e) { lazy = e.message; }
              session.send(JSON.stringify({ where, count, a, data, fromB, name, json, lazy, hello: hello() }));
            }
        ''',
    })
    server = serve(folder)

    async def main():
        async with websockets.connect(server.url("/ws/main")) as ws:
            await ws.send("go")
            return json.loads(await asyncio.wait_for(ws.recv(), 10))

    r = asyncio.run(asyncio.wait_for(main(), 20))
    assert r["where"] == "worker"  # the worker condition comes before node's default
    assert r["count"] == 1  # a live binding through `export *`
    assert (r["a"], r["data"], r["json"], r["name"]) == ("feature a (esm)", {"answer": 42}, 7, "cjs")
    assert r["fromB"] == 0  # the CommonJS cycle saw the partial exports of index.js, as in Node
    assert r["lazy"] == 'require("crypto") in node_modules/cjs/lib/index.js: is not allowed (use the global crypto (Web Crypto))'
    assert r["hello"] == "hello from @scope/esm"
    assert "/ws/node_modules" not in server.log() and "/ws/.hidden" not in server.log()

    # A package importing a built-in: the error names the package's file and the position.
    write_scripts(tmp_path / "builtin", {
        "node_modules/nodey/package.json": json.dumps({"name": "nodey", "type": "module", "main": "index.js"}),
        "node_modules/nodey/index.js": 'import { readFileSync } from "node:fs";\nexport default 1;\n',
        "main.js": 'import x from "nodey";\nexport function onMessage() {}\n',
    })
    result = check(tmp_path / "builtin")
    where = tmp_path / "builtin" / "node_modules" / "nodey" / "index.js"
    assert result.returncode == 1
    assert f'{where}:1:30: import "node:fs" is not allowed (no file system in the sandbox)' in result.stderr, result

    # A package with a syntax error.
    write_scripts(tmp_path / "broken", {
        "node_modules/broken/package.json": json.dumps({"name": "broken", "exports": "./index.mjs"}),
        "node_modules/broken/index.mjs": "export const a = 1;\nexport const = 2;\n",
        "main.js": 'import { a } from "broken";\nexport function onMessage() {}\n',
    })
    result = check(tmp_path / "broken")
    assert result.returncode == 1
    assert f"{tmp_path / 'broken' / 'node_modules' / 'broken' / 'index.mjs'}:2:" in result.stderr
    assert "SyntaxError" in result.stderr, result

    # Missing packages and subpaths a package does not export.
    for spec, message in (("nothere", "no package 'nothere' in node_modules (npm install nothere in"),
                          ("shapes/private/x", "package 'shapes' does not export './private/x'"),
                          ("shapes/nope", "package 'shapes' does not export './nope'")):
        write_scripts(folder, {"main.js": f'import x from "{spec}";\nexport function onMessage() {{}}\n'})
        result = check(folder)
        assert result.returncode == 1 and f'main.js:1:15: import "{spec}": {message}' in result.stderr, result


def test_readme_chat_validates_and_saves(serve, app):
    """README's full example: a chat validating with zod and saving to a backend with fetch."""
    import re
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    source = re.search(r"```js\n// app/chat.js\n(.*?)```", readme, re.S).group(1)
    saved = []

    class Backend(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_POST(self) -> None:
            saved.append((self.path, json.loads(self.rfile.read(int(self.headers["content-length"])))))
            self.send_response(201 if len(saved) < 3 else 503)
            self.send_header("content-length", "0")
            self.end_headers()

    backend = ThreadingHTTPServer(("127.0.0.1", 0), Backend)
    threading.Thread(target=backend.serve_forever, daemon=True).start()
    origin = f"http://127.0.0.1:{backend.server_address[1]}"
    write_scripts(app, {"chat.js": source.replace("http://127.0.0.1:9000", origin)})
    server = serve(app, "--allow-fetch", origin)

    async def main():
        async with websockets.connect(server.url("/ws/chat?name=ann")) as ann, \
                websockets.connect(server.url("/ws/chat?name=bob")) as bob:
            await ann.send("not json")
            assert json.loads(await ann.recv())["type"] == "error"
            await ann.send(json.dumps({"text": "   "}))
            assert json.loads(await ann.recv())["type"] == "error"
            await ann.send(json.dumps({"text": " hello "}))
            to_ann, to_bob = json.loads(await ann.recv()), json.loads(await bob.recv())
            assert to_ann == to_bob and to_bob["from"] == "ann" and to_bob["text"] == "hello"
            await bob.send(json.dumps({"text": "hi"}))
            assert json.loads(await ann.recv())["text"] == json.loads(await bob.recv())["text"] == "hi"
            await bob.send(json.dumps({"text": "lost"}))  # the backend answers 503 from now on
            assert json.loads(await bob.recv()) == {"type": "error", "error": "not saved, try again"}
            return to_bob

    try:
        first = asyncio.run(asyncio.wait_for(main(), 30))
    finally:
        backend.shutdown()
    assert [path for path, _ in saved] == ["/messages"] * 3
    assert saved[0][1] == {k: first[k] for k in ("id", "from", "text", "at")}
    assert "not saved: the backend answered 503" in server.log()


def test_declarations_type_check(tmp_path):
    """dieselengine.d.ts declares the web APIs: a handler using them compiles with TypeScript's strict
    checks and no lib.dom (the sandbox's globals are those the file declares)."""
    folder = tmp_path / "ts"
    npm_install(folder, {"typescript": "5.7.2"})
    shutil.copy(Path(__file__).resolve().parents[1] / "src" / "dieselengine" / "dieselengine.d.ts", folder)
    (folder / "handler.ts").write_text('''/// <reference path="dieselengine.d.ts" />
import type { WebSocketSession } from "dieselengine";
export async function onMessage(session: WebSocketSession, message: string | Uint8Array) {
  const text = typeof message === "string" ? message : new TextDecoder("utf-8", { fatal: true }).decode(message);
  const url = new URL("/x?y=1", "https://e.com");
  url.searchParams.append("id", crypto.randomUUID());
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text));
  const key = await crypto.subtle.importKey("raw", new Uint8Array(8), { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
  const signature: ArrayBuffer = await crypto.subtle.sign("HMAC", key, digest);
  const reply = await fetch(url, { method: "POST", body: JSON.stringify({ a: 1 }), signal: AbortSignal.timeout(1000) });
  const data: unknown = await reply.json();
  const copy = structuredClone(new Map([[1, 2]]));
  session.send(JSON.stringify({ data, n: copy.size, t: performance.now(), s: signature.byteLength }));
}
const clock = server.room("clock");
setInterval(() => clock.broadcast(new Uint8Array([clock.members()])), 1000);
export const name: string = clock.getName();
const wrong: number = new URL("x").href;
''')
    result = subprocess.run([str(folder / "node_modules" / ".bin" / "tsc"), "--noEmit", "--strict", "--lib", "es2023",
                             "--target", "es2022", "--module", "es2022", "--moduleResolution", "bundler",
                             "handler.ts"], cwd=folder, capture_output=True, text=True, timeout=120)
    # The deliberate mistake on the last line is the only error: the rest type-checks.
    assert result.stdout.count("error TS") == 1, result.stdout
    assert "handler.ts(18,7): error TS2322: Type 'string' is not assignable to type 'number'" in result.stdout
