"""`--reload`: poll the served scripts' modification times and swap changed ones in place.

Polling twice a second needs no extra dependency and is cheap for the handful of files a server
serves. A change to a helper (`_name.js`, `_name.py`) reloads every route of its folder tree.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from .routing import Router, script_files

log = logging.getLogger("dieselengine")


def _snapshot(root: Path) -> dict[Path, float]:
    files = [root] if root.is_file() else script_files(root)
    stamps: dict[Path, float] = {}
    for file in files:
        try:
            stamps[file] = file.stat().st_mtime_ns
        except OSError:
            continue
    return stamps


def _is_helper(file: Path, root: Path) -> bool:
    parts = file.relative_to(root).parts if root.is_dir() else (file.name,)
    return any(part.startswith("_") for part in parts)


async def watch(router: Router, interval: float = 0.5) -> None:
    root = router.hub.settings.path
    seen = _snapshot(root)
    while True:
        await asyncio.sleep(interval)
        now = _snapshot(root)
        changed = {file for file, stamp in now.items() if seen.get(file) != stamp}
        seen = now
        if not changed:
            continue
        helpers_changed = any(_is_helper(file, root) for file in changed)
        for route in router:
            if route.file in changed or helpers_changed:
                try:
                    router.reload(route)
                except Exception as exc:  # the watcher outlives any script (issue 13)
                    log.error("reload of %s failed, keeping the running version: %s: %s", route.name,
                              type(exc).__name__, exc)
