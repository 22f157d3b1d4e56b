"""Error positions: every module is evaluated with its lines shifted into a range of its own (the
engine names every module `<input>`), so a stack frame's line tells its file and line."""

from __future__ import annotations

import re
from dataclasses import dataclass, field


class JsError(Exception):
    """An error thrown by a script; the message is already located (file:line:column, stack)."""


_LOCATION = re.compile(r"<input>:(\d+)(?::(\d+))?")
_FRAME = re.compile(r"^\s+at .*$")


@dataclass
class LineMap:
    """Modules laid out in one line space: module i has lines offset+1 .. offset+lines."""

    ranges: list[tuple[int, int, str]] = field(default_factory=list)

    def where(self, line: int) -> tuple[str, int] | None:
        """(file, line) of a line of the space; None for the prelude (the server's own code)."""
        for offset, lines, file in self.ranges:
            if offset < line <= offset + lines + 1:
                return file, line - offset
        return None

    def locate(self, text: str) -> str:
        """Replace `<input>:line:column` with the script's file name; drop the prelude's frames."""
        out = []
        for row in text.rstrip("\n").split("\n"):
            match = _LOCATION.search(row)
            if match:
                where = self.where(int(match.group(1)))
                if where is None:
                    if _FRAME.match(row):
                        continue
                    where = ("<dieselengine>", int(match.group(1)))
                column = f":{match.group(2)}" if match.group(2) else ""
                row = row[:match.start()] + f"{where[0]}:{where[1]}{column}" + row[match.end():]
            out.append(row)
        return "\n".join(out)

    def first_location(self, text: str) -> str | None:
        for match in _LOCATION.finditer(text):
            where = self.where(int(match.group(1)))
            if where is not None:
                return f"{where[0]}:{where[1]}:{match.group(2) or 1}"
        return None
