"""`--reload`: poll the served folder and bring the routes up to date without dropping connections.

Polling twice a second needs no extra dependency and is cheap for the handful of files a server
serves. A changed script is swapped in place; a changed helper (or package file) reloads the
scripts that import it and no other; a new script becomes a route, a deleted one stops being one.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from .routing import Router, script_files
from .runtime import ScriptError

log = logging.getLogger("dieselengine")


def _snapshot(root: Path) -> dict[Path, int]:
    files = [root] if root.is_file() else script_files(root)
    stamps: dict[Path, int] = {}
    for file in files:
        try:
            stamps[file.resolve()] = file.stat().st_mtime_ns
        except OSError:
            continue
    return stamps


def refresh(router: Router, changed: set[Path]) -> None:
    """Bring the routes up to date after `changed` (resolved paths) were created, modified or deleted."""
    found = router.discover()
    for path in [p for p in router.routes if p not in found]:
        route = router.routes[path]
        log.info("removed %s: %s no longer exists", path, route.name)
        router.remove(route)
    for route in router:
        if route.script.sources() & changed:
            try:
                router.reload(route)
            except Exception as exc:  # the watcher outlives any script (issue 13)
                log.error("reload of %s failed, keeping the running version: %s: %s", route.name,
                          type(exc).__name__, exc)
    for path, (file, name) in found.items():
        if path in router.routes or file.resolve() not in changed:
            continue  # a script that failed to load is tried again when it changes again
        try:
            router.add(path, file, name)
        except ScriptError as exc:
            log.error("new script %s failed to load, not serving %s:\n%s", name, path, exc)
            continue
        except Exception as exc:  # as for a reload: the watcher goes on
            log.error("new script %s failed to load, not serving %s: %s: %s", name, path, type(exc).__name__, exc)
            continue
        log.info("added %s (%s)", path, name)
    router.collect()


async def watch(router: Router, interval: float = 0.5) -> None:
    root = router.hub.settings.path
    seen = _snapshot(root)
    while True:
        await asyncio.sleep(interval)
        now = _snapshot(root)
        changed = {file for file in now.keys() | seen.keys() if seen.get(file) != now.get(file)}
        seen = now
        if changed or router.retired:
            refresh(router, changed)
