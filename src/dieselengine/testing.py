"""Test your handler scripts in process, with the real runtimes and hub but no sockets.

    from dieselengine.testing import Harness

    def test_chat():
        with Harness("chat.js") as app:                    # a script, or a folder of them
            alice = app.connect("/ws/chat?user=alice")
            assert alice.receive_json()["type"] == "welcome"
            bob = app.connect("/ws/chat", params={"user": "bob"})
            assert alice.receive_json() == {"type": "join", "user": "bob"}
            bob.send("hello")
            assert alice.receive_json()["text"] == "hello"
            assert app.members("chat") == 2
            app.advance(30)                                # timers due in the next 30 s run now

Everything is synchronous, so plain pytest functions work (no plugin). Each call returns once the
scripts have nothing left to do: handlers ran, their frames were delivered, async handlers that
wait only on timers or on each other settled. Time stands still except in `advance`: the
event loop runs on a clock the harness moves, so timers (setTimeout, asyncio.sleep) fire when
their time comes, at once and in order. Network calls (fetch, Redis) are not available here.
"""

from __future__ import annotations

import asyncio
import heapq
import json
import logging
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

from .dispatch import Dispatcher
from .hub import Hub
from .request import Request
from .routing import Router
from .runtime import ScriptError
from .session import Message, Session
from .settings import Settings
from .stats import Stats
from .wire import PORTABLE

__all__ = ["Harness", "Client", "ClientClosed"]


class ClientClosed(Exception):
    """The session is closed: nothing more can be sent."""


class _ClockLoop(asyncio.SelectorEventLoop):
    """An event loop whose clock moves only when the harness says so."""

    def __init__(self) -> None:
        super().__init__()
        self.now = 0.0

    def time(self) -> float:
        return self.now

    def settle(self) -> None:
        """Run until nothing is ready and no timer is due (never waits for real time)."""
        for _ in range(100_000):
            self.call_soon(self.stop)
            self.run_forever()
            if not self._ready and not self._due(self.now):  # type: ignore[attr-defined]
                return
        raise RuntimeError("the scripts keep the event loop busy (a loop of zero-delay timers?)")

    def _due(self, until: float) -> bool:
        return any(not timer.cancelled() and timer.when() <= until
                   for timer in self._scheduled)  # type: ignore[attr-defined]

    def next_timer(self) -> float | None:
        timers = [timer for timer in self._scheduled if not timer.cancelled()]  # type: ignore[attr-defined]
        return heapq.nsmallest(1, (timer.when() for timer in timers))[0] if timers else None


class _Connection:
    """The harness's side of a session's connection (`session.Connection`): frames written to it
    are decoded into the client's inbox; a close the server starts is answered at once. It counts
    what a wire counts, on the harness's clock."""

    def __init__(self, client: Client) -> None:
        self._client = client
        self.paused = False
        self.messages_in = self.bytes_in = self.messages_out = self.bytes_out = 0
        self.closed_by: str | None = None
        self._opened = client._harness._loop.time()

    def write(self, data: bytes) -> int:
        self.bytes_out += len(data)
        self.messages_out += self._client._frames(data)
        return 0

    def close(self, code: int, reason: str) -> None:
        client = self._client
        if client.close_code is None:
            client.close_code, client.close_reason = code, reason
            self.closed_by = "server"
            client._harness._loop.call_soon(client._ended)

    def summary(self) -> tuple[int, int, int, int, float, int, str | None]:
        seconds = self._client._harness._loop.time() - self._opened
        return (self.messages_in, self.bytes_in, self.messages_out, self.bytes_out, seconds,
                self._client.close_code or 0, self.closed_by)

    def pause_reading(self) -> None:
        self.paused = True

    def resume_reading(self) -> None:
        self.paused = False
        self._client._release_held()

    def abort(self) -> None:
        self.close(1006, "")

    def keepalive(self) -> None:
        """Always alive: the harness's clients answer every ping."""

    def direct(self, entry: object | None, handle: object) -> None:
        """Messages always go through the dispatcher here."""


class Client:
    """One connected session, seen from the client's side."""

    def __init__(self, harness: Harness, path: str, request: Request) -> None:
        self._harness = harness
        self.path = path
        #: Every message received and not yet taken by `receive`/`received`, oldest first.
        self.inbox: list[Message] = []
        #: Set once the session is closed, by the server or by `close`.
        self.close_code: int | None = None
        self.close_reason: str | None = None
        self._held: list[Message] = []
        self._gone = False
        self.connection = _Connection(self)
        route = harness._router.match(request.path)
        if route is None:
            raise LookupError(f"no route {request.path}; the routes are {', '.join(sorted(harness.routes))}")
        self.session = Session(harness._hub, self.connection, request, route)

    def __repr__(self) -> str:
        return f"<Client {self.id} {self.path}>"

    @property
    def id(self) -> str:
        """The session's id, as the script sees it."""
        return self.session.id

    @property
    def closed(self) -> bool:
        return self.close_code is not None

    def send(self, message: str | bytes) -> None:
        """Send a text (str) or binary (bytes) message, and let the scripts handle it."""
        if self.closed:
            raise ClientClosed(f"session {self.id} is closed ({self.close_code} {self.close_reason!r})")
        if isinstance(message, (bytearray, memoryview)):
            message = bytes(message)
        if not isinstance(message, (str, bytes)):
            raise TypeError(f"send takes str or bytes, not {type(message).__name__}")
        size = len(message.encode() if isinstance(message, str) else message)
        if size > self._harness.settings.max_message_size:
            self.session.mark_closing(by_server=True)
            self.connection.close(1009, "message too big")
            self._harness.settle()
            return
        self.connection.messages_in += 1
        self.connection.bytes_in += size
        if self.connection.paused:
            self._held.append(message)
        else:
            self._harness._dispatcher.received(self.session, message)
        self._harness.settle()

    def send_json(self, value: Any) -> None:
        self.send(json.dumps(value))

    def close(self, code: int = 1000, reason: str = "") -> None:
        """The client closes the connection: the script's onClose runs."""
        if not self.closed:
            self.close_code, self.close_reason = code, reason
            self.connection.closed_by = "client"
            self.session.mark_closing()
            self._ended()
        self._harness.settle()

    def received(self) -> list[Message]:
        """Every message received since the last call, oldest first (taken out of the inbox)."""
        self._harness.settle()
        messages, self.inbox = self.inbox, []
        return messages

    def received_json(self) -> list[Any]:
        return [json.loads(message) for message in self.received()]

    def receive(self) -> Message:
        """The oldest message not yet taken; AssertionError if there is none."""
        self._harness.settle()
        if not self.inbox:
            state = f"closed with {self.close_code}" if self.closed else "open"
            raise AssertionError(f"session {self.id} ({self.path}, {state}) has received nothing")
        return self.inbox.pop(0)

    def receive_json(self) -> Any:
        message = self.receive()
        if not isinstance(message, str):
            raise AssertionError(f"expected a JSON text message, got binary {message!r}")
        return json.loads(message)

    def _frames(self, data: bytes) -> int:
        """Decode the server's frames (unmasked, unfragmented) into messages; how many."""
        view = memoryview(data)
        count = len(self.inbox)
        while view:
            opcode, length, start = view[0] & 0x0F, view[1] & 0x7F, 2
            if length == 126:
                length, start = int.from_bytes(view[2:4], "big"), 4
            elif length == 127:
                length, start = int.from_bytes(view[2:10], "big"), 10
            payload = bytes(view[start:start + length])
            view = view[start + length:]
            if opcode == 1:
                self.inbox.append(payload.decode())
            elif opcode == 2:
                self.inbox.append(payload)
        return len(self.inbox) - count

    def _release_held(self) -> None:
        held, self._held = self._held, []
        for message in held:
            self._harness._dispatcher.received(self.session, message)

    def _ended(self) -> None:
        if not self._gone:
            self._gone = True
            self._harness._dispatcher.ended(self.session)


class Harness:
    """Load a script (or a folder of them) as `diesel serve` would, and connect clients to it.

    Options are `Settings` fields (`script_timeout=0.5`, `max_message_size=1024`). Use it as a
    context manager, or call `close()`: every session then closes and every script unloads.
    """

    def __init__(self, path: str | Path, **options: Any) -> None:
        self._loop = _ClockLoop()
        self.settings = Settings(path=Path(path), **options)
        #: Warnings and errors the server logged (handler errors, with their stack), in order.
        self.logs: list[str] = []
        self._capture = _Capture(self.logs)
        logging.getLogger("dieselengine").addHandler(self._capture)
        self._clients: list[Client] = []
        asyncio.set_event_loop(self._loop)
        try:
            self._hub = Hub(self.settings, self._loop, Stats(), PORTABLE)
            self._dispatcher = Dispatcher(self._hub)
            self._router = Router(self._hub)
            errors = self._router.load(self.settings.path)
        except ScriptError as exc:
            self._teardown()
            raise ScriptError(str(exc)) from None
        if errors:
            for route in self._router:
                route.script.unload()
            self._teardown()
            raise ScriptError("\n".join(errors))
        self.settle()

    def __enter__(self) -> Harness:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def routes(self) -> list[str]:
        return [route.path for route in self._router]

    @property
    def time(self) -> float:
        """Seconds the harness's clock has advanced."""
        return self._loop.now

    def connect(self, path: str, *, params: dict[str, str] | None = None, headers: dict[str, str] | None = None,
                remote_addr: str = "127.0.0.1") -> Client:
        """A new session on the route of `path` (which may carry a query: `/ws/chat?user=alice`);
        onOpen runs before this returns."""
        parts = urlsplit(path)
        query = "&".join(part for part in (parts.query, urlencode(params or {})) if part)
        raw_headers = "".join(f"{name}: {value}\r\n" for name, value in (headers or {}).items()).encode("latin-1")
        client = Client(self, path, Request(parts.path, query, raw_headers, remote_addr))
        self._clients.append(client)
        self._dispatcher.opened(client.session)
        self.settle()
        return client

    def members(self, room: str) -> int:
        """How many sessions are in a room."""
        return self._hub.members(room)

    def rooms(self) -> dict[str, int]:
        """Every room with members, with its count."""
        return self._hub.room_counts()

    def settle(self) -> None:
        """Let the scripts finish what they are doing now (no time passes)."""
        self._loop.settle()

    def advance(self, seconds: float) -> None:
        """Move the clock forward: every timer due meanwhile fires, in order, at its time."""
        if seconds < 0:
            raise ValueError("time does not go backwards")
        target = self._loop.now + seconds
        self.settle()
        while (when := self._loop.next_timer()) is not None and when <= target:
            self._loop.now = max(self._loop.now, when)
            self.settle()
        self._loop.now = target
        self.settle()

    def close(self) -> None:
        """Close every session (their onClose runs) and unload the scripts."""
        if self._loop.is_closed():
            return
        for client in self._clients:
            if not client.closed:
                client.close(1001, "harness closing")
        self.settle()
        for route in self._router:
            route.script.unload()
        self._teardown()

    def _teardown(self) -> None:
        logging.getLogger("dieselengine").removeHandler(self._capture)
        asyncio.set_event_loop(None)
        self._loop.close()


class _Capture(logging.Handler):
    def __init__(self, records: list[str]) -> None:
        super().__init__(logging.WARNING)
        self._records = records

    def emit(self, record: logging.LogRecord) -> None:
        self._records.append(record.getMessage())
