"""The command line: --version, check, routing rules, static files, trusted proxies, bad paths."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys

import websockets
from conftest import write_scripts

from dieselengine import __version__


def diesel(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "dieselengine", *args], capture_output=True, text=True, timeout=60)


def test_version_and_help():
    assert diesel("--version").stdout.strip() == f"dieselengine {__version__}"
    help_text = diesel("serve", "--help").stdout
    for option in ("--host", "--port", "--reload", "--static", "--cluster", "--workers", "--max-message-size",
                   "--script-timeout", "--script-memory", "--shutdown-timeout"):
        assert option in help_text


def test_check_reports_python_syntax_error_with_location(tmp_path):
    write_scripts(tmp_path, {"good.py": "def on_message(s, m):\n    s.send(m)\n",
                             "bad.py": "def on_open(session):\n    session.send('x'\n"})
    result = diesel("check", str(tmp_path))
    assert result.returncode == 1
    # located relative to the served folder, as JavaScript errors are
    assert "\nbad.py:2:" in "\n" + result.stderr and "SyntaxError" in result.stderr
    assert str(tmp_path) not in result.stderr
    assert "ok  /ws/good" in result.stdout


def test_check_passes_clean_folder(tmp_path):
    write_scripts(tmp_path, {"a.py": "X = 1\n", "sub/b.py": "def on_open(s):\n    pass\n"})
    result = diesel("check", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "/ws/a" in result.stdout and "/ws/sub/b" in result.stdout


def test_serve_refuses_broken_scripts_and_missing_paths(tmp_path):
    write_scripts(tmp_path, {"bad.py": "raise RuntimeError('at import')\n"})
    result = diesel("serve", str(tmp_path), "--port", "0")
    assert result.returncode == 1 and "RuntimeError: at import" in result.stderr
    result = diesel("serve", str(tmp_path / "missing"), "--port", "0")
    assert result.returncode == 1
    assert result.stderr == f"diesel: error: {tmp_path / 'missing'}: no such file or folder\n"
    result = diesel("serve", str(tmp_path), "--workers", "2")
    assert result.returncode == 2 and "--workers needs --cluster" in result.stderr


ADDR = '''
def on_open(session):
    session.send(session.get_remote_addr())
'''


def test_nested_routes_single_file_static_and_trusted_proxy(serve, tmp_path):
    app = write_scripts(tmp_path / "app", {"games/chess.py": ADDR, "_util/x.py": ADDR, ".hidden/y.py": ADDR})
    static = write_scripts(tmp_path / "www", {"index.html": "<h1>hi</h1>", "js/app.js": "let x = 1;"})
    server = serve(app, "--static", str(static), "--trusted-proxy", "127.0.0.1")
    assert server.http("/") == (200, "<h1>hi</h1>")
    assert server.http("/js/app.js") == (200, "let x = 1;")
    assert server.http("/../../etc/passwd")[0] == 404
    assert server.http("/ws/_util/x")[0] == 404
    assert server.http("/ws/.hidden/y")[0] == 404

    async def main():
        async with websockets.connect(server.url("/ws/games/chess"),
                                      additional_headers={"X-Forwarded-For": "203.0.113.9, 127.0.0.1"}) as ws:
            assert await ws.recv() == "203.0.113.9"

    asyncio.run(asyncio.wait_for(main(), 20))
    single = serve(app / "games" / "chess.py")

    async def direct():
        # one script: /ws/<stem>; and without a trusted proxy the header is ignored
        async with websockets.connect(single.url("/ws/chess"), additional_headers={"X-Forwarded-For": "1.2.3.4"}) as ws:
            assert await ws.recv() == "127.0.0.1"

    asyncio.run(asyncio.wait_for(direct(), 20))
    assert json.loads(single.http("/healthz")[1]) == {"status": "ok"}


def test_beginner_errors_are_one_line_and_exit_1(tmp_path):
    app = write_scripts(tmp_path / "app", {"echo.py": "def on_message(s, m):\n    s.send(m)\n"})
    (tmp_path / "empty").mkdir()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = diesel("serve", str(app), "--port", str(port))
    assert result.returncode == 1
    assert result.stderr == (f"diesel: error: port {port} on 127.0.0.1 is already in use (is another server "
                             "running?); stop it or choose another port with --port\n")
    result = diesel("serve", str(app), "--host", "no-such-host.invalid", "--port", "0")
    assert result.returncode == 1 and result.stderr.count("\n") == 1
    assert result.stderr.startswith("diesel: error: --host no-such-host.invalid: the name does not resolve")
    for command in ("serve", "check"):
        result = diesel(command, str(tmp_path / "empty"))
        assert result.returncode == 1 and result.stderr.count("\n") == 1, (command, result.stderr)
        assert "empty: no handler scripts (.js or .py) to serve" in result.stderr
        result = diesel(command, str(tmp_path / "nowhere"))
        assert result.returncode == 1 and result.stderr == f"diesel: error: {tmp_path / 'nowhere'}: no such file or folder\n"


def test_hooks_named_in_the_other_languages_style_are_warned_about(tmp_path):
    app = write_scripts(tmp_path / "app", {
        "py.py": "def onMessage(session, message):\n    session.send(message)\n",
        "sub/js.js": "export function on_open(session) {}\nexport function onMessage(s, m) {}\n",
        "fine.py": "def on_message(session, message):\n    pass\n\ndef onMessage(x):\n    pass\n",
    })
    result = diesel("check", str(app))
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines() == [
        "WARNING: py.py: onMessage is never called: a Python handler's hook is named on_message",
        "WARNING: sub/js.js: on_open is never called: a JavaScript handler's hook is named onOpen",
    ]


def test_public_folder_is_served_at_the_root_and_holds_no_routes(serve, tmp_path):
    app = write_scripts(tmp_path / "app", {"echo.py": "def on_message(s, m):\n    s.send(m)\n",
                                           "public/index.html": "<h1>app</h1>", "public/app.js": "let x = 1;"})
    result = diesel("check", str(app))
    assert result.returncode == 0 and "/ws/public" not in result.stdout and "ok  /ws/echo" in result.stdout
    server = serve(app)
    assert server.http("/") == (200, "<h1>app</h1>")
    assert server.http("/app.js") == (200, "let x = 1;")
    other = write_scripts(tmp_path / "www", {"index.html": "<h1>other</h1>"})
    server = serve(app, "--static", str(other))   # --static overrides the convention
    assert server.http("/") == (200, "<h1>other</h1>")
    assert server.http("/app.js")[0] == 404
