"""How a server option is declared: one `option(...)` field of `Settings` says everything about it.

The command line, `DIESEL_*` environment variables, `diesel.toml` and the option reference in
docs/ are all derived from these declarations (see config.py), so adding an option is one field.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlsplit

_UNITS = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}


class OutOfRange(ValueError):
    """A value that reads as a number but makes no sense for the option (a negative size)."""


def size(text: str) -> int:
    """Bytes, with an optional K/M/G suffix (powers of 1024): `1M`, `512K`, `1048576`. A limit is at
    least one byte: zero, a negative or an infinite size is an error, never "no limit"."""
    text = text.strip().lower().removesuffix("ib").removesuffix("b")
    unit = 1
    if text and text[-1] in _UNITS:
        text, unit = text[:-1], _UNITS[text[-1]]
    value = float(text) * unit
    if not math.isfinite(value) or value < 1:
        raise OutOfRange("a size must be at least 1 byte")
    return int(value)


def seconds(text: str) -> float:
    """A duration: more than zero and finite."""
    value = float(text)
    if not math.isfinite(value) or value <= 0:
        raise OutOfRange("a duration must be more than 0 seconds")
    return value


def count(text: str) -> int:
    """A number of things, at least one."""
    value = int(text)
    if value < 1:
        raise OutOfRange("must be at least 1")
    return value


def tcp_port(text: str) -> int:
    """A TCP port, 0 (any free port) to 65535."""
    value = int(text)
    if not 0 <= value <= 65535:
        raise OutOfRange("a port is 0-65535")
    return value


def origin(text: str) -> str:
    """An origin, `scheme://host[:port]` (http or https, no path): `https://api.example.com`."""
    parts = urlsplit(text.strip())
    try:
        port = parts.port
    except ValueError:
        port = -1
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.path not in ("", "/") \
            or parts.query or parts.fragment or parts.username or port == -1:
        raise ValueError(f"{text!r} is not an origin (http(s)://host[:port])")
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    default = 443 if parts.scheme == "https" else 80
    return f"{parts.scheme}://{host}" + (f":{port}" if port is not None and port != default else "")


def show_size(value: int) -> str:
    """The shortest exact spelling of a byte count that `size` reads back: 1048576 -> `1M`."""
    for suffix in ("G", "M", "K"):
        unit = _UNITS[suffix.lower()]
        if value and value % unit == 0:
            return f"{value // unit}{suffix}"
    return str(value)


@dataclass(frozen=True)
class Option:
    """What the command line, the environment and the config file need to know of one setting."""

    help: str
    group: str
    #: Turns the text given on the command line (or in the environment) into the value.
    #: None: the type of the default (int, float, str, Path); a bool is a switch.
    parse: Callable[[str], Any] | None = None
    metavar: str | None = None
    #: The long option's name when it is not the field's name with dashes (`static` for static_dir).
    name: str | None = None
    choices: tuple[str, ...] = ()
    #: Given several times (on the command line; a list in the file; commas in the environment).
    repeat: bool = False


def option(default: Any, help: str, *, group: str, parse: Callable[[str], Any] | None = None,
           metavar: str | None = None, name: str | None = None, choices: tuple[str, ...] = (),
           repeat: bool = False) -> Any:
    """A `Settings` field that is also a server option (`--NAME`, `DIESEL_NAME`, `NAME = ...`)."""
    spec = Option(help, group, parse, metavar, name, choices, repeat)
    if repeat:
        return dataclasses.field(default_factory=frozenset, metadata={"option": spec})
    return dataclasses.field(default=default, metadata={"option": spec})


@dataclass(frozen=True)
class Declared:
    """One option as the loaders see it: its spec joined with its field's name and default."""

    name: str
    field: str
    default: Any
    spec: Option

    @property
    def switch(self) -> bool:
        return isinstance(self.default, bool)

    @property
    def env(self) -> str:
        return "DIESEL_" + self.name.upper().replace("-", "_")

    def parse(self, text: str) -> Any:
        """The value of `text` as written on the command line; ValueError if it is not one."""
        if self.switch:
            word = text.strip().lower()
            if word in ("1", "true", "yes", "on"):
                return True
            if word in ("0", "false", "no", "off"):
                return False
            raise ValueError(f"expected true or false, got {text!r}")
        parse = self.spec.parse or (str if self.default is None or self.spec.repeat else type(self.default))
        try:
            value = parse(text)
        except OutOfRange as exc:
            raise ValueError(f"invalid value {text!r}: {exc}") from None
        except (TypeError, ValueError):
            raise ValueError(f"invalid value {text!r}" + (f" (expected {self.spec.metavar})"
                                                          if self.spec.metavar else "")) from None
        if self.spec.choices and value not in self.spec.choices:
            raise ValueError(f"{text!r} is not one of {', '.join(self.spec.choices)}")
        return value

    @property
    def is_path(self) -> bool:
        return self.spec.parse is Path or isinstance(self.default, Path)

    def show(self, value: Any) -> str:
        """The value as one would write it on the command line (sizes with their suffix)."""
        if self.spec.parse is size and isinstance(value, int):
            return show_size(value)
        if isinstance(value, bool):
            return "true" if value else "false"
        return str(value)


def declared(settings_class: type) -> list[Declared]:
    """Every option of a settings dataclass, in declaration order."""
    found = []
    for field in dataclasses.fields(settings_class):
        spec = field.metadata.get("option")
        if spec is None:
            continue
        default = frozenset() if spec.repeat else field.default
        found.append(Declared(spec.name or field.name.replace("_", "-"), field.name, default, spec))
    return found
