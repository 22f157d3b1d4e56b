"""Types of the WebSocket wire in C (`_wire.c`)."""

from asyncio import AbstractEventLoop
from collections.abc import Callable
from logging import Logger
from typing import Any

#: Built with OpenSSL: `Wire.load_tls` serves TLS.
TLS: bool
#: Built with zlib: permessage-deflate can be negotiated.
DEFLATE: bool

class Conn:
    """One TCP connection; implements `session.Connection`."""

    def write(self, data: bytes) -> int: ...
    def close(self, code: int, reason: str) -> None: ...
    def pause_reading(self) -> None: ...
    def resume_reading(self) -> None: ...
    def abort(self) -> None: ...
    def keepalive(self) -> None: ...
    def accept(self, response: bytes, session: Any) -> None: ...
    def respond(self, response: bytes, linger: bool = False) -> None: ...
    def read_body(self, size: int, on_body: Callable[[bytes], None]) -> None: ...
    def direct(self, entry: Entry | None, handle: object) -> None: ...

class Entry:
    """A script engine's entry for messages, which the wire calls itself."""

    function: Callable[[object, str, None, int], object] | None
    stale: bool
    entries: int

    def __init__(self, echo: int) -> None: ...

class Wire:
    bytes_in: int
    bytes_out: int
    messages_in: int
    message_seconds: float
    direct_calls: int
    direct_frames: int
    messages_deflated: int
    messages_inflated: int

    def __init__(
        self,
        listener: int,
        on_head: Callable[[Conn, bytes | None, str, str, bytes, str, bytes | tuple[int, str]], None],
        on_message: Callable[[Any, str | bytes], None],
        on_finish: Callable[[Any, str, object, bool], None],
        on_lost: Callable[[Any], None],
        on_failed: Callable[[Any, int, str], None],
        outbox: Any,
        loop: AbstractEventLoop,
        log: Logger,
        max_message_size: int,
        max_head_size: int,
        handshake_timeout: float,
        close_timeout: float,
        compression: bool = False,
    ) -> None: ...
    def load_tls(self, certfile: str, keyfile: str) -> None: ...
    def poll(self) -> None: ...
    def sweep(self) -> None: ...
    def stop_accepting(self) -> None: ...
    def fileno(self) -> int: ...

def frame(message: str | bytes | bytearray | memoryview) -> bytes: ...
def valid_close_code(code: int) -> bool: ...
def request_head(head: bytes, compression: bool = False) -> tuple[bytes | None, str, str, bytes,
                                                                  bytes | tuple[int, str]]: ...
