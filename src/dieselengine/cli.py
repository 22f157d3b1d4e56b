"""The `diesel` command: `serve`, `check`, `init`, `--version`. Flags, environment and diesel.toml make one Settings."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from . import __version__, config, wire
from .logs import configure_logging
from .settings import Settings


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
        epilog=f"Every option can also be set as DIESEL_<NAME> in the environment (DIESEL_MAX_MESSAGE_SIZE=1M) "
               f"or as <name> = value in {config.CONFIG_FILE} in the served folder (max-message-size = \"1M\"); "
               "flags win over the environment, which wins over the file.",
    )
    serve.add_argument("path", type=Path, metavar="PATH", nargs="?", default=Path("."),
                       help="a .js/.py script or a folder of them (default: the current folder)")
    serve.add_argument("--config", type=Path, metavar="FILE",
                       help=f"read options from this TOML file (default: {config.CONFIG_FILE} in the served "
                            f"folder, or ${config.CONFIG_ENV})")
    config.add_arguments(serve)

    init = commands.add_parser("init", help="create a ready project: a script, a page, diesel.toml, a test",
                               description="Create DIR with a chat script, a page that talks to it, "
                                           "diesel.toml and a test of the script using dieselengine.testing.")
    init.add_argument("dir", type=Path, metavar="DIR", help="a new (or empty) folder")

    check = commands.add_parser("check", help="load every script and report errors",
                                description="Load every script of PATH; print errors as file:line:column "
                                            "and exit 1 if there are any.")
    check.add_argument("path", type=Path, metavar="PATH", nargs="?", default=Path("."))
    check.add_argument("--config", type=Path, metavar="FILE", help="read options from this TOML file")
    return parser


def _settings(parser: argparse.ArgumentParser, args: argparse.Namespace) -> Settings:
    """Flags over DIESEL_* environment variables over the config file; a bad value exits 2 in one line."""
    flags = vars(args).copy()
    for name in ("command", "path", "config"):
        flags.pop(name, None)
    try:
        file = config.config_file(args.path, args.config, os.environ)
        return config.load(args.path, flags, os.environ, file,
                           warn=lambda text: print(f"diesel: warning: {text}", file=sys.stderr))
    except config.ConfigError as exc:
        parser.exit(2, f"diesel: error: {exc}\n")


def _check(settings: Settings) -> int:
    import asyncio

    from .hub import Hub
    from .routing import Router
    from .runtime import ScriptError
    from .startup import StartupError, no_scripts
    from .stats import Stats

    loop = asyncio.new_event_loop()
    router = Router(Hub(settings, loop, Stats(), wire.load()))
    try:
        errors = router.load(settings.path)
    except ScriptError as exc:
        raise StartupError(str(exc)) from None
    for error in errors:
        print(error, file=sys.stderr)
    for route in router:
        print(f"ok  {route.path}  ({route.name})")
        route.script.unload()
    loop.close()
    if not errors and not router.routes:
        raise StartupError(no_scripts(settings.path))
    return 1 if errors else 0


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    from .startup import StartupError

    try:
        return _run(parser, args)
    except StartupError as exc:
        print(f"diesel: error: {exc}", file=sys.stderr)
        return 1


def _run(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    if args.command == "init":
        from .init import create

        return create(args.dir)
    if args.command == "check":
        logging.basicConfig(stream=sys.stderr, level="WARNING", format="%(levelname)s: %(message)s")
        return _check(_settings(parser, args))

    settings = _settings(parser, args)
    if (settings.certfile is None) != (settings.keyfile is None):
        parser.error("--certfile and --keyfile go together: TLS needs the certificate and its key")
    for name, file in (("--certfile", settings.certfile), ("--keyfile", settings.keyfile)):
        if file is not None and not file.is_file():
            parser.error(f"{name} {file}: no such file")
    try:
        wire.load(settings.wire, tls=settings.certfile is not None)
    except wire.WireUnavailable as exc:
        parser.exit(2, f"diesel: error: {exc}\n")
    if settings.workers > 1 and not settings.cluster:
        parser.error("--workers needs --cluster: workers share rooms through the cluster bus")
    if settings.api_key is not None and (not settings.api_key.strip() or settings.api_key != settings.api_key.strip()):
        parser.error("--api-key must not be empty nor begin or end with a space")
    if settings.max_buffered < settings.max_message_size:
        parser.error(f"--max-buffered ({settings.max_buffered}) is below --max-message-size "
                     f"({settings.max_message_size}): no message that large could ever be received")
    configure_logging(settings.log_level, settings.log_format)
    if settings.workers > 1:
        from .startup import listen
        from .workers import run_workers

        listen(settings.host, settings.port, reuse_port=True).close()  # a port in use fails here, once
        return run_workers(settings)

    from .node import run

    return run(settings)


if __name__ == "__main__":
    sys.exit(main())
