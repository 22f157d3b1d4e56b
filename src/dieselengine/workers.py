"""`--workers N`: N serving processes on one port, each its own cluster node.

Every worker binds its own listening socket with SO_REUSEPORT, so the kernel spreads incoming
connections over them (by a hash of the client's address and port) and no process accepts for
another. They share rooms and counts through the `--cluster` Redis like separate machines would,
which is why `--workers` needs `--cluster`.

The parent only supervises: it forks the workers, restarts one that exits or crashes (with a
backoff, and gives up with exit status 1 when workers keep dying right after starting, e.g. a
script that fails to load or a port in use), and on SIGTERM/SIGINT passes SIGTERM on, waits for
every worker's graceful shutdown (sessions closed with 1001, every `on_close` run) and exits 0.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import socket
import sys
import time
from multiprocessing.connection import wait
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from multiprocessing.process import BaseProcess

    from .settings import Settings

log = logging.getLogger("dieselengine")

#: A worker that dies sooner than this after starting counts as a failed start.
QUICK_EXIT = 2.0
#: Consecutive failed starts after which the parent gives up.
MAX_QUICK_EXITS = 5
#: Restart backoff bounds, in seconds.
RESTART_MIN = 0.1
RESTART_MAX = 5.0


def _worker_main(settings: Settings, index: int) -> None:
    """The body of one worker process (forked): serve until SIGTERM, exit with the server's status."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    if settings.certfile is not None:
        signal.signal(signal.SIGHUP, signal.SIG_IGN)  # not the parent's forwarder; the server reloads TLS on it
    signal.set_wakeup_fd(-1)
    from .node import run
    from .transport import listen_socket

    try:
        sock = listen_socket(settings.host, settings.port, reuse_port=True)
    except OSError as exc:
        log.error("worker %d: cannot listen on %s:%d: %s", index, settings.host, settings.port, exc)
        sys.exit(1)
    log.info("worker %d started (pid %d)", index, os.getpid())
    sys.exit(run(settings, sock))


def run_workers(settings: Settings) -> int:
    """Run `settings.workers` worker processes until SIGTERM/SIGINT; returns the exit status."""
    if settings.port == 0:
        log.error("--workers needs a fixed --port: every worker binds the same one")
        return 2
    context = multiprocessing.get_context("fork")
    wake_read, wake_write = socket.socketpair()
    wake_read.setblocking(False)
    wake_write.setblocking(False)
    stopping = False

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    signal.set_wakeup_fd(wake_write.fileno())

    workers: dict[int, BaseProcess] = {}

    def reload_tls(signum: int, frame: object) -> None:
        for process in workers.values():
            if process.pid is not None:
                os.kill(process.pid, signal.SIGHUP)

    if settings.certfile is not None:
        signal.signal(signal.SIGHUP, reload_tls)
    started: dict[int, float] = {}
    restart_at: dict[int, float] = {}
    quick_exits = 0
    status = 0

    def start(index: int) -> None:
        process = context.Process(target=_worker_main, args=(settings, index), name=f"diesel-worker-{index}")
        process.start()
        workers[index] = process
        started[index] = time.monotonic()

    log.info("starting %d workers on %s:%d", settings.workers, settings.host, settings.port)
    for index in range(settings.workers):
        start(index)
    try:
        while not stopping:
            now = time.monotonic()
            timeout = min([at - now for at in restart_at.values()], default=1.0)
            wait([p.sentinel for p in workers.values()] + [wake_read], timeout=max(0.0, min(timeout, 1.0)))
            try:
                while wake_read.recv(512):
                    pass
            except BlockingIOError:
                pass
            if stopping:
                break
            now = time.monotonic()
            for index, process in list(workers.items()):
                if process.is_alive():
                    continue
                process.join()
                del workers[index]
                quick = now - started[index] < QUICK_EXIT
                quick_exits = quick_exits + 1 if quick else 0
                log.warning("worker %d (pid %s) exited with status %s; restarting it",
                            index, process.pid, _describe(process.exitcode))
                restart_at[index] = now + min(RESTART_MAX, RESTART_MIN * 2 ** quick_exits) if quick else now
            if quick_exits >= MAX_QUICK_EXITS:
                log.error("workers keep exiting right after they start; giving up")
                status = 1
                break
            for index, at in list(restart_at.items()):
                if at <= now:
                    del restart_at[index]
                    start(index)
    finally:
        _stop_all(workers, settings.shutdown_timeout + 5.0)
        signal.set_wakeup_fd(-1)
        wake_read.close()
        wake_write.close()
    log.info("all workers stopped")
    return status


def _stop_all(workers: dict[int, BaseProcess], timeout: float) -> None:
    """SIGTERM every worker (graceful shutdown), wait up to `timeout`, then SIGKILL stragglers."""
    for process in workers.values():
        if process.is_alive() and process.pid is not None:
            os.kill(process.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for index, process in workers.items():
        process.join(max(0.0, deadline - time.monotonic()))
        if process.is_alive():
            log.warning("worker %d (pid %s) did not stop in time; killing it", index, process.pid)
            process.kill()
            process.join()


def _describe(code: int | None) -> str:
    if code is not None and code < 0:
        try:
            return f"{code} ({signal.Signals(-code).name})"
        except ValueError:
            pass
    return str(code)
