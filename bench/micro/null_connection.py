"""The core's `session.Connection` without a socket, for the in-process micro-benchmarks: writes are
dropped, every other call does nothing."""

from __future__ import annotations


class NullConnection:
    def write(self, data: bytes) -> int:
        return 0

    def close(self, code: int, reason: str) -> None:
        pass

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def abort(self) -> None:
        pass

    def keepalive(self) -> None:
        pass

    def direct(self, entry: object, handle: object) -> None:
        pass
