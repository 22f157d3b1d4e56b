"""The wire: sockets, the upgrade and WebSocket frames, around a core that knows none of them.

Two implementations of one contract (`_wire.pyi`): `_wire.c`, in C on epoll (Linux; built at
install when a compiler is there), and `portable.py`, in Python on any asyncio loop. `load` picks
one for `--wire`; the core gets from it what it needs of the protocol (the frame encoder and the
close-code rule), and a JavaScript runtime the entry type the wire calls itself.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import select
import socket
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Protocol

from . import frames, portable

CHOICES = ("auto", "c", "asyncio")


class Wire(Protocol):
    """What the server keeps of a running wire: its counters and its housekeeping."""

    bytes_in: int
    bytes_out: int
    messages_in: int
    message_seconds: float
    direct_calls: int
    direct_frames: int
    messages_deflated: int
    messages_inflated: int

    def sweep(self) -> None: ...

    def stop_accepting(self) -> None: ...

    def load_tls(self, certfile: str, keyfile: str) -> None: ...


#: open(sock, on_head, on_message, on_finish, on_lost, on_failed, outbox, loop, log,
#:      max_message_size, max_head_size, handshake_timeout, close_timeout, compression=False, *,
#:      send_queue_size, max_buffered) -> a serving Wire.
Opener = Callable[..., Wire]


@dataclass(frozen=True)
class WireKind:
    """One implementation of the wire."""

    name: str
    open: Opener
    Entry: type
    frame: Callable[[str | bytes], bytes]
    valid_close_code: Callable[[int], bool]
    request_head: Callable[..., tuple[bytes | None, str, str, bytes, bytes | tuple[int, str]]]
    #: permessage-deflate can be negotiated (the C wire needs zlib's headers at build).
    compresses: bool = True


class WireUnavailable(Exception):
    """The wire asked for cannot run here; the message says why in one line."""


def _open_portable(sock: socket.socket, *args: Any, **options: Any) -> Wire:
    return portable.Wire(sock, *args, **options)


PORTABLE = WireKind("asyncio", _open_portable, portable.Entry, frames.frame, frames.valid_close_code,
                    frames.request_head)


def _c_module(tls: bool = False) -> ModuleType | str:
    """The C wire's module, or why it cannot run here (`tls`: serving TLS)."""
    if not hasattr(select, "epoll"):
        return "the C wire needs epoll (Linux)"
    if importlib.util.find_spec(f"{__name__}._wire") is None:
        return "the C wire was not built at install (it needs a C compiler then)"
    try:
        from . import _wire
    except ImportError as exc:
        return f"the C wire does not load: {exc}"
    if tls and not getattr(_wire, "TLS", False):
        return ("the C wire was built without TLS (OpenSSL's headers were missing at install: install libssl-dev "
                "and reinstall)")
    return _wire


def _c_kind(module: ModuleType) -> WireKind:
    def open_c(sock: socket.socket, on_head: Callable[..., None], on_message: Callable[..., None],
               on_finish: Callable[..., None], on_lost: Callable[..., None], on_failed: Callable[..., None],
               outbox: Any, loop: asyncio.AbstractEventLoop, log: logging.Logger, *limits: Any,
               **options: Any) -> Wire:
        wire = module.Wire(sock.fileno(), on_head, on_message, on_finish, on_lost, on_failed, outbox, loop, log,
                           *limits, **options)
        loop.add_reader(wire.fileno(), wire.poll)
        return wire  # type: ignore[no-any-return]

    return WireKind("c", open_c, module.Entry, module.frame, module.valid_close_code, module.request_head,
                    getattr(module, "DEFLATE", False))


def load(choice: str = "auto", tls: bool = False) -> WireKind:
    """The wire for `--wire`: `c`, `asyncio`, or `auto` (the C wire where it is built, with TLS if
    `tls`, and the OS has epoll, else the portable one). Raises WireUnavailable for `c` where it
    cannot run."""
    if choice == "asyncio":
        return PORTABLE
    module = _c_module(tls)
    if isinstance(module, ModuleType):
        return _c_kind(module)
    if choice == "c":
        raise WireUnavailable(f"--wire c: {module}")
    return PORTABLE


def why_not_c(tls: bool = False) -> str | None:
    """Why `auto` fell back to the portable wire, or None where the C wire runs."""
    module = _c_module(tls)
    return module if isinstance(module, str) else None


def c_expected() -> bool:
    """Whether the C wire should run on this OS (it has epoll): where it should but does not, the
    server warns."""
    return hasattr(select, "epoll")
