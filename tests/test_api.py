"""The HTTP API (`--api-key`), through real HTTP requests and real WebSocket clients; across two
nodes with a real redis-server for the cluster half."""

from __future__ import annotations

import http.client
import json
import re
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

import pytest
from conftest import RunningServer, write_scripts
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

KEY = "test-key-9f2c"

#: Joins the room named by `?room=` and sends its session id first.
MEMBER = """
    def on_open(session):
        session.room(session.get_parameter("room") or "lobby").join()
        session.send(session.id)

    def on_message(session, message):
        if message == "count":
            session.send(str(session.room(session.get_parameter("room") or "lobby").members()))
"""


def request(server: RunningServer, method: str, path: str, body: bytes | None = None,
            headers: dict[str, str] | None = None, key: str | None = KEY) -> tuple[int, dict[str, str], object]:
    """One API request: (status, headers with lower-case names, the JSON body or its text)."""
    sent = dict(headers or {})
    if key is not None:
        sent["Authorization"] = f"Bearer {key}"
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        connection.request(method, path, body=body, headers=sent)
        response = connection.getresponse()
        text = response.read().decode()
        received = {name.lower(): value for name, value in response.getheaders()}
    finally:
        connection.close()
    try:
        return response.status, received, json.loads(text)
    except ValueError:
        return response.status, received, text


def member(server: RunningServer, room: str = "lobby") -> tuple[ClientConnection, str]:
    """A WebSocket client that joined `room`; with its session id."""
    ws = connect(server.url(f"/ws/member?room={quote(room, safe='')}"), open_timeout=10).__enter__()
    session_id = ws.recv(10)
    assert isinstance(session_id, str)
    return ws, session_id


def api_metric(server: RunningServer, route: str, status: int) -> float:
    text = server.http("/metrics")[1]
    match = re.search(rf'^diesel_api_requests_total\{{route="{re.escape(route)}",status="{status}"\}} (\S+)$',
                      text, re.M)
    return float(match.group(1)) if match else 0.0


@pytest.fixture
def app(tmp_path: Path) -> Path:
    return write_scripts(tmp_path / "app", {"member.py": MEMBER})


@pytest.fixture
def node(serve: Callable[..., RunningServer], app: Path) -> RunningServer:
    return serve(app, "--api-key", KEY, "--max-message-size", "64K")


def test_the_api_is_off_without_a_key(serve: Callable[..., RunningServer], app: Path) -> None:
    server = serve(app)
    status, _, _ = request(server, "GET", "/api/rooms")
    assert status == 404
    assert "diesel_api_requests" not in server.http("/metrics")[1]


def test_an_empty_key_is_refused_at_start(app: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "dieselengine", "serve", str(app), "--api-key", " "],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == \
        "diesel: error: --api-key must not be empty nor begin or end with a space"


def test_every_request_needs_the_key(node: RunningServer) -> None:
    status, headers, body = request(node, "GET", "/api/rooms", key=None)
    assert (status, body) == (401, {"error": "an API key is required: Authorization: Bearer <key>"})
    assert headers["www-authenticate"].startswith("Bearer")
    assert headers["content-type"] == "application/json"
    assert request(node, "GET", "/api/rooms", headers={"Authorization": "Basic " + KEY}, key=None)[0] == 401
    status, _, body = request(node, "GET", "/api/rooms", key=KEY + "x")
    assert (status, body) == (403, {"error": "wrong API key"})
    assert request(node, "POST", "/api/rooms/lobby/broadcast", b"hi", key="short")[0] == 403
    assert request(node, "GET", "/api/nothing/here", key=None)[0] == 401  # no key: no map of the API either
    assert request(node, "GET", "/api/rooms")[0] == 200
    assert api_metric(node, "/api/rooms", 401) == 2
    assert api_metric(node, "/api/rooms", 403) == 1
    assert api_metric(node, "/api/rooms", 200) == 1


def test_broadcast_sends_text_or_binary_by_content_type(node: RunningServer) -> None:
    first, _ = member(node)
    second, _ = member(node)
    with first, second:
        status, _, body = request(node, "POST", "/api/rooms/lobby/broadcast", "héllo".encode(),
                                  {"Content-Type": "text/plain; charset=utf-8"})
        assert (status, body) == (202, {"room": "lobby", "members": 2})
        assert first.recv(10) == second.recv(10) == "héllo"

        request(node, "POST", "/api/rooms/lobby/broadcast", b'{"score": 3}', {"Content-Type": "application/json"})
        assert first.recv(10) == '{"score": 3}'
        request(node, "POST", "/api/rooms/lobby/broadcast", b"\x00\xff",
                {"Content-Type": "application/octet-stream"})
        assert first.recv(10) == b"\x00\xff"
        request(node, "POST", "/api/rooms/lobby/broadcast", b"no type")  # no Content-Type: binary
        assert first.recv(10) == b"no type"
        request(node, "POST", "/api/rooms/lobby/broadcast", b"", {"Content-Type": "text/plain"})
        assert first.recv(10) == ""
        assert second.recv(10) == '{"score": 3}'
    assert api_metric(node, "/api/rooms/{name}/broadcast", 202) == 5


def test_broadcast_to_an_empty_room_is_answered_with_no_members(node: RunningServer) -> None:
    status, _, body = request(node, "POST", "/api/rooms/nobody/broadcast", b"x", {"Content-Type": "text/plain"})
    assert (status, body) == (202, {"room": "nobody", "members": 0})
    assert request(node, "GET", "/api/rooms")[2] == {"rooms": []}


def test_broadcast_refuses_bad_bodies(node: RunningServer) -> None:
    ws, _ = member(node)
    with ws:
        status, _, body = request(node, "POST", "/api/rooms/lobby/broadcast", b"caf\xe9",
                                  {"Content-Type": "text/plain"})
        assert (status, body) == (400, {"error": "a text body must be UTF-8"})
        status, _, body = request(node, "POST", "/api/rooms/lobby/broadcast", b"x" * (64 * 1024 + 1),
                                  {"Content-Type": "text/plain"})
        assert (status, body) == (413, {"error": "body over 65536 bytes (--max-message-size)"})
        # A client that sends a large body anyway still reads the 413 (the server drains, not resets).
        status, _, _ = request(node, "POST", "/api/rooms/lobby/broadcast", b"x" * (8 << 20))
        assert status == 413
        status, _, _ = request(node, "POST", "/api/rooms/lobby/broadcast", iter([b"chunk"]),
                               {"Transfer-Encoding": "chunked"})
        assert status == 411
        # The largest body allowed goes through, and nothing refused reached the member.
        assert request(node, "POST", "/api/rooms/lobby/broadcast", b"y" * (64 * 1024))[0] == 202
        assert ws.recv(10) == b"y" * (64 * 1024)
        with pytest.raises(TimeoutError):
            ws.recv(0.3)
    assert api_metric(node, "/api/rooms/{name}/broadcast", 413) == 2


def test_bodies_being_read_at_once_have_a_budget(serve: Callable[..., RunningServer], app: Path) -> None:
    """64 MiB of bodies in flight at most (four of 16M here): the fifth waits its turn with 503,
    and a client that drops its connection mid-body gives its share back."""
    node = serve(app, "--api-key", KEY, "--max-message-size", "16M")
    head = (f"POST /api/rooms/lobby/broadcast HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\n"
            f"Content-Length: {16 << 20}\r\n\r\n").encode() + b"x" * 1000
    slow = [socket.create_connection(("127.0.0.1", node.port), timeout=10) for _ in range(4)]
    for sock in slow:
        sock.sendall(head)
    time.sleep(0.3)  # the server has read the four heads
    status, headers, body = request(node, "POST", "/api/rooms/lobby/broadcast", b"x")
    assert (status, headers["retry-after"]) == (503, "1"), body
    slow.pop().close()
    wait_for(lambda: request(node, "POST", "/api/rooms/lobby/broadcast", b"x")[0] == 202)
    for sock in slow:
        sock.close()


def test_a_body_sent_in_pieces_is_read_whole(node: RunningServer) -> None:
    ws, _ = member(node)
    with ws, socket.create_connection(("127.0.0.1", node.port), timeout=10) as sock:
        body = "x" * 5000
        sock.sendall((f"POST /api/rooms/lobby/broadcast HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\n"
                      f"Content-Type: text/plain\r\nContent-Length: {len(body)}\r\n\r\n{body[:10]}").encode())
        time.sleep(0.2)
        sock.sendall(body[10:3000].encode())
        time.sleep(0.2)
        sock.sendall(body[3000:].encode())
        answer = sock.makefile("rb").read()
        assert answer.startswith(b"HTTP/1.1 202 ")
        assert ws.recv(10) == body


def test_expect_100_continue_is_answered(node: RunningServer) -> None:
    with socket.create_connection(("127.0.0.1", node.port), timeout=10) as sock:
        sock.sendall((f"POST /api/rooms/lobby/broadcast HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\n"
                      "Content-Length: 3\r\nExpect: 100-continue\r\n\r\n").encode())
        assert sock.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(b"abc")
        assert sock.makefile("rb").read().startswith(b"HTTP/1.1 202 ")


def test_room_names_are_percent_decoded_segments(node: RunningServer) -> None:
    name = "a/b c+d é"
    encoded = "a%2Fb%20c+d%20%C3%A9"
    ws, _ = member(node, name)
    with ws:
        status, _, body = request(node, "POST", f"/api/rooms/{encoded}/broadcast", b"to a/b", {"Content-Type": "text/plain"})
        assert (status, body) == (202, {"room": name, "members": 1})
        assert ws.recv(10) == "to a/b"
        assert request(node, "GET", f"/api/rooms/{encoded}")[2] == {"name": name, "members": 1}
        assert request(node, "GET", "/api/rooms")[2] == {"rooms": [{"name": name, "members": 1}]}
        assert request(node, "GET", "/api/rooms/never%20used")[2] == {"name": "never used", "members": 0}
        # An unencoded slash is a path separator, not part of a name.
        assert request(node, "GET", "/api/rooms/a/b")[0] == 404
        status, _, body = request(node, "GET", "/api/rooms/%FF")
        assert status == 400 and "UTF-8" in body["error"]  # type: ignore[index]


def test_a_javascript_room_name_with_a_lone_surrogate_is_reachable(serve: Callable[..., RunningServer],
                                                                   tmp_path: Path) -> None:
    app = write_scripts(tmp_path / "js", {"odd.js": """
        export function onOpen(session) { session.room("\\ud800x").join(); session.send("in"); }
    """})
    node = serve(app, "--api-key", KEY)
    with connect(node.url("/ws/odd"), open_timeout=10) as ws:
        assert ws.recv(10) == "in"
        assert request(node, "GET", "/api/rooms")[2] == {"rooms": [{"name": "\ud800x", "members": 1}]}
        status, _, body = request(node, "POST", "/api/rooms/%ED%A0%80x/broadcast", b"odd", {"Content-Type": "text/plain"})
        assert (status, body) == (202, {"room": "\ud800x", "members": 1})
        assert ws.recv(10) == "odd"


def test_rooms_lists_every_room_with_its_count(node: RunningServer) -> None:
    clients = [member(node, room)[0] for room in ("red", "red", "blue")]
    try:
        assert request(node, "GET", "/api/rooms")[2] == {"rooms": [{"name": "blue", "members": 1},
                                                                   {"name": "red", "members": 2}]}
        assert request(node, "GET", "/api/rooms/red")[2] == {"name": "red", "members": 2}
    finally:
        for ws in clients:
            ws.close()


def test_wrong_methods_and_unknown_paths(node: RunningServer) -> None:
    status, headers, body = request(node, "POST", "/api/rooms")
    assert (status, headers["allow"], body) == (405, "GET", {"error": "/api/rooms takes GET"})
    status, headers, _ = request(node, "GET", "/api/rooms/lobby/broadcast")
    assert (status, headers["allow"]) == (405, "POST")
    assert request(node, "DELETE", "/api/rooms/lobby")[0] == 405
    assert request(node, "GET", "/api/sessions/abc/close")[0] == 405
    status, _, body = request(node, "GET", "/api/sessions")
    assert (status, body) == (404, {"error": "no such API endpoint"})
    assert api_metric(node, "other", 404) == 1
    assert api_metric(node, "/api/rooms", 405) == 1


def test_close_a_session(node: RunningServer) -> None:
    ws, session_id = member(node)
    status, _, body = request(node, "POST", f"/api/sessions/{session_id}/close",
                              json.dumps({"code": 4000, "reason": "kicked"}).encode(),
                              {"Content-Type": "application/json"})
    assert (status, body) == (202, {"session": session_id})
    with pytest.raises(ConnectionClosed) as closed:
        ws.recv(10)
    assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (4000, "kicked")  # type: ignore[union-attr]

    other, other_id = member(node)
    with other:
        assert request(node, "POST", f"/api/sessions/{other_id}/close", json.dumps({"code": 99}).encode())[0] == 400
        assert request(node, "POST", f"/api/sessions/{other_id}/close", b"[1]")[0] == 400
        assert request(node, "POST", f"/api/sessions/{other_id}/close", b"{not json")[0] == 400
        assert request(node, "POST", f"/api/sessions/{other_id}/close",
                       json.dumps({"reason": "x" * 124}).encode())[0] == 400
        assert request(node, "POST", f"/api/sessions/{other_id}/close")[0] == 202  # no body: 1000
        with pytest.raises(ConnectionClosed) as closed:
            other.recv(10)
        assert closed.value.rcvd.code == 1000  # type: ignore[union-attr]

    status, _, body = request(node, "POST", "/api/sessions/0123456789abcdef/close")
    assert (status, body) == (404, {"error": "no such session"})
    assert api_metric(node, "/api/sessions/{id}/close", 404) == 1


# -- across a cluster ----------------------------------------------------------------------------

from test_cluster import REDIS_SERVER, Redis, redis  # noqa: E402,F401 (redis: the fixture)

needs_redis = pytest.mark.skipif(
    REDIS_SERVER is None, reason="redis-server is not installed (apt-get install redis-server; .ci/run installs it)")


def wait_for(check: Callable[[], object], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition never held")
        time.sleep(0.05)


@needs_redis
def test_the_api_of_one_node_reaches_the_whole_cluster(serve: Callable[..., RunningServer], app: Path,
                                                       redis: Redis) -> None:
    one = serve(app, "--api-key", KEY, "--cluster", redis.url)
    two = serve(app, "--api-key", KEY, "--cluster", redis.url)
    there, there_id = member(two, "a/b c")
    also_there, _ = member(two, "solo")
    here, _ = member(one, "a/b c")
    with there, also_there, here:
        # Counts are cluster-wide once the replicas settled (README: within milliseconds).
        wait_for(lambda: request(one, "GET", "/api/rooms/a%2Fb%20c")[2] == {"name": "a/b c", "members": 2})
        wait_for(lambda: request(one, "GET", "/api/rooms")[2] == {
            "rooms": [{"name": "a/b c", "members": 2}, {"name": "solo", "members": 1}]})

        status, _, body = request(one, "POST", "/api/rooms/a%2Fb%20c/broadcast", b"from one",
                                  {"Content-Type": "text/plain"})
        assert (status, body) == (202, {"room": "a/b c", "members": 2})
        assert there.recv(10) == "from one"
        assert here.recv(10) == "from one"
        request(one, "POST", "/api/rooms/solo/broadcast", b"\x01\x02")
        assert also_there.recv(10) == b"\x01\x02"

        status, _, body = request(one, "POST", f"/api/sessions/{there_id}/close",
                                  json.dumps({"code": 4001, "reason": "from node one"}).encode())
        assert (status, body) == (202, {"session": there_id})
        with pytest.raises(ConnectionClosed) as closed:
            there.recv(10)
        assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (4001, "from node one")  # type: ignore[union-attr]

        status, _, body = request(one, "POST", "/api/sessions/ffffffffffffffff/close")
        assert (status, body) == (404, {"error": "no such session"})
        wait_for(lambda: request(one, "GET", "/api/rooms/a%2Fb%20c")[2] == {"name": "a/b c", "members": 1})


@needs_redis
def test_closing_through_an_unreachable_cluster_says_so(serve: Callable[..., RunningServer], app: Path,
                                                        redis: Redis) -> None:
    one = serve(app, "--api-key", KEY, "--cluster", redis.url)
    redis.kill()
    wait_for(lambda: one.http("/healthz")[0] == 503)
    status, _, body = request(one, "POST", "/api/sessions/ffffffffffffffff/close")
    assert status == 503 and "cluster" in body["error"]  # type: ignore[index]


def test_the_api_over_tls(serve: Callable[..., RunningServer], app: Path, tmp_path: Path) -> None:
    """A body read through TLS, and a 413 that reaches a client still sending its body."""
    from test_tls import Certificates, pytestmark as tls_available

    if tls_available.args[0]:
        pytest.skip(tls_available.kwargs["reason"])
    certs = Certificates(tmp_path)
    node = serve(app, "--api-key", KEY, "--max-message-size", "64K", *certs.flags(), ready=False)
    wait_for(lambda: _https(node, certs, "GET", "/healthz", b"", {})[0] == 200)
    with connect(f"wss://127.0.0.1:{node.port}/ws/member?room=lobby", ssl=certs.client(), open_timeout=10) as ws:
        ws.recv(10)
        body = "é" * 20_000
        status, answer = _https(node, certs, "POST", "/api/rooms/lobby/broadcast", body.encode(),
                                {"Content-Type": "text/plain", "Authorization": f"Bearer {KEY}"})
        assert (status, answer) == (202, {"room": "lobby", "members": 1})
        assert ws.recv(10) == body
        status, answer = _https(node, certs, "POST", "/api/rooms/lobby/broadcast", b"x" * (4 << 20),
                                {"Authorization": f"Bearer {KEY}"})
        assert (status, answer) == (413, {"error": "body over 65536 bytes (--max-message-size)"})


def _https(node: RunningServer, certs: object, method: str, path: str, body: bytes,
           headers: dict[str, str]) -> tuple[int, object]:
    connection = http.client.HTTPSConnection("127.0.0.1", node.port, timeout=10,
                                             context=certs.client())  # type: ignore[attr-defined]
    try:
        connection.request(method, path, body=body or None, headers=headers)
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    except OSError:
        return 0, None
    finally:
        connection.close()
