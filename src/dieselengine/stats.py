"""Plain counters the hot path bumps; the metrics endpoint reads them only when scraped."""

from __future__ import annotations


class Stats:
    """Counters kept as plain ints and floats: a Prometheus metric object per increment costs
    about a microsecond, which the per-message path cannot afford."""

    __slots__ = (
        "sessions_opened",
        "sessions_closed",
        "messages_in",
        "bytes_in",
        "frames_out",
        "bytes_out",
        "handler_calls",
        "handler_errors",
        "handler_seconds",
        "slow_consumer_closes",
        "protocol_closes",
    )

    def __init__(self) -> None:
        for name in self.__slots__:
            setattr(self, name, 0)
        self.handler_seconds = 0.0
