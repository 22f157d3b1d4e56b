"""`diesel init DIR`: a project that checks clean, serves its page and script, and passes its own
test with `python -m pytest` run inside it, as created."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import websockets


def diesel(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "dieselengine", *args], capture_output=True, text=True,
                          timeout=60, cwd=cwd)


def test_init_creates_a_project_that_checks_serves_and_tests(serve, tmp_path):
    project = tmp_path / "myapp"
    result = diesel("init", str(project))
    assert result.returncode == 0, result.stderr
    assert "cd " in result.stdout and "diesel serve" in result.stdout and "python -m pytest" in result.stdout
    assert sorted(p.relative_to(project).as_posix() for p in project.rglob("*") if p.is_file()) == [
        "chat.js", "diesel.toml", "public/index.html", "test_chat.py"]

    result = diesel("check", cwd=project)   # no PATH: the current folder
    assert result.returncode == 0 and result.stderr == "", result.stderr
    assert result.stdout == "ok  /ws/chat  (chat.js)\n"

    tests = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"], cwd=project,
                           capture_output=True, text=True, timeout=120)
    assert tests.returncode == 0 and "1 passed" in tests.stdout, tests.stdout + tests.stderr

    server = serve(project)   # its diesel.toml says port 8080; the fixture's --port wins
    status, page = server.http("/")
    assert status == 200 and "/_diesel/client.js" in page

    async def chat():
        async with websockets.connect(server.url("/ws/chat?name=ann")) as ann:
            assert json.loads(await ann.recv()) == {"type": "joined", "name": "ann", "online": 1}
            await ann.send("hi")
            assert json.loads(await ann.recv())["text"] == "hi"

    asyncio.run(asyncio.wait_for(chat(), 20))

    again = diesel("init", str(project))
    assert again.returncode == 1
    assert again.stderr == f"diesel: error: {project}: already exists and is not an empty folder; " \
                           "`diesel init` only creates new projects\n"
