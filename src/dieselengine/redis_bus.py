"""The Redis cluster bus: broadcasts and room counts shared by every node naming one Redis.

Three things travel through Redis, all under the `--cluster-prefix` (default `diesel`):

* **Broadcast frames**, on one pub/sub channel per room (`diesel:room:<name>`). A node subscribes
  only to the rooms it has local members in, so it receives nothing for the others. Frames a
  node broadcasts during one event-loop tick (and while the previous publish is still in flight)
  are joined into one PUBLISH per room: the 8-byte origin node id, then the encoded frames back to
  back (WebSocket frames are self-delimiting). A node drops messages carrying its own id; its
  local members already got the frames straight from the hub, with no round trip.
* **Room counts**: each node keeps a hash `diesel:node:<id>` of `r:<room>` -> its member count,
  plus `v`, a version bumped on every change. The hash expires after `HEARTBEAT_TTL` seconds
  unless refreshed (every `SYNC_INTERVAL`), so it doubles as the node's heartbeat: the members of
  a node that died without cleanup vanish when it expires. `diesel:nodes` lists the node ids.
* **Count changes**, on the control channel `diesel:ctl` (JSON), so replicas settle in
  milliseconds; every node also re-reads all the hashes each `SYNC_INTERVAL`, which repairs
  anything a missed message left behind. Versions keep an older snapshot from overwriting a newer
  change.
* **Session closes** asked for by the HTTP API, on the control channel too: `{"close": id, "ask":
  tag}`; every node answers `{"answer": tag, "found": bool}`. PUBLISH returns how many nodes
  listen, so the asking node knows how many answers to wait for: "no node has it" is known as
  soon as the last one answered, not after a timeout.

`members()` stays synchronous for scripts: it adds the local count to `remote_members`, read from
the replica kept here. A node subscribes to a room's channel, and waits for Redis to confirm,
*before* it announces its new count, so once another node counts a member it also reaches it.

Faults: when Redis goes away, local rooms carry on untouched, `healthy` turns False (so
`/healthz` answers 503), publishes are dropped and counted instead of buffered, and the
connection is retried with exponential backoff (0.1 s doubling to 5 s, with jitter). Once back,
the node resubscribes, rewrites its counts and re-reads everyone else's. The replica keeps its
last known remote counts while Redis is down. Delivery is at most once: frames broadcast while
Redis is unreachable, or while a subscription is still being set up, are not replayed.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import random
from typing import TYPE_CHECKING, Any

from redis.asyncio import ConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

if TYPE_CHECKING:
    from redis.asyncio.connection import AbstractConnection

    from .hub import Hub
    from .settings import Settings

log = logging.getLogger("dieselengine.cluster")

#: Seconds between heartbeats, count refreshes and full re-reads of the other nodes' counts.
SYNC_INTERVAL = 1.0
#: A node's counts expire this long after its last heartbeat. With the re-read every
#: SYNC_INTERVAL, a dead node's members drop out of every count within about 9 s (SPEC: 15 s),
#: while an event loop stalled for a few seconds does not make a live node flap.
HEARTBEAT_TTL = 8.0
#: Bytes of broadcast frames that may wait for Redis. Past it (Redis slower than the broadcasts)
#: frames are dropped and counted: at most this much memory, never an unbounded queue.
MAX_PENDING_BYTES = 8 << 20
#: Reconnect backoff bounds, in seconds.
BACKOFF_MIN = 0.1
BACKOFF_MAX = 5.0
#: How long a command or a subscription confirmation may take before the connection is deemed lost.
COMMAND_TIMEOUT = 3.0
#: How long a node that left cleanly is remembered, so a late snapshot cannot resurrect it.
GONE_MEMORY = 60.0

_NODE_ID_SIZE = 8


class _Replica:
    """What this node knows of another node: its counts and the version they came with."""

    __slots__ = ("version", "counts")

    def __init__(self) -> None:
        self.version = -1
        self.counts: dict[str, int] = {}


class RedisBus:
    """The `Bus` of a `--cluster` node (see the module docstring for the protocol)."""

    def __init__(self, settings: Settings) -> None:
        assert settings.cluster
        self.healthy = False
        self._url = settings.cluster
        prefix = settings.cluster_prefix
        self._node = os.urandom(_NODE_ID_SIZE)
        self.node_id = self._node.hex()
        self._ctl_channel = f"{prefix}:ctl".encode()
        self._room_prefix = f"{prefix}:room:".encode()
        self._nodes_key = f"{prefix}:nodes"
        self._node_key_prefix = f"{prefix}:node:"
        self._node_key = self._node_key_prefix + self.node_id
        self._hub: Hub | None = None

        # -- this node's side --
        #: Local member count of every room with local members.
        self._local: dict[str, int] = {}
        #: Rooms whose local count changed since the last push.
        self._dirty: set[str] = set()
        self._version = 0
        #: Rooms whose channel is subscribed on the current pub/sub connection. Outside
        #: `_update_subscriptions` (whose SUBSCRIBE may still await Redis's confirmation), every
        #: room in here is confirmed; only those may be announced with a member count.
        self._subscribed: set[str] = set()
        #: Subscriptions sent but not yet confirmed: channel -> future.
        self._confirm: dict[bytes, asyncio.Future[None]] = {}

        # -- the replica --
        self._nodes: dict[str, _Replica] = {}
        #: Members on other nodes, per room (the sum over `_nodes`).
        self._remote: dict[str, int] = {}
        #: Nodes that announced they left: node id -> loop time.
        self._gone: dict[str, float] = {}

        # -- outgoing broadcasts --
        self._pending: dict[str, list[bytes]] = {}
        self._pending_bytes = 0
        self._writing = False

        #: Session closes this node asked the others for: tag -> the ask.
        self._asks: dict[str, _Ask] = {}
        #: The command connection while connected, for closes asked and answered.
        self._client: Redis | None = None
        self._answering: set[asyncio.Task[None]] = set()

        self._counters = {"published": 0, "publishes": 0, "received": 0, "errors": 0,
                          "reconnects": 0, "dropped": 0}
        self._supervisor: asyncio.Task[None] | None = None
        self._wake_writer = asyncio.Event()
        self._wake_sync = asyncio.Event()
        self._connected_once = asyncio.Event()

    # -- the Bus protocol ------------------------------------------------------------------------

    async def start(self, hub: Hub) -> None:
        """Connect (waiting up to COMMAND_TIMEOUT for the first sync) and keep connected. A node
        whose Redis is down at start still serves, degraded, and joins once Redis answers."""
        self._hub = hub
        self._supervisor = asyncio.create_task(self._supervise(), name="diesel-cluster")
        try:
            await asyncio.wait_for(self._connected_once.wait(), COMMAND_TIMEOUT)
            log.info("cluster: node %s joined via %s", self.node_id, _redact(self._url))
        except asyncio.TimeoutError:
            log.warning("cluster: Redis at %s not reachable yet; serving local rooms, retrying",
                        _redact(self._url))

    async def stop(self) -> None:
        """Send what is still queued, withdraw this node's counts, disconnect."""
        if self.healthy and (self._pending or self._writing):
            deadline = asyncio.get_running_loop().time() + 1.0
            while (self._pending or self._writing) and self.healthy and asyncio.get_running_loop().time() < deadline:
                await asyncio.sleep(0.005)
        if self._supervisor is not None:
            self._supervisor.cancel()
            try:
                await self._supervisor
            except asyncio.CancelledError:
                pass
        self.healthy = False
        client = Redis.from_url(self._url, socket_timeout=1.0, socket_connect_timeout=1.0,
                                retry=Retry(NoBackoff(), 0))
        try:
            async with client.pipeline(transaction=True) as pipe:
                pipe.delete(self._node_key)
                pipe.srem(self._nodes_key, self.node_id)
                pipe.publish(self._ctl_channel, json.dumps({"n": self.node_id, "gone": True}))
                await pipe.execute()
        except Exception as exc:  # Redis down: the heartbeat expiry withdraws us instead
            log.warning("cluster: could not withdraw node %s cleanly (%s); its counts expire in %.0f s",
                        self.node_id, exc, HEARTBEAT_TTL)
        finally:
            await client.aclose()

    def publish(self, room: str, frame: bytes) -> None:
        if not self._remote.get(room):
            # No member on any other node (as far as the replica knows; a node subscribes before
            # it announces a member, so this skips nothing that could have been delivered).
            return
        if not self.healthy or self._pending_bytes + len(frame) > MAX_PENDING_BYTES:
            self._counters["dropped"] += 1
            return
        frames = self._pending.get(room)
        if frames is None:
            self._pending[room] = [frame]
        else:
            frames.append(frame)
        self._pending_bytes += len(frame)
        if not self._writing:
            self._wake_writer.set()

    def local_count(self, room: str, count: int) -> None:
        if count:
            self._local[room] = count
        else:
            self._local.pop(room, None)
        self._dirty.add(room)
        self._wake_sync.set()

    def remote_members(self, room: str) -> int:
        return self._remote.get(room, 0)

    def remote_rooms(self) -> dict[str, int]:
        return self._remote

    async def close_session(self, session_id: str, code: int, reason: str) -> bool:
        client = self._client
        if client is None or not self.healthy:
            raise ConnectionError("the cluster bus is not connected to Redis")
        tag = os.urandom(8).hex()
        ask = self._asks[tag] = _Ask(asyncio.get_running_loop().create_future())
        try:
            message = {"n": self.node_id, "close": session_id, "code": code, "reason": reason, "ask": tag}
            listeners = await client.publish(self._ctl_channel, json.dumps(message, separators=(",", ":")))
            ask.expect(int(listeners) - 1)  # every node listens to the control channel, this one too
            return await asyncio.wait_for(ask.future, COMMAND_TIMEOUT)
        finally:
            del self._asks[tag]

    def metrics(self) -> dict[str, float]:
        return dict(self._counters)

    # -- connection supervision ------------------------------------------------------------------

    async def _supervise(self) -> None:
        """Connect, sync, run the reader/writer/syncer until something fails; back off; repeat."""
        delay = BACKOFF_MIN
        ever_connected = False
        down_logged = False
        while True:
            pool = ConnectionPool.from_url(self._url, socket_timeout=COMMAND_TIMEOUT,
                                           socket_connect_timeout=COMMAND_TIMEOUT,
                                           retry=Retry(NoBackoff(), 0))
            client = Redis(connection_pool=pool)
            sub: AbstractConnection | None = None
            tasks: list[asyncio.Task[None]] = []
            try:
                await client.ping()
                sub = pool.make_connection()
                await sub.connect()
                tasks.append(asyncio.create_task(self._reader(sub)))
                await self._resync(client, sub)
                if ever_connected:
                    self._counters["reconnects"] += 1
                    log.warning("cluster: reconnected to Redis; resubscribed %d room(s), counts resynced",
                                len(self._subscribed))
                ever_connected = True
                down_logged = False
                self._client = client
                self.healthy = True
                self._connected_once.set()
                delay = BACKOFF_MIN
                tasks.append(asyncio.create_task(self._writer(client)))
                tasks.append(asyncio.create_task(self._syncer(client, sub)))
                done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    task.result()
                raise ConnectionError("cluster bus task ended")
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._counters["errors"] += 1
                if not down_logged:
                    log.warning("cluster: Redis unavailable (%s: %s); local rooms keep working, "
                                "cross-node delivery paused, retrying", type(exc).__name__, exc)
                    down_logged = True
            finally:
                self.healthy = False
                self._client = None
                for task in tasks:
                    task.cancel()
                if tasks:
                    await asyncio.gather(*tasks, return_exceptions=True)
                self._drop_pending()
                self._subscribed.clear()
                for future in self._confirm.values():
                    future.cancel()
                self._confirm.clear()
                if sub is not None:
                    await _quietly(sub.disconnect(nowait=True))
                await _quietly(client.aclose())
                await _quietly(pool.disconnect())
            await asyncio.sleep(delay * random.uniform(0.75, 1.25))
            delay = min(delay * 2, BACKOFF_MAX)

    def _drop_pending(self) -> None:
        for frames in self._pending.values():
            self._counters["dropped"] += len(frames)
        self._pending.clear()
        self._pending_bytes = 0

    async def _resync(self, client: Redis, sub: AbstractConnection) -> None:
        """After (re)connecting: subscribe the control channel and every local room, rewrite this
        node's counts in full, and re-read everyone else's."""
        ctl = self._confirm_later(self._ctl_channel)
        await sub.send_command("SUBSCRIBE", self._ctl_channel)
        await asyncio.wait_for(ctl, COMMAND_TIMEOUT)
        await self._update_subscriptions(sub)
        await self._push(client, full=True)
        await self._poll(client)

    # -- pub/sub: receiving ----------------------------------------------------------------------

    async def _reader(self, sub: AbstractConnection) -> None:
        hub = self._hub
        assert hub is not None
        node = self._node
        ctl = self._ctl_channel
        room_prefix = self._room_prefix
        counters = self._counters
        while True:
            response = await sub.read_response(timeout=math.inf, push_request=True)
            kind = response[0]
            if kind == b"message":
                channel, data = response[1], response[2]
                if channel == ctl:
                    self._on_control(data)
                    continue
                if data[:_NODE_ID_SIZE] == node:
                    continue
                if not channel.startswith(room_prefix):
                    continue
                room = channel[len(room_prefix):].decode("utf-8", "surrogatepass")
                if room not in self._subscribed:
                    continue  # unsubscribed meanwhile
                delivered, intact = _deliver_frames(hub, room, data)
                counters["received"] += delivered
                if not intact:
                    counters["errors"] += 1
            elif kind == b"subscribe":
                future = self._confirm.pop(response[1], None)
                if future is not None and not future.done():
                    future.set_result(None)

    def _confirm_later(self, channel: bytes) -> asyncio.Future[None]:
        future = self._confirm.get(channel)
        if future is None:
            future = self._confirm[channel] = asyncio.get_running_loop().create_future()
        return future

    # -- pub/sub: sending ------------------------------------------------------------------------

    async def _writer(self, client: Redis) -> None:
        """One pipeline per round: a PUBLISH per room with everything queued since the last round
        (at least one event-loop tick's worth, more while Redis is busy with the previous one)."""
        wake = self._wake_writer
        node = self._node
        counters = self._counters
        while True:
            await wake.wait()
            wake.clear()
            if not self._pending:
                continue
            self._writing = True
            pending, self._pending = self._pending, {}
            self._pending_bytes = 0
            frames_sent = 0
            try:
                async with client.pipeline(transaction=False) as pipe:
                    for room, frames in pending.items():
                        pipe.publish(self._room_channel(room), node + b"".join(frames))
                        frames_sent += len(frames)
                    await pipe.execute()
            except BaseException:
                counters["dropped"] += frames_sent
                raise
            finally:
                self._writing = False
            counters["published"] += frames_sent
            counters["publishes"] += len(pending)
            if self._pending:
                wake.set()

    def _room_channel(self, room: str) -> bytes:
        return self._room_prefix + room.encode("utf-8", "surrogatepass")

    # -- counts: this node's side ----------------------------------------------------------------

    async def _syncer(self, client: Redis, sub: AbstractConnection) -> None:
        """Subscription changes and count pushes as soon as they happen; heartbeat and full
        re-read every SYNC_INTERVAL."""
        wake = self._wake_sync
        loop = asyncio.get_running_loop()
        next_beat = loop.time() + SYNC_INTERVAL
        while True:
            try:
                await asyncio.wait_for(wake.wait(), max(0.0, next_beat - loop.time()))
            except asyncio.TimeoutError:
                pass
            wake.clear()
            await self._update_subscriptions(sub)
            beat = loop.time() >= next_beat
            if self._dirty or beat:
                await self._push(client, full=False)
            if beat:
                await self._poll(client)
                next_beat = loop.time() + SYNC_INTERVAL

    async def _update_subscriptions(self, sub: AbstractConnection) -> None:
        """Subscribe rooms that gained local members, unsubscribe those that lost them all; wait
        for Redis to confirm the subscriptions before the counts that announce them go out."""
        add = [room for room in self._local if room not in self._subscribed]
        remove = [room for room in self._subscribed if room not in self._local]
        if remove:
            self._subscribed.difference_update(remove)
            await sub.send_command("UNSUBSCRIBE", *[self._room_channel(room) for room in remove])
        if add:
            channels = [self._room_channel(room) for room in add]
            waiting = [self._confirm_later(channel) for channel in channels]
            self._subscribed.update(add)
            await sub.send_command("SUBSCRIBE", *channels)
            await asyncio.wait_for(asyncio.gather(*waiting), COMMAND_TIMEOUT)

    async def _push(self, client: Redis, full: bool) -> None:
        """Write this node's changed counts (all of them when `full`), refresh the heartbeat, and
        announce the change on the control channel, in one transaction.

        Only rooms whose subscription Redis has confirmed (or that have no local member left) are
        announced: a room joined while `_update_subscriptions` awaited a confirmation stays dirty
        until the next round has subscribed it, so no other node counts a member here (and
        publishes for it) before this node receives that room's channel."""
        subscribed = self._subscribed
        local = self._local
        if full:
            rooms = [room for room in local if room in subscribed]
            # The full snapshot settles every other room; only the unsubscribed ones wait.
            self._dirty = {room for room in local if room not in subscribed}
        else:
            rooms = [room for room in self._dirty if room in subscribed or room not in local]
            self._dirty.difference_update(rooms)
        if self._dirty:
            self._wake_sync.set()  # the syncer subscribes them next, then announces them
        self._version += 1
        counts = {room: self._local.get(room, 0) for room in rooms}
        fields: dict[str, Any] = {"v": self._version}
        fields.update({"r:" + room: count for room, count in counts.items() if count})
        gone = ["r:" + room for room, count in counts.items() if not count]
        async with client.pipeline(transaction=True) as pipe:
            # Whether the hash still existed: a node stalled past HEARTBEAT_TTL (or a Redis that
            # restarted behind a proxy) lost it, and must write it in full again.
            pipe.exists(self._node_key)
            if full:
                pipe.delete(self._node_key)
            pipe.hset(self._node_key, mapping=fields)
            if gone:
                pipe.hdel(self._node_key, *gone)
            pipe.pexpire(self._node_key, int(HEARTBEAT_TTL * 1000))
            pipe.sadd(self._nodes_key, self.node_id)
            if counts or full:
                message = {"n": self.node_id, "v": self._version, "c": counts}
                if full:
                    message["f"] = True
                pipe.publish(self._ctl_channel, json.dumps(message, separators=(",", ":")))
            try:
                results = await pipe.execute()
            except BaseException:
                self._dirty.update(rooms)  # the resync after reconnecting covers them anyway
                raise
        if not full and not results[0]:
            log.warning("cluster: this node's counts had expired in Redis (event loop stalled for "
                        "over %.0f s?); rewriting them", HEARTBEAT_TTL)
            await self._push(client, full=True)

    # -- counts: the replica ---------------------------------------------------------------------

    async def _poll(self, client: Redis) -> None:
        """Re-read every node's counts; drop the nodes whose heartbeat expired."""
        listed = {member.decode() for member in await client.smembers(self._nodes_key)}
        nodes = sorted((listed | set(self._nodes)) - {self.node_id})
        if not nodes:
            return
        async with client.pipeline(transaction=False) as pipe:
            for node in nodes:
                pipe.hgetall(self._node_key_prefix + node)
            snapshots = await pipe.execute()
        dead = []
        for node, snapshot in zip(nodes, snapshots):
            if not snapshot:
                dead.append(node)
                self._forget(node)
                continue
            version = int(snapshot.pop(b"v", 0))
            counts = {key[2:].decode("utf-8", "surrogatepass"): int(value)
                      for key, value in snapshot.items() if key.startswith(b"r:")}
            self._apply(node, version, counts, full=True)
        if dead:
            log.info("cluster: node(s) %s stopped heartbeating; their members no longer count",
                     ", ".join(dead))
            await client.srem(self._nodes_key, *dead)
        now = asyncio.get_running_loop().time()
        for node, since in list(self._gone.items()):
            if now - since > GONE_MEMORY:
                del self._gone[node]

    def _on_control(self, data: bytes) -> None:
        try:
            message = json.loads(data)
            node = message["n"]
            if node == self.node_id:
                return
            if message.get("gone"):
                self._gone[node] = asyncio.get_running_loop().time()
                self._forget(node)
                return
            if "close" in message:
                self._close_asked(message)
                return
            if "answer" in message:
                ask = self._asks.get(message["answer"])
                if ask is not None:
                    ask.answered(bool(message["found"]))
                return
            self._apply(node, int(message["v"]), message["c"], full=bool(message.get("f")))
        except (ValueError, KeyError, TypeError) as exc:
            self._counters["errors"] += 1
            log.warning("cluster: ignoring a malformed control message (%s): %.200r", exc, data)

    def _close_asked(self, message: dict[str, Any]) -> None:
        """Another node's API asked for a session to be closed: close it if it is here, and answer."""
        assert self._hub is not None
        found = self._hub.close_session(str(message["close"]), int(message["code"]), str(message["reason"]))
        answer = json.dumps({"n": self.node_id, "answer": message["ask"], "found": found}, separators=(",", ":"))
        client = self._client
        if client is None:
            return  # Redis just went away: the asking node times out
        task = asyncio.create_task(_quietly(client.publish(self._ctl_channel, answer)))
        self._answering.add(task)
        task.add_done_callback(self._answering.discard)

    def _apply(self, node: str, version: int, counts: dict[str, int], full: bool) -> None:
        """Merge a node's counts: a full snapshot replaces them, a change updates some rooms.
        Anything older than what is known is ignored."""
        if node in self._gone:
            return
        replica = self._nodes.get(node)
        if replica is None:
            replica = self._nodes[node] = _Replica()
        if version < replica.version or (version == replica.version and not full):
            return
        old = replica.counts
        if full:
            new = {room: count for room, count in counts.items() if count}
        else:
            new = dict(old)
            for room, count in counts.items():
                if count:
                    new[room] = count
                else:
                    new.pop(room, None)
        replica.version = version
        replica.counts = new
        self._changed(old, new)

    def _forget(self, node: str) -> None:
        replica = self._nodes.pop(node, None)
        if replica is not None:
            self._changed(replica.counts, {})

    def _changed(self, old: dict[str, int], new: dict[str, int]) -> None:
        """Fold one node's count changes into the per-room remote totals; tell the hub."""
        remote = self._remote
        hub = self._hub
        for room in old.keys() | new.keys():
            delta = new.get(room, 0) - old.get(room, 0)
            if not delta:
                continue
            total = remote.get(room, 0) + delta
            if total > 0:
                remote[room] = total
            else:
                remote.pop(room, None)
            if hub is not None:
                hub.count_changed(room)


class _Ask:
    """A session close this node asked the others for, and their answers so far."""

    __slots__ = ("future", "nodes", "noes")

    def __init__(self, future: asyncio.Future[bool]) -> None:
        self.future = future
        #: How many nodes answer; unknown until PUBLISH returned (answers may come first).
        self.nodes: int | None = None
        self.noes = 0

    def expect(self, nodes: int) -> None:
        self.nodes = nodes
        self._settle()

    def answered(self, found: bool) -> None:
        if found:
            if not self.future.done():
                self.future.set_result(True)
            return
        self.noes += 1
        self._settle()

    def _settle(self) -> None:
        if self.nodes is not None and self.noes >= self.nodes and not self.future.done():
            self.future.set_result(False)


def _deliver_frames(hub: Hub, room: str, data: bytes) -> tuple[int, bool]:
    """Hand each frame of a published batch (after the origin id) to the hub; returns how many.
    Server frames are never masked: a 2-byte header, plus 2 or 8 bytes of extended length.

    Returns how many frames were delivered and whether the message was intact; the frames of a
    truncated or foreign message up to the first malformed one are delivered, the rest dropped."""
    size = len(data)
    offset = _NODE_ID_SIZE
    frames = 0
    while offset + 2 <= size:
        second = data[offset + 1]
        if second & 0x80:
            break  # masked: not a frame a node publishes
        length = second & 0x7F
        if length < 126:
            header = 2
        elif length == 126:
            header = 4
        else:
            header = 10
        if offset + header > size:
            break
        if header > 2:
            length = int.from_bytes(data[offset + 2:offset + header], "big")
        end = offset + header + length
        if end > size:
            break
        hub.deliver_remote(room, data[offset:end])
        frames += 1
        offset = end
    if offset == size:
        return frames, True
    log.warning("cluster: dropping %d malformed byte(s) of a message for room %r (%d frame(s) delivered)",
                max(0, size - offset), room, frames)
    return frames, False


def _redact(url: str) -> str:
    """The URL without a password, for logs."""
    scheme, sep, rest = url.partition("://")
    if "@" in rest:
        rest = "***@" + rest.rpartition("@")[2]
    return scheme + sep + rest


async def _quietly(awaitable: Any) -> None:
    try:
        await asyncio.wait_for(awaitable, 1.0)
    except Exception:
        pass
