"""The per-tick outbox: frames queued during one event-loop tick, written once per recipient.

One write syscall per recipient per message is the wall for a Python server (FINDINGS.md: about
0.25 M deliveries/s). Instead every frame queued during a tick waits here, and `flush` (scheduled
with `call_soon`, so it runs after the tick's callbacks) joins each recipient's frames into one
write. Room broadcasts are kept per room, so a broadcast is one append; a member whose frames all
come from one room's batch gets the batch's joined bytes, built once for the whole room.

Order: every queued frame takes a sequence number; a recipient with frames from several sources
(direct sends, several busy rooms, or frames that skip it) gets them merged back in that order.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from .rooms import Room
from .stats import Stats

if TYPE_CHECKING:
    from .session import Session


class Outbox:
    __slots__ = ("_loop", "_seq", "_tick", "_rooms", "_sessions", "queued", "_stats")

    def __init__(self, loop: asyncio.AbstractEventLoop, stats: Stats) -> None:
        self._loop = loop
        self._seq = 0
        self._tick = 0
        self._rooms: list[Room] = []
        self._sessions: list[Session] = []
        #: Frames wait for the flush. The wire reads it: while true, it sends no echo directly.
        self.queued = False
        self._stats = stats

    def to_session(self, session: Session, frame: bytes) -> None:
        self._seq += 1
        if session.direct is None:
            session.direct = [(self._seq, frame)]
            self._sessions.append(session)
        else:
            session.direct.append((self._seq, frame))
        if not self.queued:
            self.queued = True
            self._loop.call_soon(self.flush)

    def to_room(self, room: Room, frame: bytes, skip: Session | None) -> None:
        if not room.batch:
            self._rooms.append(room)
        self._seq += 1
        room.batch.append((self._seq, frame, skip))
        if not self.queued:
            self.queued = True
            self._loop.call_soon(self.flush)

    def flush(self) -> None:
        """Write everything queued so far; also called early when a membership change or a close
        must not be reordered with frames already queued."""
        self.queued = False
        rooms, self._rooms = self._rooms, []
        sessions, self._sessions = self._sessions, []
        self._tick += 1
        tick = self._tick
        frames = 0
        for room in rooms:
            batch = room.batch
            joined = batch[0][1] if len(batch) == 1 else b"".join([entry[1] for entry in batch])
            skipped = {entry[2] for entry in batch}
            members = room.members
            frames += len(batch) * len(members)
            for member in members:
                if member.flushed == tick:
                    continue
                if member.direct or member in skipped or _in_other_busy_room(member, room):
                    frames += self._merge(member, tick)
                else:
                    member.deliver(joined)
        for session in sessions:
            direct = session.direct
            if session.flushed != tick and direct is not None:
                session.direct = None
                frames += len(direct)
                session.deliver(direct[0][1] if len(direct) == 1 else b"".join([f for _, f in direct]))
        for room in rooms:
            room.batch = []
        self._stats.frames_queued += frames

    @staticmethod
    def _merge(member: Session, tick: int) -> int:
        """Deliver a member's frames from every source in sequence order. Returns its direct frames
        less the room frames it skipped (its own `broadcast_except` frames), already counted."""
        member.flushed = tick
        entries = member.direct or []
        member.direct = None
        delta = len(entries)
        for room in member.rooms:
            for seq, frame, skip in room.batch:
                if skip is member:
                    delta -= 1
                else:
                    entries.append((seq, frame))
        if entries:
            entries.sort(key=_first)
            member.deliver(b"".join([frame for _, frame in entries]))
        return delta


def _first(entry: tuple[int, bytes]) -> int:
    return entry[0]


def _in_other_busy_room(member: Session, room: Room) -> bool:
    if len(member.rooms) == 1:
        return False
    return any(other.batch for other in member.rooms if other is not room)
