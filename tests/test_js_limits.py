"""The JavaScript sandbox and its limits: a runaway loop, an allocation hog, deep recursion and an
exception are each logged with the script's file:line:column while every session carries on;
imports other than relative helpers fail; `diesel check` locates syntax errors."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import websockets
from conftest import ROOT, write_scripts

LIMITS = r'''
import { explode } from "./_thrower.js";

function recurse(n) {
  return recurse(n + 1) + 1;
}

export function onMessage(session, message) {
  if (message === "spin") {
    while (true) {}
  } else if (message === "hog") {
    const hog = [];
    for (;;) hog.push(new Array(1000000).fill(hog.length));
  } else if (message === "recurse") {
    recurse(0);
  } else if (message === "throw") {
    explode(message);
  } else {
    session.send("echo " + message);
  }
}
'''

THROWER = r'''
export function explode(why) {
  throw new Error("exploded on " + why);
}
'''


def test_runaway_loop_hog_recursion_and_exceptions_are_contained(serve, tmp_path):
    folder = write_scripts(tmp_path / "app", {"limits.js": LIMITS, "_thrower.js": THROWER})
    server = serve(folder, "--script-timeout", "0.25", "--script-memory", "64M")

    async def main():
        async with websockets.connect(server.url("/ws/limits")) as bad, \
                websockets.connect(server.url("/ws/limits")) as good:
            for trouble in ("spin", "hog", "recurse", "throw"):
                await bad.send(trouble)
                # Another session of the same script is still served, and so is the culprit.
                await good.send(f"after {trouble}")
                assert await good.recv() == f"echo after {trouble}"
                await bad.send("still there?")
                assert await bad.recv() == "echo still there?"

    asyncio.run(asyncio.wait_for(main(), 60))
    server.wait_log(r"limits\.js: uncaught error in the message handler \(session \w+\)\n"
                    r"InternalError: interrupted \(the call used more than its 0\.25 s of CPU time: --script-timeout\)\n"
                    r"\s+at onMessage \(limits\.js:[89]:")
    server.wait_log(r"InternalError: out of memory \(the script reached its memory limit of 64 MiB: --script-memory\)")
    server.wait_log(r"RangeError: Maximum call stack size exceeded \(stack limit 1 MiB\)\n\s+at recurse \(limits\.js:4:")
    server.wait_log(r"Error: exploded on throw\n\s+at explode \(_thrower\.js:2:\d+\)\n\s+at onMessage \(limits\.js:16:\d+\)")
    assert "<input>" not in server.log()


def diesel_check(path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "dieselengine", "check", str(path)],
                          capture_output=True, text=True, cwd=ROOT, timeout=60)


def test_check_reports_js_syntax_errors_with_file_line_column(tmp_path):
    folder = write_scripts(tmp_path / "app", {
        "good.js": "export function onMessage(session, message) { session.send(message); }\n",
        "broken.js": """
            export function onOpen(session) {
              session.send("fine");
            }

            export function onMessage(session, message) {
              const x = ;
            }
        """,
    })
    result = diesel_check(folder)
    assert result.returncode == 1, result
    assert f"{folder / 'broken.js'}:6:13: SyntaxError: unexpected token in expression: ';'" in result.stderr
    assert "ok  /ws/good" in result.stdout

    # A syntax error in a helper is reported in the helper.
    write_scripts(tmp_path / "helper", {
        "main.js": 'import { f } from "./_h.js";\nexport const onMessage = (s, m) => s.send(f(m));\n',
        "_h.js": "export function f(m) {\n  return m +* 2;\n}\n",
    })
    result = diesel_check(tmp_path / "helper")
    assert result.returncode == 1 and f"{tmp_path / 'helper' / '_h.js'}:2:" in result.stderr, result

    # An error thrown while the module loads: located, with its stack.
    write_scripts(tmp_path / "throws", {"main.js": "const x = 1;\nnull.boom;\nexport function onOpen() {}\n"})
    result = diesel_check(tmp_path / "throws")
    assert result.returncode == 1 and f"{tmp_path / 'throws' / 'main.js'}:2:" in result.stderr, result
    assert "TypeError" in result.stderr

    # A hook that is not a function.
    write_scripts(tmp_path / "nofn", {"main.js": "export const onMessage = 42;\n"})
    result = diesel_check(tmp_path / "nofn")
    assert result.returncode == 1 and "onMessage must be a function" in result.stderr, result


def test_sandbox_allows_only_relative_helper_imports(tmp_path):
    for spec in ("fs", "node:fs", "os", "/etc/passwd.js", "../outside.js", "https://example.com/x.js"):
        folder = write_scripts(tmp_path / spec.replace("/", "_").replace(":", "_"), {
            "main.js": f'// a comment\nimport x from "{spec}";\nexport function onMessage(s, m) {{ s.send(m); }}\n',
        })
        (folder.parent / "outside.js").write_text("export default 1;\n")
        result = diesel_check(folder)
        assert result.returncode == 1, result
        assert f"{folder / 'main.js'}:2:15: import \"{spec}\" is not allowed" in result.stderr, result.stderr
    folder = write_scripts(tmp_path / "missing", {"main.js": 'import { a } from "./_nope.js";\n'})
    result = diesel_check(folder)
    assert result.returncode == 1 and "_nope.js\": no such module" in result.stderr, result
    folder = write_scripts(tmp_path / "noexport", {
        "main.js": 'import { nothere } from "./_h.js";\n', "_h.js": "export const here = 1;\n",
    })
    result = diesel_check(folder)
    assert result.returncode == 1 and 'does not provide an export named "nothere"' in result.stderr, result


SNOOP = r'''
export function onMessage(session, message) {
  const found = {};
  for (const name of ["require", "process", "std", "os", "XMLHttpRequest", "WebSocket", "Deno", "Bun",
                      "__diesel_main__", "__diesel_host__", "module", "exports"]) {
    found[name] = typeof globalThis[name];
  }
  const dynamic = (spec) => import(spec).then((m) => "imported " + m.x, (e) => String(e));
  Promise.all([dynamic("./_x.js"), dynamic("fs")]).then(([x, fs]) => {
    session.send(JSON.stringify({ found, x, fs }));
  });
}
'''


def test_no_host_apis_in_the_sandbox(serve, tmp_path):
    import json

    folder = write_scripts(tmp_path / "app", {"snoop.js": SNOOP, "_x.js": "export const x = 1;\n"})
    server = serve(folder)

    async def main():
        async with websockets.connect(server.url("/ws/snoop")) as ws:
            await ws.send("look")
            result = json.loads(await ws.recv())
            assert set(result["found"].values()) == {"undefined"}, result
            assert result["x"] == "imported 1", result  # import() of a helper is the engine's own
            assert 'import "fs" is not allowed (no file system in the sandbox)' in result["fs"], result

    asyncio.run(asyncio.wait_for(main(), 30))
