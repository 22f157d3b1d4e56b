"""Plain counters the hot path bumps; the metrics endpoint reads them only when scraped."""

from __future__ import annotations

from collections import defaultdict
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .wire import Wire


class Stats:
    """Counters kept as plain ints and floats: a Prometheus metric object per increment costs
    about a microsecond, which the per-message path cannot afford. The wire counts bytes and
    messages, times the handling of each message as it arrives, and counts the calls and echoes it
    made itself (the wire's `Entry`); the properties add them up."""

    __slots__ = (
        "sessions_opened",
        "sessions_closed",
        "frames_queued",
        "hook_calls",
        "handler_errors",
        "hook_seconds",
        "slow_consumer_closes",
        "protocol_closes",
        "fetches",
        "refusals",
        "limit_closes",
        "wire",
    )

    sessions_opened: int
    sessions_closed: int
    frames_queued: int
    hook_calls: int
    handler_errors: int
    hook_seconds: float
    slow_consumer_closes: int
    protocol_closes: int

    def __init__(self) -> None:
        for name in self.__slots__:
            setattr(self, name, 0)
        #: Handler time the dispatcher measures: open, close, and messages that waited in an inbox.
        self.hook_seconds = 0.0
        #: (origin, outcome) -> requests made by scripts' fetch() (outcome: "2xx"... or what failed).
        self.fetches: dict[tuple[str, str], int] = {}
        #: Upgrades answered with an HTTP error instead of the 101, by reason (door.py).
        self.refusals: defaultdict[str, int] = defaultdict(int)
        #: Sessions the server closed for a limit, by reason: message_rate, token_expired.
        self.limit_closes: defaultdict[str, int] = defaultdict(int)
        self.wire: Wire | None = None

    @property
    def bytes_in(self) -> int:
        return self.wire.bytes_in if self.wire is not None else 0

    @property
    def bytes_out(self) -> int:
        return self.wire.bytes_out if self.wire is not None else 0

    @property
    def messages_in(self) -> int:
        return self.wire.messages_in if self.wire is not None else 0

    @property
    def buffered(self) -> int:
        return self.wire.buffered if self.wire is not None else 0

    @property
    def handler_seconds(self) -> float:
        return self.hook_seconds + (self.wire.message_seconds if self.wire is not None else 0.0)

    @property
    def handler_calls(self) -> int:
        return self.hook_calls + (self.wire.direct_calls if self.wire is not None else 0)

    @property
    def messages_deflated(self) -> int:
        return self.wire.messages_deflated if self.wire is not None else 0

    @property
    def messages_inflated(self) -> int:
        return self.wire.messages_inflated if self.wire is not None else 0

    @property
    def frames_out(self) -> int:
        return self.frames_queued + (self.wire.direct_frames if self.wire is not None else 0)
