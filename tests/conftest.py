"""Test helpers: real `diesel serve` processes on free ports, talked to over real sockets.

Every server started here runs on the wire DIESEL_WIRE names (`auto`, `c` or `asyncio`): servers
read it from the environment they inherit, and .ci/run runs the suite once per wire.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def pytest_report_header() -> str:
    return f"wire: {os.environ.get('DIESEL_WIRE', 'auto')} (DIESEL_WIRE)"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def write_scripts(folder: Path, scripts: dict[str, str]) -> Path:
    """Write {relative path: source} below folder (dedented); returns the folder."""
    for name, source in scripts.items():
        file = folder / name
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_text(textwrap.dedent(source).lstrip())
    return folder


class RunningServer:
    """A `diesel serve` subprocess; its stderr goes to a file the test can read."""

    def __init__(self, proc: subprocess.Popen[bytes], port: int, log_path: Path) -> None:
        self.proc = proc
        self.port = port
        self.log_path = log_path

    def url(self, path: str) -> str:
        return f"ws://127.0.0.1:{self.port}{path}"

    def http(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_log(self, pattern: str, timeout: float = 10.0) -> re.Match[str]:
        """Wait until the server's log matches a regular expression; returns the match."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            match = re.search(pattern, self.log())
            if match:
                return match
            time.sleep(0.05)
        raise AssertionError(f"log never matched {pattern!r}; log was:\n{self.log()}")

    def rss_kib(self) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise AssertionError("no VmRSS")

    def stop(self, signum: int = signal.SIGTERM, timeout: float = 20.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signum)
        return self.proc.wait(timeout)


def start_server(path: Path | str, *args: str, log_path: Path, port: int | None = None,
                 ready: bool = True) -> RunningServer:
    port = port or free_port()
    log = open(log_path, "ab")
    proc = subprocess.Popen(
        [sys.executable, "-m", "dieselengine", "serve", str(path), "--port", str(port), *args],
        stdout=log, stderr=log, cwd=ROOT, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    server = RunningServer(proc, port, log_path)
    if ready:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise AssertionError(f"server exited with {proc.returncode}:\n{server.log()}")
            try:
                if server.http("/healthz")[0] in (200, 503):
                    return server
            except OSError:
                time.sleep(0.05)
        raise AssertionError(f"server never became ready:\n{server.log()}")
    return server


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[..., RunningServer]]:
    """`serve(path, *flags)` starts a server and waits for /healthz; all are killed after the test."""
    servers: list[RunningServer] = []
    counter = iter(range(1000))

    def start(path: Path | str, *args: str, **kwargs: object) -> RunningServer:
        server = start_server(path, *args, log_path=tmp_path / f"server{next(counter)}.log", **kwargs)  # type: ignore[arg-type]
        servers.append(server)
        return server

    yield start
    for server in servers:
        if server.proc.poll() is None:
            server.proc.kill()
            server.proc.wait()
