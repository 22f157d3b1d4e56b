"""One node (a serving process): wires hub, dispatcher, routes, transport, bus, keepalive, reload, shutdown."""

from __future__ import annotations

import asyncio
import gc
import ipaddress
import logging
import signal
import socket
import sys

from .dispatch import Dispatcher
from .door import Door
from .endpoints import Endpoints
from .hub import Hub
from .logs import AccessLog
from .reload import watch
from .routing import Router
from .runtime import ScriptError
from .settings import Settings
from .startup import StartupError, listen, no_scripts
from .stats import Stats
from .transport import Transport
from .wire import WireKind, c_expected, load, why_not_c

log = logging.getLogger("dieselengine")


class Server:
    """One serving process. `run` returns when a SIGTERM/SIGINT shutdown has finished."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        #: Checked by the command line first, which reports an unavailable wire in one line.
        self.wire: WireKind = load(settings.wire, tls=settings.certfile is not None)

    async def run(self, sock: socket.socket | None = None) -> int:
        settings = self.settings
        loop = asyncio.get_running_loop()
        hub = Hub(settings, loop, Stats(), self.wire)
        dispatcher = Dispatcher(hub)
        access_log = AccessLog(loop, settings.log_format == "json") if settings.access_log else None
        try:
            door = Door(settings, dispatcher, access_log)
        except ValueError as exc:
            raise StartupError(str(exc)) from None
        router = Router(hub)
        try:
            errors = router.load(settings.path)
        except ScriptError as exc:
            raise StartupError(str(exc)) from None
        if errors:
            for error in errors:
                log.error("%s", error)
            log.error("not starting: %d script(s) failed to load", len(errors))
            return 1
        if not router.routes:
            raise StartupError(no_scripts(settings.path))
        if settings.cluster:
            from .redis_bus import RedisBus

            hub.bus = RedisBus(settings)
            await hub.bus.start(hub)

        _tune_gc()
        endpoints = Endpoints(settings, router, hub)
        if sock is None:
            sock = listen(settings.host, settings.port)
        transport = Transport(sock, dispatcher, endpoints, settings, self.wire, door)
        if not settings.allowed_origins and not _loopback(settings.host):
            log.warning("serving on %s without --allowed-origin: any web page may open WebSockets to this "
                        "server with its visitors' cookies (cross-site WebSocket hijacking)", settings.host)
        stopping = asyncio.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            try:
                loop.add_signal_handler(signum, stopping.set)
            except NotImplementedError:  # Windows' event loops
                signal.signal(signum, lambda *_: loop.call_soon_threadsafe(stopping.set))
        if transport.tls and hasattr(signal, "SIGHUP"):  # not on Windows
            loop.add_signal_handler(signal.SIGHUP, _reload_tls, transport)
        tasks = [asyncio.create_task(self._keepalive(hub)), asyncio.create_task(self._handshake_deadlines(transport))]
        if settings.reload:
            tasks.append(asyncio.create_task(watch(router)))
        from .js.watchdog import Watchdog  # JavaScript calls that hold the loop (issue 13)

        watchdog = Watchdog(loop, settings.script_timeout + 1.0, router.replace)
        watchdog.start()
        host, port = transport.address()
        log.info("dieselengine serving %d route(s) on %s://%s:%d (wire: %s): %s", len(router.routes),
                 "https" if transport.tls else "http", host, port, self.wire.name, ", ".join(sorted(router.routes)))
        if self.wire.name != "c" and settings.wire == "auto":
            log.log(logging.WARNING if c_expected() else logging.INFO, "on the portable wire: %s",
                    why_not_c(transport.tls))

        await stopping.wait()
        log.info("shutting down: closing %d session(s) with 1001", len(hub.sessions))
        endpoints.serving = False
        transport.stop_accepting()
        for task in tasks:
            task.cancel()
        watchdog.stop()
        for hook in list(door.pending):
            hook.cancel()
        await self._close_sessions(hub, dispatcher)
        if hub.bus is not None:
            await hub.bus.stop()
        for route in router:
            route.script.unload()
        from .js.fetch import close as close_fetches  # JavaScript's fetch() connection pool, if any

        await close_fetches(hub)
        if access_log is not None:
            access_log.flush()
        log.info("stopped")
        return 0

    async def _keepalive(self, hub: Hub) -> None:
        """One sweep for all sessions instead of a timer task per connection (memory per idle
        connection matters at 100k connections)."""
        while True:
            await asyncio.sleep(self.settings.ping_interval)
            for session in list(hub.sessions.values()):
                session.conn.keepalive()

    async def _handshake_deadlines(self, transport: Transport) -> None:
        """One sweep for every connection still in its handshake (and a retry of accepting, if file
        descriptors ran out) rather than a timer per connection."""
        interval = min(1.0, self.settings.handshake_timeout / 4)
        while True:
            await asyncio.sleep(interval)
            transport.wire.sweep()

    async def _close_sessions(self, hub: Hub, dispatcher: Dispatcher) -> None:
        """Close every session with 1001 and let every `on_close` run, all within one deadline
        (--shutdown-timeout): clients that do not answer are dropped, and handler calls still
        running then (an async handler that never settles) are cancelled, so their `on_close`
        runs too."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.shutdown_timeout
        for session in list(hub.sessions.values()):
            session.close(1001, "server shutting down")
        while hub.sessions and loop.time() < deadline:
            await asyncio.sleep(0.02)
        for session in list(hub.sessions.values()):
            session.conn.abort()
        for grace in (max(0.0, deadline - loop.time()), 1.0):
            await asyncio.sleep(0)  # connection_lost callbacks: on_close of idle sessions
            if dispatcher.pending:
                await asyncio.wait(set(dispatcher.pending), timeout=grace)
            for future in list(dispatcher.pending):
                future.cancel()
        await asyncio.sleep(0)
        hub.outbox.flush()


def run(settings: Settings, sock: socket.socket | None = None) -> int:
    """Serve until SIGTERM/SIGINT on uvloop, or where uvloop is not available (Windows) on asyncio's
    selector loop, which the portable wire needs (it watches sockets with add_reader)."""
    try:
        import uvloop
    except ImportError:
        if sys.platform == "win32":
            asyncio.set_event_loop_policy(asyncio.WindowsSelectorEventLoopPolicy())  # type: ignore[attr-defined]
        return asyncio.run(Server(settings).run(sock))
    return uvloop.run(Server(settings).run(sock))


def _reload_tls(transport: Transport) -> None:
    """SIGHUP: a renewed certificate is served to new connections; none is dropped. A file that
    cannot be used is logged and the certificate already loaded stays."""
    try:
        transport.load_tls()
    except ValueError as exc:
        log.error("SIGHUP: TLS certificate not reloaded, still serving the previous one: %s", exc)
    else:
        log.info("SIGHUP: TLS certificate reloaded")


def _loopback(host: str) -> bool:
    """Whether only this machine can reach `host` (a name is resolved: `localhost`)."""
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, None)}
    except OSError:
        return False
    return bool(addresses) and all(ipaddress.ip_address(address.split("%")[0]).is_loopback for address in addresses)


def _tune_gc() -> None:
    """Run the cyclic collector less often: every connection allocates a few dozen container
    objects, and with the default threshold (700) collections took 13 % of a handshake burst.
    What exists at start-up (modules, scripts) is frozen out of every later collection."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)
