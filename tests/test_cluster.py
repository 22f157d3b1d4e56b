"""Scale-out: `diesel serve --cluster` nodes sharing rooms through a real redis-server.

Every test starts its own redis-server on a free port (skipped, with the reason, when the
binary is missing; `.ci/run` installs Debian's `redis-server`) and two or three servers.
No timing assertions other than SPEC.md's bounds (a dead node's members gone within 15 s);
everything else polls with a generous deadline.
"""

from __future__ import annotations

import json
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from conftest import RunningServer, free_port, start_server, write_scripts

REDIS_SERVER = shutil.which("redis-server")
pytestmark = pytest.mark.skipif(
    REDIS_SERVER is None,
    reason="redis-server is not installed (apt-get install redis-server; .ci/run installs it)",
)

#: A room chat driven by commands, so a test can make any session broadcast, leave or count.
#: `?room=` picks the room, `?join=0` opens a session that is not a member (a count probe).
CHAT = """
    import json
    import os

    def on_open(session):
        room = session.get_parameter("room") or "lobby"
        session.set_attribute("room", room)
        if session.get_parameter("join") != "0":
            session.room(room).join()
        session.send(json.dumps({"id": session.id, "pid": os.getpid()}))

    def on_message(session, message):
        room = session.room(session.get_attribute("room"))
        command, _, arg = message.partition(" ")
        if command == "count":
            session.send(f"count {room.members()}")
        elif command == "all":
            room.broadcast(arg)
        elif command == "others":
            room.broadcast_except(arg)
        elif command == "burst":
            tag, _, n = arg.partition(" ")
            for i in range(int(n)):
                room.broadcast_except(f"{tag} {i}")
        elif command == "leave":
            room.leave()
            session.send("left")
        elif command == "join":
            room.join()
            session.send("joined")
"""


class Redis:
    """A redis-server subprocess on a fixed port that a test can kill and start again."""

    def __init__(self, folder: Path) -> None:
        self.port = free_port()
        self.folder = folder
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        log = open(self.folder / "redis.log", "ab")
        self.proc = subprocess.Popen(
            [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.folder)],
            stdout=log, stderr=log,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(64).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.02)
        raise AssertionError("redis-server did not start")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[Redis]:
    folder = tmp_path / "redis"
    folder.mkdir()
    server = Redis(folder)
    server.start()
    yield server
    server.kill()


@pytest.fixture
def app(tmp_path: Path) -> Path:
    return write_scripts(tmp_path / "app", {"chat.py": CHAT})


@pytest.fixture
def cluster(serve: Callable[..., RunningServer], redis: Redis, app: Path) -> Callable[[int], list[RunningServer]]:
    """`cluster(n)`: n nodes on the test's Redis."""
    return lambda n, *flags: [serve(app, "--cluster", redis.url, *flags) for _ in range(n)]


class Client:
    """A synchronous WebSocket client of the chat route; `hello` is its open message."""

    def __init__(self, server: RunningServer, room: str = "lobby", join: bool = True) -> None:
        # Entered by hand: the connection lives as long as the test needs it (websockets >= 16
        # warns when connect() is neither a context manager nor `legacy=True`, which older lacks).
        self.ws: ClientConnection = connect(server.url(f"/ws/chat?room={room}&join={int(join)}"),
                                            open_timeout=10, max_queue=None).__enter__()
        self.hello = json.loads(self.recv())

    def send(self, text: str) -> None:
        self.ws.send(text)

    def recv(self, timeout: float = 10.0) -> str:
        message = self.ws.recv(timeout)
        assert isinstance(message, str)
        return message

    def nothing(self, wait: float = 0.5) -> None:
        """Nothing more arrives within `wait` seconds."""
        with pytest.raises(TimeoutError):
            extra = self.ws.recv(wait)
            pytest.fail(f"unexpected message {extra!r}")

    def count(self) -> int:
        self.send("count")
        reply = self.recv()
        assert reply.startswith("count "), reply
        return int(reply.split()[1])

    def close(self) -> None:
        self.ws.close()


def wait_counts(probes: list[Client], expected: int, timeout: float = 5.0) -> float:
    """Poll `members()` through every probe until all report `expected`; returns the seconds taken."""
    start = time.monotonic()
    seen: list[int] = []
    while time.monotonic() - start < timeout:
        seen = [probe.count() for probe in probes]
        if all(count == expected for count in seen):
            return time.monotonic() - start
        time.sleep(0.05)
    raise AssertionError(f"counts never settled on {expected}: last seen {seen}")


def metric(server: RunningServer, name: str) -> float:
    status, body = server.http("/metrics")
    assert status == 200
    match = re.search(rf"^{name} ([0-9.e+]+)$", body, re.M)
    assert match, f"{name} missing from /metrics"
    return float(match.group(1))


def wait_health(server: RunningServer, status: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = server.http("/healthz")
        if last[0] == status:
            return
        time.sleep(0.05)
    raise AssertionError(f"/healthz never answered {status}; last {last}")


# -- broadcasts ----------------------------------------------------------------------------------


def test_broadcasts_cross_nodes_both_ways_without_echo(cluster: Callable[..., list[RunningServer]]) -> None:
    one, two, three = cluster(3)
    a, b, c = Client(one), Client(two), Client(three)
    wait_counts([a, b, c], 3)

    a.send("others from-a")
    assert b.recv() == "from-a"
    assert c.recv() == "from-a"
    c.send("others from-c")
    assert a.recv() == "from-c"
    assert b.recv() == "from-c"
    # broadcast() includes a sender that is a member: exactly once, locally, never echoed back.
    b.send("all from-b")
    assert b.recv() == "from-b"
    assert a.recv() == "from-b"
    assert c.recv() == "from-b"
    for client in (a, b, c):
        client.nothing()

    # A second sender on the same node as a receiver still reaches the other nodes.
    a2 = Client(one)
    wait_counts([a, b, c], 4)
    a2.send("others from-a2")
    assert [a.recv(), b.recv(), c.recv()] == ["from-a2"] * 3
    a2.nothing(0.2)


def test_sender_order_is_kept_across_nodes(cluster: Callable[..., list[RunningServer]]) -> None:
    one, two, three = cluster(3)
    a, b, c = Client(one), Client(two), Client(three)
    wait_counts([a, b, c], 3)

    n = 500
    a.send(f"burst a {n}")
    b.send(f"burst b {n}")
    got_c = [c.recv() for _ in range(2 * n)]
    for tag in "ab":
        assert [m for m in got_c if m.startswith(tag + " ")] == [f"{tag} {i}" for i in range(n)]
    assert [b.recv() for _ in range(n)] == [f"a {i}" for i in range(n)]
    assert [a.recv() for _ in range(n)] == [f"b {i}" for i in range(n)]

    # One message per handler call, many calls: the order holds across ticks too.
    for i in range(200):
        a.send(f"others single {i}")
    assert [c.recv() for _ in range(200)] == [f"single {i}" for i in range(200)]
    assert [b.recv() for _ in range(200)] == [f"single {i}" for i in range(200)]


def test_only_rooms_with_local_members_are_received(cluster: Callable[..., list[RunningServer]],
                                                     redis: Redis) -> None:
    one, two = cluster(2)
    a, b = Client(one, room="red"), Client(two, room="blue")
    probe = Client(two, room="red", join=False)
    wait_counts([a, probe], 1)
    a.send("all to-red")
    assert a.recv() == "to-red"
    b.nothing(0.3)
    # Node two has no member in "red": it is not subscribed, so nothing arrived there.
    assert metric(two, "diesel_cluster_received_total") == 0
    import redis as redis_py

    client = redis_py.Redis.from_url(redis.url)
    try:
        assert dict(client.pubsub_numsub("diesel:room:red", "diesel:room:blue")) == {
            b"diesel:room:red": 1, b"diesel:room:blue": 1}
    finally:
        client.close()
    # A non-member may broadcast; it reaches the members on the other node.
    probe.send("others from-probe")
    assert a.recv() == "from-probe"


# -- counts --------------------------------------------------------------------------------------


def test_counts_agree_on_every_node(cluster: Callable[..., list[RunningServer]]) -> None:
    nodes = cluster(3)
    probes = [Client(node, room="r", join=False) for node in nodes]
    wait_counts(probes, 0)

    members = [Client(node, room="r") for node in nodes for _ in range(2)]
    # A node's own joins count at once.
    assert Client(nodes[0], room="r", join=False).count() >= 2
    wait_counts(probes, 6)

    members[0].send("leave")
    assert members[0].recv() == "left"
    members[3].close()
    wait_counts(probes, 4)

    members[0].send("join")
    assert members[0].recv() == "joined"
    wait_counts(probes, 5)

    for client in members:
        client.close()
    wait_counts(probes, 0)


def test_counts_settle_within_a_second(cluster: Callable[..., list[RunningServer]]) -> None:
    one, two = cluster(2)
    probe = Client(one, room="fast", join=False)
    wait_counts([probe], 0)
    joined = Client(two, room="fast")
    took = wait_counts([probe], 1)
    assert took < 1.0 + 0.5, f"a remote join took {took:.2f} s to count (SPEC: within a second)"
    joined.close()
    took = wait_counts([probe], 0)
    assert took < 1.0 + 0.5, f"a remote leave took {took:.2f} s to count"


def test_a_killed_node_drops_out_of_every_count_within_15s(cluster: Callable[..., list[RunningServer]]) -> None:
    one, two, three = cluster(3)
    keep = [Client(one, room="k"), Client(three, room="k")]
    doomed = [Client(two, room="k") for _ in range(3)]
    probes = [Client(one, room="k", join=False), Client(three, room="k", join=False)]
    wait_counts(probes, 5)

    two.proc.send_signal(signal.SIGKILL)
    two.proc.wait()
    killed = time.monotonic()
    wait_counts(probes, 2, timeout=20.0)
    took = time.monotonic() - killed
    assert took < 15.0, f"the killed node's members counted for {took:.1f} s (SPEC: 15 s)"
    # The survivors still talk.
    keep[0].send("others still-here")
    assert keep[1].recv() == "still-here"
    del doomed


def test_cluster_prefix_separates_clusters(serve: Callable[..., RunningServer], redis: Redis, app: Path) -> None:
    blue = serve(app, "--cluster", redis.url, "--cluster-prefix", "blue")
    green = serve(app, "--cluster", redis.url, "--cluster-prefix", "green")
    blue2 = serve(app, "--cluster", redis.url, "--cluster-prefix", "blue")
    a, b, c = Client(blue), Client(green), Client(blue2)
    wait_counts([a, c], 2)
    assert b.count() == 1
    a.send("others blue-only")
    assert c.recv() == "blue-only"
    b.nothing(0.3)


def test_sigterm_withdraws_the_node_at_once(cluster: Callable[..., list[RunningServer]]) -> None:
    one, two = cluster(2)
    stay = Client(one, room="t")
    leaving = Client(two, room="t")
    wait_counts([stay], 2)
    assert two.stop(signal.SIGTERM) == 0
    with pytest.raises(ConnectionClosed) as closed:
        leaving.recv()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001
    wait_counts([stay], 1, timeout=2.0)


# -- Redis faults --------------------------------------------------------------------------------


def test_redis_restart_mid_conversation(cluster: Callable[..., list[RunningServer]], redis: Redis) -> None:
    one, two = cluster(2)
    a, b = Client(one), Client(two)
    local = Client(one)
    wait_counts([a, b], 3)
    a.send("others before")
    assert b.recv() == "before"
    assert local.recv() == "before"
    assert metric(one, "diesel_cluster_healthy") == 1

    redis.kill()
    wait_health(one, 503)
    wait_health(two, 503)
    status, body = one.http("/healthz")
    assert json.loads(body)["status"] == "degraded"
    # Local rooms keep working while Redis is gone; cross-node frames are dropped, not queued.
    a.send("others during")
    assert local.recv() == "during"
    assert a.count() == 3  # the last known count is kept

    redis.start()
    wait_health(one, 200)
    wait_health(two, 200)
    # Each node re-reads the others' counts when it reconnects: until node one has seen node two
    # rewrite its own, it knows of no member there and publishes nothing (at most once).
    wait_counts([a, b], 3)
    a.send("others after")
    assert b.recv() == "after"  # "during" was dropped (at most once), not replayed late
    assert local.recv() == "after"
    b.send("others back")
    assert a.recv() == "back"
    assert local.recv() == "back"
    wait_counts([a, b], 3)
    # The restarted Redis lost every key: the counts were rewritten by the nodes themselves.
    new = Client(two)
    wait_counts([a, b], 4)
    del new
    for node in (one, two):
        assert metric(node, "diesel_cluster_reconnects_total") >= 1
        assert metric(node, "diesel_cluster_errors_total") >= 1
    assert metric(one, "diesel_cluster_dropped_total") >= 1


def test_starts_degraded_while_redis_is_down(serve: Callable[..., RunningServer], redis: Redis, app: Path) -> None:
    redis.kill()
    node = serve(app, "--cluster", redis.url)
    assert node.http("/healthz")[0] == 503
    a, b = Client(node), Client(node)
    a.send("others local-only")
    assert b.recv() == "local-only"
    redis.start()
    wait_health(node, 200)


# -- workers -------------------------------------------------------------------------------------


def test_workers_share_rooms(tmp_path: Path, redis: Redis, app: Path) -> None:
    server = start_server(app, "--cluster", redis.url, "--workers", "2", log_path=tmp_path / "workers.log")
    try:
        by_pid: dict[int, Client] = {}
        clients = []
        for _ in range(40):
            client = Client(server)
            clients.append(client)
            by_pid.setdefault(client.hello["pid"], client)
            if len(by_pid) == 2:
                break
        assert len(by_pid) == 2, "40 connections all landed on one worker"
        assert server.proc.pid not in by_pid  # the parent only supervises
        first, second = by_pid.values()
        wait_counts([first, second], len(clients))
        first.send("others across-workers")
        assert second.recv() == "across-workers"
        second.send("others and-back")
        assert first.recv() == "and-back"

        # A crashed worker is restarted.
        victim = next(iter(by_pid))
        subprocess.run(["kill", "-KILL", str(victim)], check=True)
        server.wait_log(rf"worker \d \(pid {victim}\) exited with status -9")
        deadline = time.monotonic() + 10
        while len(re.findall(r"worker \d started", server.log())) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(re.findall(r"worker \d started", server.log())) == 3, server.log()

        survivor = second if first.hello["pid"] == victim else first
        assert server.stop(signal.SIGTERM) == 0
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                survivor.recv()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001
        assert "all workers stopped" in server.log()
    finally:
        if server.proc.poll() is None:
            server.proc.kill()
            server.proc.wait()


# -- in-process checks of the bus internals (no server needed) -----------------------------------


class _FakeHub:
    def __init__(self) -> None:
        self.frames: list[tuple[str, bytes]] = []

    def deliver_remote(self, room: str, frame: bytes) -> None:
        self.frames.append((room, frame))

    def count_changed(self, room: str) -> None:
        pass


def test_malformed_published_messages_are_dropped_not_fatal() -> None:
    from dieselengine.redis_bus import _deliver_frames

    node = b"N" * 8
    small = b"\x81\x02hi"
    medium = b"\x81\x7e\x00\x80" + b"x" * 128
    hub = _FakeHub()
    assert _deliver_frames(hub, "r", node + small + medium) == (2, True)  # type: ignore[arg-type]
    assert hub.frames == [("r", small), ("r", medium)]
    for bad in (node + small + b"\x81",             # 1 header byte
                node + small + b"\x81\x7e\x00",     # 16-bit length cut short
                node + small + b"\x81\x7f" + b"\x00" * 7,  # 64-bit length cut short
                node + small + b"\x81\x05abc",      # payload cut short
                node + small + b"\x81\x82abcdef",   # masked: not a node's frame
                b"NNN"):                            # shorter than the origin id
        hub = _FakeHub()
        delivered, intact = _deliver_frames(hub, "r", bad)  # type: ignore[arg-type]
        assert not intact, bad
        assert delivered == (0 if bad == b"NNN" else 1)
        assert hub.frames == ([] if bad == b"NNN" else [("r", small)])


def test_a_room_joined_while_subscribing_is_announced_only_once_subscribed() -> None:
    import asyncio
    from types import SimpleNamespace

    from dieselengine.redis_bus import RedisBus

    announced: list[dict[str, int]] = []

    class Pipe:
        async def __aenter__(self) -> Pipe:
            return self

        async def __aexit__(self, *exc: object) -> None:
            pass

        def publish(self, channel: bytes, message: str) -> None:
            announced.append(json.loads(message)["c"])

        def __getattr__(self, name: str) -> Callable[..., None]:
            return lambda *args, **kwargs: None

        async def execute(self) -> list[int]:
            return [1]

    class Client:
        def pipeline(self, transaction: bool) -> Pipe:
            return Pipe()

    async def scenario() -> None:
        bus = RedisBus(SimpleNamespace(cluster="redis://127.0.0.1:1/0", cluster_prefix="t"))  # type: ignore[arg-type]
        subscribe_calls: list[tuple[bytes, ...]] = []

        class Sub:
            async def send_command(self, command: str, *channels: bytes) -> None:
                assert command == "SUBSCRIBE"
                subscribe_calls.append(channels)
                if len(subscribe_calls) == 1:
                    bus.local_count("late", 1)  # a session joins while Redis has not confirmed yet
                loop = asyncio.get_running_loop()
                for channel in channels:  # Redis confirms, a little later
                    loop.call_soon(bus._confirm.pop(channel).set_result, None)

        bus.local_count("early", 1)
        await bus._update_subscriptions(Sub())  # type: ignore[arg-type]
        await bus._push(Client(), full=False)  # type: ignore[arg-type]
        assert announced == [{"early": 1}]
        assert bus._dirty == {"late"} and bus._wake_sync.is_set()

        await bus._update_subscriptions(Sub())  # type: ignore[arg-type]
        assert subscribe_calls[1] == (b"t:room:late",)
        await bus._push(Client(), full=False)  # type: ignore[arg-type]
        assert announced[1] == {"late": 1}
        assert not bus._dirty

        # A full push (after reconnecting) leaves unsubscribed local rooms dirty as well.
        bus._subscribed.discard("late")
        await bus._push(Client(), full=True)  # type: ignore[arg-type]
        assert announced[2] == {"early": 1}
        assert bus._dirty == {"late"}

    asyncio.run(scenario())
