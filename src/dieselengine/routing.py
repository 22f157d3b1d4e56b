"""Routes: `diesel serve PATH` maps each script to `/ws/<name>`; helpers (`_name`) are not routes."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .runtime import Script, ScriptError, load_script

if TYPE_CHECKING:
    from .hub import Hub

log = logging.getLogger("dieselengine")

SCRIPT_SUFFIXES = (".js", ".py")


@dataclass
class Route:
    """A URL path and the script currently serving it (swapped in place on reload)."""

    path: str
    file: Path
    name: str
    script: Script


def discover(root: Path, public: Path | None = None) -> dict[str, tuple[Path, str]]:
    """URL path -> (file, name) for a script file or every script below a folder.

    `games/chess.js` becomes `/ws/games/chess`; any path part starting with `_` is a helper;
    so is anything under a dot-folder or `__pycache__`; `node_modules` holds packages, never routes.
    The files of `public` (the static folder, if it is inside the served one) are for browsers,
    and tests of the scripts (`test_*.py`, `*_test.py`, `conftest.py`, `*.test.js`, `*.spec.js`)
    are for pytest and the like.
    """
    if root.is_file():
        if root.suffix not in SCRIPT_SUFFIXES:
            raise ScriptError(f"{root}: not a handler script (expected .js or .py)")
        return {f"/ws/{root.stem}": (root, root.name)}
    if not root.is_dir():
        raise ScriptError(f"{root}: no such file or folder")
    found: dict[str, tuple[Path, str]] = {}
    for file in script_files(root):
        relative = file.relative_to(root)
        if any(part.startswith(("_", ".")) for part in relative.parts):
            continue
        if public is not None and file.resolve().is_relative_to(public.resolve()):
            continue
        if is_test(file):
            continue
        route = "/ws/" + relative.with_suffix("").as_posix()
        if route in found:
            raise ScriptError(f"{file}: route {route} is already served by {found[route][0]}")
        found[route] = (file, relative.as_posix())
    return found


def is_test(file: Path) -> bool:
    """A test of the scripts beside them, never a route."""
    name = file.name
    return (name.startswith("test_") and name.endswith(".py") or name.endswith(("_test.py", ".test.js", ".spec.js"))
            or name == "conftest.py")


def script_files(root: Path) -> list[Path]:
    """The .js and .py files below a folder, sorted, without walking into dot-folders or
    `node_modules` (which can hold tens of thousands of files)."""
    found = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if not d.startswith(".") and d != "node_modules"]
        found += [Path(folder, f) for f in files if f.endswith(SCRIPT_SUFFIXES)]
    return sorted(f for f in found if f.is_file())


class Router:
    """The loaded routes of one server."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.routes: dict[str, Route] = {}
        #: Removed routes whose sessions are still closing.
        self.retired: list[Route] = []

    def load(self, root: Path) -> list[str]:
        """Load every script; returns the errors (each located) of those that failed."""
        errors: list[str] = []
        for path, (file, name) in self.discover().items():
            try:
                self.add(path, file, name)
            except ScriptError as exc:
                errors.append(str(exc))
        return errors

    def discover(self) -> dict[str, tuple[Path, str]]:
        """The routes the served path has now (it may have changed since it was loaded)."""
        return discover(self.hub.settings.path, self.hub.settings.public_dir)

    def add(self, path: str, file: Path, name: str) -> Route:
        """Load a script and serve it at `path`; raises ScriptError."""
        route = self.routes[path] = Route(path, file, name, load_script(file, name, self.hub))
        return route

    def remove(self, route: Route) -> None:
        """Stop serving a route (its script was deleted): new handshakes get 404, live sessions are
        closed with 1001 and their onClose runs in the old script, which `collect` then unloads."""
        if self.routes.get(route.path) is route:
            del self.routes[route.path]
        self.retired.append(route)
        for session in [s for s in self.hub.sessions.values() if s.route is route]:
            session.close(1001, "script removed")

    def collect(self) -> None:
        """Unload removed routes' scripts once none of their sessions is left."""
        live = {id(session.route) for session in self.hub.sessions.values()}
        for route in [r for r in self.retired if id(r) not in live]:
            self.retired.remove(route)
            route.script.unload()

    def match(self, path: str) -> Route | None:
        return self.routes.get(path)

    def __iter__(self) -> Iterator[Route]:
        return iter(list(self.routes.values()))

    def replace(self, script: Script) -> None:
        """A script whose call wedged the event loop (the JavaScript watchdog's report): its state
        cannot be trusted, so a fresh copy of its code serves the route from now on, and its
        sessions, whose state was in the old one, are closed with 1011."""
        route = next((r for r in self.routes.values() if r.script is script), None)
        if route is None:
            return
        sessions = [s for s in self.hub.sessions.values() if s.route is route]
        for session in sessions:
            script.release(session)
            session.conn.direct(None, None)
        try:
            route.script = load_script(route.file, route.name, self.hub)
        except Exception as exc:
            log.error("%s could not be loaded afresh, keeping the running version: %s", route.name, exc)
        else:
            script.unload()
        for session in sessions:
            session.close(1011, "script restarted")
        log.error("%s: replaced by a fresh runtime after a call wedged the event loop; %d session(s) closed "
                  "with 1011", route.name, len(sessions))

    def reload(self, route: Route) -> bool:
        """Swap in the script's new code; live sessions keep their state and rooms.

        A script that fails to load leaves the old code running.
        """
        try:
            script = load_script(route.file, route.name, self.hub)
        except ScriptError as exc:
            log.error("reload of %s failed, keeping the running version:\n%s", route.name, exc)
            return False
        except Exception as exc:  # whatever the new version does, the old one keeps serving
            log.error("reload of %s failed, keeping the running version: %s: %s", route.name, type(exc).__name__, exc)
            return False
        old = route.script
        sessions = [s for s in self.hub.sessions.values() if s.route is route]
        script.adopt(old, sessions)
        route.script = script
        old.unload()
        log.info("reloaded %s (%d live sessions)", route.name, len(sessions))
        return True
