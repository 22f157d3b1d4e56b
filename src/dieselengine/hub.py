"""The hub: the server-wide registry of sessions and rooms, and the one place broadcasts go through."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable

from typing import TYPE_CHECKING

from .bus import Bus
from .outbox import Outbox
from .rooms import Room, RoomLimitError
from .server_handle import server
from .session import Message, Session
from .settings import Settings
from .stats import Stats

if TYPE_CHECKING:
    from .wire import WireKind

log = logging.getLogger("dieselengine")


class Hub:
    """Sessions, rooms and the outbox of one node. Knows nothing of sockets or script engines."""

    def __init__(self, settings: Settings, loop: asyncio.AbstractEventLoop, stats: Stats, wire: WireKind) -> None:
        self.settings = settings
        #: The wire's side of the protocol, given by the server: frames are the wire's encoding.
        self.wire = wire
        self.frame = wire.frame
        self.loop = loop
        self.thread_id = threading.get_ident()
        self.stats = stats
        self.sessions: dict[str, Session] = {}
        self.rooms: dict[str, Room] = {}
        self.outbox = Outbox(loop, stats)
        self.bus: Bus | None = None
        #: Called with (room, members) whenever a room's count may have changed; script runtimes
        #: that cannot call back into Python mid-handler (QuickJS) keep a mirror of the counts.
        self.count_listeners: list[Callable[[str, int], None]] = []
        #: Called with each new session before its on_open (the access log, the inspector).
        self.open_listeners: list[Callable[[Session], None]] = []
        server.bind(self)
        #: Called with each session once its on_close returned (the access log, connection limits).
        self.end_listeners: list[Callable[[Session], None]] = []

    # -- membership ------------------------------------------------------------------------------

    def join(self, session: Session, name: str) -> None:
        """Idempotent; raises RoomLimitError past `--max-rooms-per-session`. O(1)."""
        if self.sessions.get(session.id) is not session:
            return  # its on_close has returned (a late join from a thread or a timer)
        room = self.rooms.get(name)
        if room is not None and session in room.members:
            return
        if len(session.rooms) >= self.settings.max_rooms_per_session:
            raise RoomLimitError(f"session {session.id} is already in {len(session.rooms)} rooms, the most a "
                                 f"session may join (--max-rooms-per-session); cannot join {name!r}")
        if room is None:
            room = self.rooms[name] = Room(name)
        elif room.batch:
            # Frames broadcast before the join must not reach the new member.
            self.outbox.flush()
        room.members[session] = None
        session.enter(room)
        self._counted(room)

    def leave(self, session: Session, name: str) -> None:
        """Idempotent. O(1)."""
        room = self.rooms.get(name)
        if room is None or session not in room.members:
            return
        if room.batch:
            # Frames broadcast while it was a member still reach it.
            self.outbox.flush()
        session.exit(room)
        self._left(session, room)

    def leave_all(self, session: Session) -> None:
        """Every room at once: O(its rooms)."""
        rooms = session.rooms
        if any(room.batch for room in rooms):
            self.outbox.flush()  # while the session is still in all of them
        session.rooms = ()
        for room in rooms:
            self._left(session, room)

    def _left(self, session: Session, room: Room) -> None:
        """The room's side of a leave; the outbox holds nothing for the room any more."""
        del room.members[session]
        if not room.members:
            del self.rooms[room.name]
        self._counted(room)

    def _counted(self, room: Room) -> None:
        local = len(room.members)
        if self.bus is not None:
            self.bus.local_count(room.name, local)
        if self.count_listeners:
            self.count_changed(room.name)

    def count_changed(self, name: str) -> None:
        """Tell the count listeners a room's cluster-wide count may have changed."""
        members = self.members(name)
        for listener in self.count_listeners:
            listener(name, members)

    def members(self, name: str) -> int:
        room = self.rooms.get(name)
        local = len(room.members) if room is not None else 0
        if self.bus is not None:
            return local + self.bus.remote_members(name)
        return local

    def room_counts(self) -> dict[str, int]:
        """Every room with members on any node, with its cluster-wide count."""
        counts = {name: len(room.members) for name, room in self.rooms.items()}
        if self.bus is not None:
            for name, remote in self.bus.remote_rooms().items():
                counts[name] = counts.get(name, 0) + remote
        return counts

    # -- fan-out ---------------------------------------------------------------------------------

    def broadcast(self, name: str, message: Message, skip: Session | None) -> None:
        """Encode once; queue for local members (minus `skip`) and for other nodes."""
        encoded = self.frame(message)
        room = self.rooms.get(name)
        if room is not None:
            self.outbox.to_room(room, encoded, skip)
        if self.bus is not None:
            self.bus.publish(name, encoded)

    def deliver_remote(self, name: str, frame: bytes) -> None:
        """A frame another node broadcast to a room: every local member gets it."""
        room = self.rooms.get(name)
        if room is not None:
            self.outbox.to_room(room, frame, None)

    # -- session lifecycle -----------------------------------------------------------------------

    def add(self, session: Session) -> None:
        self.sessions[session.id] = session
        self.stats.sessions_opened += 1
        for listener in self.open_listeners:
            listener(session)

    def close_session(self, session_id: str, code: int, reason: str) -> bool:
        """Close a session of this node by its id (an operator's request); False if it has none."""
        session = self.sessions.get(session_id)
        if session is None:
            return False
        session.close(code, reason)
        return True

    def remove(self, session: Session) -> None:
        """After `on_close` returned: leave every room, forget the session."""
        self.leave_all(session)
        if self.sessions.pop(session.id, None) is not None:
            self.stats.sessions_closed += 1
            for listener in self.end_listeners:
                listener(session)

    def slow_consumer(self, session: Session) -> None:
        """A client stopped reading and its queue passed `send_queue_size`: close it with 1008.

        Called mid-flush: it must not flush again (as `Session.close` would), only stop writing to
        the session and send the close frame."""
        if session.server_closed:
            return
        session.mark_closing(by_server=True)
        self.stats.slow_consumer_closes += 1
        log.warning("session %s is not reading: send queue over %d bytes, closing with 1008",
                    session.id, self.settings.send_queue_size)
        session.conn.close(1008, "send queue full")
