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
    def accept(self, response: bytes, session: Any) -> bool:
        """Send the 101 (frames go to session from now on); False if the connection had gone (or
        been answered) already, so no session must be opened."""
    def hold(self) -> float:
        """The request head's answer comes later (an async upgrade hook): stop reading and stop
        timing the handshake; returns the seconds left until its deadline, within which the
        holder must `accept` or `respond`."""
    def summary(self) -> tuple[int, int, int, int, float, int, str | None]:
        """(messages_in, bytes_in, messages_out, bytes_out, seconds, close_code, closed_by) since
        the 101: payload bytes in, bytes written out, seconds open (until the socket closed), the
        first close frame's code (0: none) and who sent it ("server", "client" or None)."""
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
    buffered: int

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
        message_rate: float = 0.0,
        message_burst: float = 0.0,
        *,
        send_queue_size: int = ...,
        max_buffered: int = ...,
    ) -> None:
        """message_rate > 0: a session sending more than message_burst messages at once, or more
        than message_rate a second beyond that, is closed with 1008 "message rate exceeded"."""
    def load_tls(self, certfile: str, keyfile: str) -> None: ...
    def poll(self) -> None: ...
    def sweep(self) -> None: ...
    def stop_accepting(self) -> None: ...
    def fileno(self) -> int: ...

def frame(message: str | bytes | bytearray | memoryview) -> bytes: ...
def valid_close_code(code: int) -> bool: ...
def request_head(head: bytes, compression: bool = False) -> tuple[bytes | None, str, str, bytes,
                                                                  bytes | tuple[int, str]]: ...
