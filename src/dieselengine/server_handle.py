"""`from dieselengine import server`: rooms reached from anywhere in a script, not through a session.

A module-level timer, a background thread or a game loop has no session to call `session.room`
on; `server.room(name)` is the same room without one (Bun's `server.publish`). The handle is
bound to the process's hub when the hub is made, so it works at a module's top level too.
Everything may be called from any thread: changes are handed to the event loop with
`call_soon_threadsafe` (which keeps their order), and `rooms()` waits for the loop's answer.
"""

from __future__ import annotations

import asyncio
from threading import get_ident
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .hub import Hub
    from .session import Message

#: How long `rooms()` called from another thread waits for the event loop to answer.
ROOMS_TIMEOUT = 5.0


class ServerRoom:
    """`server.room(name)`: broadcast to a room and count it, on behalf of no session."""

    __slots__ = ("_server", "_name")

    def __init__(self, server: ServerHandle, name: str) -> None:
        self._server = server
        self._name = name

    def __repr__(self) -> str:
        return f"<ServerRoom {self._name!r}>"

    def broadcast(self, message: Message) -> None:
        """To every member, on every node: text for a str, binary for bytes. A room with no
        member anywhere costs nothing."""
        if not isinstance(message, (str, bytes, bytearray, memoryview)):
            raise TypeError(f"a message must be str or bytes, not {type(message).__name__}")
        hub = self._server.hub
        if get_ident() != hub.thread_id:
            if not isinstance(message, (str, bytes)):
                message = bytes(message)  # the caller may reuse its buffer before the loop runs
            hub.loop.call_soon_threadsafe(hub.broadcast, self._name, message, None)
        else:
            hub.broadcast(self._name, message, None)

    def members(self) -> int:
        """Sessions in the room (across the cluster when there is one)."""
        return self._server.hub.members(self._name)

    def get_name(self) -> str:
        return self._name


class ServerHandle:
    """The server as a script sees it: `room(name)` and `rooms()`."""

    def __init__(self) -> None:
        self._hub: Hub | None = None

    def bind(self, hub: Hub) -> None:
        """Called by the hub of this process when it is made."""
        self._hub = hub

    @property
    def hub(self) -> Hub:
        if self._hub is None:
            raise RuntimeError("dieselengine.server is only usable inside a running server (diesel serve)")
        return self._hub

    def room(self, name: str) -> ServerRoom:
        """A handle on a room; nothing is created until a session joins it."""
        return ServerRoom(self, str(name))

    def rooms(self) -> list[dict[str, object]]:
        """Every room with members anywhere in the cluster: `[{"name": ..., "members": N}]`,
        sorted by name. Counts of other nodes are as fresh as the cluster's replica (README)."""
        hub = self.hub
        if get_ident() == hub.thread_id:
            return _listing(hub)
        future = asyncio.run_coroutine_threadsafe(_listing_on_loop(hub), hub.loop)
        return future.result(ROOMS_TIMEOUT)


def _listing(hub: Hub) -> list[dict[str, object]]:
    return [{"name": name, "members": count} for name, count in sorted(hub.room_counts().items())]


async def _listing_on_loop(hub: Hub) -> list[dict[str, object]]:
    return _listing(hub)


#: The one handle of this process, `from dieselengine import server`.
server = ServerHandle()
