"""A session: one client connection as handler scripts see it, independent of any socket library."""

from __future__ import annotations

import os
from collections import deque
from threading import get_ident
from typing import TYPE_CHECKING, Any, Protocol

from .request import ReadsRequest, Request

if TYPE_CHECKING:
    from .hub import Hub
    from .rooms import Room
    from .routing import Route

Message = str | bytes


class Connection(Protocol):
    """What the core needs from a transport; each wire's `Conn` implements it."""

    def write(self, data: bytes) -> int:
        """Queue raw frame bytes; return the bytes the transport still holds for this client."""

    def close(self, code: int, reason: str) -> None:
        """Send a close frame and end the connection once the client replies (or a timeout)."""

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...

    def abort(self) -> None:
        """Drop the connection at once (shutdown past its deadline)."""

    def keepalive(self) -> None:
        """Called once per ping interval: ping a silent client, drop one that did not answer."""

    def direct(self, entry: Any, handle: object) -> None:
        """Hand this session's text messages to a script engine's entry with the session's handle,
        without a Python call in between (the wire's `Entry`); (None, None) undoes it."""

    def summary(self) -> tuple[int, int, int, int, float, int, str | None]:
        """(messages in, payload bytes in, messages out, bytes written, seconds open, close code,
        who closed: "server", "client" or None), counted by the wire where frames are read and
        written; the access log's close line and the inspector read it."""


#: Rooms a session holds in a tuple, remade on each join and leave, before it switches to a dict.
_FEW_ROOMS = 8

#: Session ids not handed out yet, as one hex string, and where the next one starts.
_ids = ""
_next_id = 0


def new_session_id() -> str:
    """64 random bits from the OS, unique across a cluster without coordination; read 256 ids at
    a time and cut from one hex string as they are needed (a getrandom call per handshake, then a
    list of 256 strings made at once, showed in profiles)."""
    global _ids, _next_id
    start = _next_id
    if start == len(_ids):
        _ids = os.urandom(8 * 256).hex()
        start = 0
    _next_id = start + 16
    return _ids[start:start + 16]


class Session(ReadsRequest):
    """One client connection: `send`, `close`, the handshake request, attributes and rooms.

    Python handlers get this object directly (snake_case names); the JavaScript runtime wraps it.
    Everything here runs on the event loop thread; calls from other threads are handed to the loop
    with `call_soon_threadsafe`, which keeps their order.
    """

    __slots__ = (
        "id", "request", "hub", "conn", "route", "attributes", "rooms", "direct", "flushed",
        "_open", "server_closed", "ended", "busy", "inbox", "inbox_bytes", "reading_paused", "close_ran",
        "runtime_state",
        "__weakref__",
    )

    def __init__(self, hub: Hub, conn: Connection, request: Request, route: Route) -> None:
        #: 64 random bits in hex (a plain attribute: a property cost a Python call per read).
        self.id = new_session_id()
        self.request = request
        self.hub = hub
        self.conn = conn
        self.route = route
        #: None until the first set_attribute: no dict per session that never stores one.
        self.attributes: dict[str, Any] | None = None
        #: A tuple while the session is in a few rooms (the empty one is shared: a list per idle
        #: session cost 88 bytes), an insertion-ordered dict past that, so that a join or leave
        #: costs the same in the 60,000th room as in the first (see `enter` and `exit`).
        self.rooms: tuple[Room, ...] | dict[Room, None] = ()
        #: Frames sent to this session alone during the current tick: (sequence, frame); None
        #: while there are none (most sessions, most of the time: no list per idle session).
        self.direct: list[tuple[int, bytes]] | None = None
        #: The outbox tick in which this session was last written, so a flush writes it once.
        self.flushed = 0
        self._open = True
        #: The server started the close: messages still arriving are dropped.
        self.server_closed = False
        #: The connection is over (closed or lost); `on_close` runs once the handler is idle.
        self.ended = False
        #: A handler call (an async one) is in progress; new messages wait in `inbox`.
        self.busy = False
        self.inbox: deque[Message] | None = None
        self.inbox_bytes = 0
        self.reading_paused = False
        self.close_ran = False
        #: Whatever the script runtime keeps per session (the JS runtime's handle).
        self.runtime_state: Any = None

    def __repr__(self) -> str:
        return f"<Session {self.id} {self.request.path}>"

    # -- membership (the hub's bookkeeping; handlers use `room()`) ----------------------------------

    def enter(self, room: Room) -> None:
        rooms = self.rooms
        if type(rooms) is dict:
            rooms[room] = None
        elif len(rooms) < _FEW_ROOMS:
            self.rooms = rooms + (room,)  # type: ignore[operator]
        else:
            self.rooms = dict.fromkeys((*rooms, room))

    def exit(self, room: Room) -> None:
        rooms = self.rooms
        if type(rooms) is dict:
            rooms.pop(room, None)
        else:
            self.rooms = tuple(other for other in rooms if other is not room)

    # -- sending ---------------------------------------------------------------------------------

    def send(self, message: Message) -> None:
        """Queue a text (str) or binary (bytes) frame; never blocks; a no-op once closed."""
        if get_ident() != self.hub.thread_id:
            self.hub.loop.call_soon_threadsafe(self.send, message)
            return
        if self._open:
            hub = self.hub
            hub.outbox.to_session(self, hub.frame(message))

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Start the closing handshake; idempotent. Frames queued before it still go out first."""
        if not self.hub.wire.valid_close_code(code):
            raise ValueError(f"close code must be 1000-1003, 1007-1014 or 3000-4999, not {code}")
        if get_ident() != self.hub.thread_id:
            self.hub.loop.call_soon_threadsafe(self.close, code, reason)
            return
        if not self._open:
            return
        self.hub.outbox.flush()
        self.mark_closing(by_server=True)
        self.conn.close(code, reason)

    def is_open(self) -> bool:
        return self._open

    def deliver(self, data: bytes) -> None:
        """Called by the outbox with this tick's joined frames; enforces the send-queue bound."""
        if self._open and self.conn.write(data) > self.hub.settings.send_queue_size:
            self.hub.slow_consumer(self)

    def mark_closing(self, by_server: bool = False) -> None:
        """Stop sending from now on: a close started (by the server when `by_server`: messages
        still arriving are then dropped) or the connection dropped. The script hears of it once."""
        if by_server:
            self.server_closed = True
        if self._open:
            self._open = False
            self.route.script.closing(self)

    # -- attributes ------------------------------------------------------------------------------

    def set_attribute(self, key: str, value: Any) -> None:
        if self.attributes is None:
            self.attributes = {}
        self.attributes[key] = value

    def get_attribute(self, key: str) -> Any:
        return self.attributes.get(key) if self.attributes else None

    def get_attributes(self) -> dict[str, Any]:
        return dict(self.attributes) if self.attributes else {}

    # -- rooms -----------------------------------------------------------------------------------

    def room(self, name: str) -> RoomHandle:
        """A handle on a room; does not join it."""
        return RoomHandle(self, str(name))


class RoomHandle:
    """`session.room(name)`: room operations on behalf of one session."""

    __slots__ = ("_session", "_name")

    def __init__(self, session: Session, name: str) -> None:
        self._session = session
        self._name = name

    def __repr__(self) -> str:
        return f"<RoomHandle {self._name!r} for {self._session.id}>"

    def _off_loop(self, method: str, *args: Any) -> bool:
        hub = self._session.hub
        if get_ident() == hub.thread_id:
            return False
        hub.loop.call_soon_threadsafe(getattr(self, method), *args)
        return True

    def join(self) -> None:
        if not self._off_loop("join"):
            self._session.hub.join(self._session, self._name)

    def leave(self) -> None:
        if not self._off_loop("leave"):
            self._session.hub.leave(self._session, self._name)

    def broadcast(self, message: Message) -> None:
        """To every member, the sender included when it is one."""
        if not self._off_loop("broadcast", message):
            self._session.hub.broadcast(self._name, message, None)

    def broadcast_except(self, message: Message) -> None:
        """To every member but the sender."""
        if not self._off_loop("broadcast_except", message):
            self._session.hub.broadcast(self._name, message, self._session)

    def members(self) -> int:
        """Sessions in the room (across the cluster when there is one)."""
        return self._session.hub.members(self._name)

    def get_name(self) -> str:
        return self._name
