"""The cluster bus adapter: how a node hears about other nodes' broadcasts and room counts.

Like Phoenix.PubSub's adapter, it is a handful of calls; local delivery never waits on it. The
hub works without one (a single node); `--cluster` plugs in the Redis implementation.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from .hub import Hub


class Bus(Protocol):
    #: False while the bus cannot reach the other nodes; /healthz reports it.
    healthy: bool

    async def start(self, hub: Hub) -> None:
        """Connect and begin delivering remote broadcasts with `hub.deliver_remote`."""

    async def stop(self) -> None:
        """Withdraw this node's members and disconnect."""

    def publish(self, room: str, frame: bytes) -> None:
        """Send an encoded frame to the room's members on other nodes (queued, never blocking)."""

    def local_count(self, room: str, count: int) -> None:
        """This node's member count of a room changed (0 when the room is gone here)."""

    def remote_members(self, room: str) -> int:
        """Members on other nodes, from the local replica of the cluster's counts."""

    def remote_rooms(self) -> Mapping[str, int]:
        """Every room with members on other nodes, with their count there (the same replica)."""

    async def close_session(self, session_id: str, code: int, reason: str) -> bool:
        """Ask the other nodes to close a session (`hub.close_session` on each): True once the
        node that has it answers, False once every node answered that it has none. Raises
        ConnectionError if the other nodes cannot be asked, TimeoutError if not all answered."""

    def metrics(self) -> dict[str, float]:
        """Counters for /metrics, e.g. {"errors": 3, "reconnects": 1, "published": 812}."""
