"""Rooms: server-wide named groups of sessions, and the per-tick batch of frames each one carries."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .session import Session

#: One frame queued for a room in the current tick: (sequence number, frame, session it skips).
BatchEntry = tuple[int, bytes, "Session | None"]


class RoomLimitError(ValueError):
    """A join past `--max-rooms-per-session`: the handler's error (a RangeError in JavaScript)."""


class Room:
    """A set of local members plus the frames broadcast to it since the last flush.

    Frames are batched per room, not per recipient (as uWebSockets' TopicTree does): a broadcast
    costs one append whatever the room's size, and the flush writes each member once per tick.
    """

    __slots__ = ("name", "members", "batch")

    def __init__(self, name: str) -> None:
        self.name = name
        #: Insertion-ordered so fan-out visits members in join order.
        self.members: dict[Session, None] = {}
        self.batch: list[BatchEntry] = []

    def __repr__(self) -> str:
        return f"<Room {self.name!r} members={len(self.members)}>"
