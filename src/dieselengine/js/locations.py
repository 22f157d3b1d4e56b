"""Error positions. Modules are named by their path in the served folder (`chat.js`,
`node_modules/zod/index.js`), so the engine's stack frames already say file, line and column;
frames of the server's own JavaScript (the prelude, evaluated as `<input>`, and the web APIs, loaded
as bytecode without positions: `<null>`) and of
generated modules (names starting with U+0001) are dropped."""

from __future__ import annotations

import re

#: A frame position: (name):line:column, the name being anything up to the position.
_POSITION = re.compile(r"([^\s()]+):(\d+):(\d+)")
_FRAME = re.compile(r"^\s+at ")


class JsError(Exception):
    """An error thrown by a script; the message is already located (file:line:column, stack)."""


def _ours(name: str) -> bool:
    return name in ("<input>", "<null>") or name.startswith("\x01")


def locate(text: str) -> str:
    """The engine's error text without the server's own frames."""
    out = []
    for row in text.rstrip("\n").split("\n"):
        if _FRAME.match(row):
            match = _POSITION.search(row)
            if match is None or _ours(match.group(1)) or "\x01" in row:
                continue
        out.append(row.replace("\x01", ""))
    return "\n".join(out)


def first_location(text: str) -> tuple[str, int, int] | None:
    """(module name, line, column) of the first position in a script's file."""
    for match in _POSITION.finditer(text):
        if not _ours(match.group(1)):
            return match.group(1), int(match.group(2)), int(match.group(3))
    return None
