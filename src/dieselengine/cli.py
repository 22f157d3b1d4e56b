"""The `diesel` command: `serve`, `check`, `--version`. Parses flags into one Settings object."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from . import __version__
from .settings import Settings

_DEFAULTS = Settings(path=Path("."))


def _size(text: str) -> int:
    """Bytes, with an optional K/M/G suffix (powers of 1024): `1M`, `512K`, `1048576`."""
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
    text = text.strip().lower().removesuffix("ib").removesuffix("b")
    if text and text[-1] in units:
        return int(float(text[:-1]) * units[text[-1]])
    return int(text)


class _HelpFormatter(argparse.HelpFormatter):
    """Shows a default only where there is one worth reading (not None, False or empty)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.default not in (None, False, [], argparse.SUPPRESS) and "%(default)" not in text:
            text += " (default: %(default)s)"
        return text


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="diesel",
        description="dieselengine: a WebSocket application server for JavaScript and Python handler scripts.",
        epilog="Run `diesel serve --help` for the server's options.",
    )
    parser.add_argument("--version", action="version", version=f"dieselengine {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    serve = commands.add_parser(
        "serve", help="serve a script or a folder of scripts",
        description="Serve PATH: one script (route /ws/<stem>) or a folder where every *.js and *.py "
                    "is a route (games/chess.js -> /ws/games/chess); names starting with _ are helpers.",
        formatter_class=_HelpFormatter,
    )
    serve.add_argument("path", type=Path, metavar="PATH", help="a .js/.py script or a folder of them")
    net = serve.add_argument_group("network")
    net.add_argument("--host", default=_DEFAULTS.host, help="address to listen on")
    net.add_argument("--port", type=int, default=_DEFAULTS.port, help="port to listen on")
    net.add_argument("--static", dest="static_dir", type=Path, metavar="DIR",
                     help="also serve the files of DIR over plain HTTP (e.g. a browser client)")
    net.add_argument("--trusted-proxy", dest="trusted_proxies", action="append", default=[], metavar="IP",
                     help="believe X-Forwarded-For from this proxy address (repeatable)")
    dev = serve.add_argument_group("development")
    dev.add_argument("--reload", action="store_true", help="swap in changed scripts without dropping connections")
    dev.add_argument("--log-level", default=_DEFAULTS.log_level, choices=["debug", "info", "warning", "error"],
                     help="log records below this level are dropped")
    limits = serve.add_argument_group("limits")
    limits.add_argument("--max-message-size", type=_size, default=_DEFAULTS.max_message_size, metavar="BYTES",
                        help="close a session sending a larger message with 1009 (K/M suffixes allowed)")
    limits.add_argument("--send-queue-size", type=_size, default=_DEFAULTS.send_queue_size, metavar="BYTES",
                        help="close a client that does not read once this much is queued for it (1008)")
    limits.add_argument("--script-timeout", type=float, default=_DEFAULTS.script_timeout, metavar="SECONDS",
                        help="CPU time one JavaScript handler call may use")
    limits.add_argument("--script-memory", type=_size, default=_DEFAULTS.script_memory, metavar="BYTES",
                        help="memory one JavaScript script may use")
    limits.add_argument("--ping-interval", type=float, default=_DEFAULTS.ping_interval, metavar="SECONDS",
                        help="ping a client silent this long; close it if still silent one interval later")
    limits.add_argument("--handshake-timeout", type=float, default=_DEFAULTS.handshake_timeout, metavar="SECONDS",
                        help="drop a connection that has not finished its handshake by then")
    limits.add_argument("--shutdown-timeout", type=float, default=_DEFAULTS.shutdown_timeout, metavar="SECONDS",
                        help="on SIGTERM/SIGINT, how long to wait for clients to answer the 1001 close")
    cluster = serve.add_argument_group("scale-out")
    cluster.add_argument("--cluster", metavar="URL", help="join the cluster of servers using this Redis, "
                         "e.g. redis://127.0.0.1:6379/0")
    cluster.add_argument("--cluster-prefix", default=_DEFAULTS.cluster_prefix, metavar="PREFIX",
                         help="Redis key prefix, so several clusters can share one Redis")
    cluster.add_argument("--workers", type=int, default=_DEFAULTS.workers, metavar="N",
                         help="processes sharing the port (needs --cluster)")

    check = commands.add_parser("check", help="load every script and report errors",
                                description="Load every script of PATH; print errors as file:line:column "
                                            "and exit 1 if there are any.")
    check.add_argument("path", type=Path, metavar="PATH")
    return parser


def _configure_logging(level: str) -> None:
    """One record per line on stderr, written at once (a stack trace follows its line)."""
    logging.basicConfig(stream=sys.stderr, level=level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def _check(path: Path) -> int:
    import asyncio

    from .hub import Hub
    from .routing import Router
    from .runtime import ScriptError
    from .stats import Stats

    loop = asyncio.new_event_loop()
    router = Router(Hub(Settings(path=path), loop, Stats()))
    try:
        errors = router.load(path)
    except ScriptError as exc:
        errors = [str(exc)]
    for error in errors:
        print(error, file=sys.stderr)
    for route in router:
        print(f"ok  {route.path}  ({route.name})")
        route.script.unload()
    loop.close()
    return 1 if errors else 0


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    if args.command == "check":
        _configure_logging("warning")
        return _check(args.path)

    options = vars(args)
    options.pop("command")
    options["trusted_proxies"] = frozenset(options["trusted_proxies"])
    settings = Settings(**options)
    if settings.workers > 1 and not settings.cluster:
        parser.error("--workers needs --cluster: workers share rooms through the cluster bus")
    _configure_logging(settings.log_level)
    if settings.workers > 1:
        from .workers import run_workers

        return run_workers(settings)

    import uvloop

    from .server import Server

    return uvloop.run(Server(settings).run())


if __name__ == "__main__":
    sys.exit(main())
