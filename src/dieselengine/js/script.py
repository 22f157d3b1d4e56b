"""One JavaScript handler script: its quickjs-ng context, its calls, and the outbox they return.

How a call works. quickjs-ng refuses calls from JavaScript into Python while a time limit is set,
so the script never calls the server: its host operations (send, join, broadcast, log, timers)
are appended to an outbox in the context and executed here, in order, when the call returns.
What a script must read synchronously is mirrored into the context: the session's handshake
data and attributes live there, and room member counts are pushed in before a call whenever
they changed (`Hub.count_listeners`), while a script's own joins and leaves update its mirror at
once. The outbox comes back as JSON in general; the commonest hooks
(one broadcast, send, join or leave by the calling session) come back as an int or a
"code:text" string, which keeps a relay call near the cost of entering the engine at all. A
session's object is made in the same entry into the engine as its onOpen call; Python knows it
by its handle. The CPU-time limit is enforced by an interrupt handler rather than by the
binding's `set_time_limit`, which reads the CPU clock at every entry (`cpu_limit.py`).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import re
import time
from collections.abc import Awaitable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

import quickjs

from ..rooms import RoomLimitError
from ..runtime import Hook, Script, ScriptError, misnamed_hooks
from . import bytecode, cpu_limit, direct, stopped_frame, webapi
from .counts import HubLink, hub_link
from .fetch import FetchError, Response, fetcher_for
from .locations import JsError, first_location, locate
from .modules import ModuleLoader
from .resolve import ResolveError

if TYPE_CHECKING:
    from ..hub import Hub
    from ..request import Request
    from ..session import Message, Session
    from ..upgrade import UpgradeRequest

log = logging.getLogger("dieselengine")

_PRELUDE = (Path(__file__).with_name("prelude.js")).read_text()
_COMMONJS = (Path(__file__).with_name("commonjs.js")).read_text()

# Opcodes of the outbox; keep in sync with prelude.js.
OP_SEND, OP_SEND_BIN, OP_SEND_MSG, OP_CLOSE, OP_JOIN, OP_LEAVE = 1, 2, 3, 4, 5, 6
OP_BCAST, OP_BCAST_BIN, OP_BCAST_MSG, OP_LOG, OP_TIMER = 7, 8, 9, 10, 11
OP_CLEAR, OP_SETTLE, OP_ROOM_ID = 12, 13, 14
#: fetch (web/fetch.js): [id, url, method, headers, body (base64) or null, redirect mode]; abort: [id].
OP_FETCH, OP_FETCH_ABORT = 15, 16
#: Arguments after each opcode.
_ARITY = {OP_SEND: 2, OP_SEND_BIN: 2, OP_SEND_MSG: 1, OP_CLOSE: 3, OP_JOIN: 2, OP_LEAVE: 2,
          OP_BCAST: 4, OP_BCAST_BIN: 4, OP_BCAST_MSG: 3, OP_LOG: 2, OP_TIMER: 2, OP_CLEAR: 1,
          OP_SETTLE: 3, OP_ROOM_ID: 2, OP_FETCH: 6, OP_FETCH_ABORT: 1}
K_BCAST, K_EXCEPT, K_SEND = 1, 2, 3
#: Kind 0 of a "code:text" result: a join of the room named by the text, or with this bit a leave.
M_LEAVE = 4
#: The arguments of an entry point when nothing changed since the last call (see _sync).
_NO_SYNC: tuple[None, int] = (None, 0)
S_PROMISE, S_JOBS = 1, 2
#: Promise jobs run in one go before the rest wait for the next loop iteration.
_MAX_JOBS = 10000
#: The prelude's caps (MAX_TIMERS, MAX_ROOM_IDS), checked again here: its outbox can be forged.
MAX_TIMERS, MAX_ROOM_IDS = 100000, 4096
#: The longest timer delay (a signed 32-bit count of milliseconds, as in browsers).
_MAX_DELAY = 2147483647
_LOG_LEVELS = frozenset((10, 20, 30, 40))


def _handle(value: Any) -> int | None:
    """A session handle from the outbox; a value that is not one finds no session."""
    return value if type(value) is int else None


#: A session's request data in the heap up to this size is always admitted (see JsScript._admitted).
SMALL_REQUEST = 4096


def _heap_bytes(*parts: str | None) -> int:
    """About what strings take in a QuickJS heap: one byte a character, two past Latin-1. (A loop,
    not sum() of a generator: this runs on every handshake.)"""
    size = 0
    for part in parts:
        if part:
            size += len(part) if part.isascii() else 2 * len(part)
    return size


def _size(n: int) -> str:
    return f"{n >> 20} MiB" if n >= 1 << 20 and not n % (1 << 20) else f"{n} bytes"


def _fix_text(text: str) -> str:
    """Lone surrogates (JSON can carry them out of the engine) become U+FFFD, as browsers do."""
    return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


class _Upgrade:
    """A session's runtime state until it opens: the number of its upgrade's request in the context."""

    __slots__ = ("id",)

    def __init__(self, upgrade_id: int) -> None:
        self.id = upgrade_id


class JsScript:
    """One JavaScript handler script in its own quickjs-ng context."""

    def __init__(self, path: Path, name: str, hub: Hub) -> None:
        self.path = path
        self.name = name
        #: Whether the script exports onUpgrade.
        self.upgrades = False
        self._next_upgrade = 0
        self.hub = hub
        self._loop = hub.loop
        self._log = logging.getLogger("dieselengine.script." + name)
        self._modules: ModuleLoader | None = None
        self._web: Any = None
        self._fetches: dict[int, asyncio.Task[None]] = {}
        self._export_names: list[str] = []
        self._live: dict[int, Session] = {}
        self._next_handle = 0
        self._room_names: list[str] = []
        self._timers: dict[int, asyncio.TimerHandle] = {}
        self._promises: dict[int, asyncio.Future[None]] = {}
        self._dirty: dict[str, int] = {}
        self._closed: list[int] = []
        #: The entry the wire calls for this script's messages itself (the wire's `Entry`); its `stale`
        #: is set while the engine must hear of changes first, and `entries` counts every entry into
        #: the engine (see _on_interrupt).
        self._entry = hub.wire.Entry(K_SEND)
        self._unloaded = False
        self._jobs_scheduled = False
        self._tick_jobs = True
        self._wants_headers = True
        self._wants_params = True
        #: The request data (path, query, headers) that sessions with a large copy hold in the heap,
        #: per handle, and in all (see _admitted).
        self._request_bytes: dict[int, int] = {}
        self._request_total = 0
        self._link: HubLink | None = None
        #: What the interrupt handler last saw of the entries into the engine (see _on_interrupt).
        self._seen_entry = -1
        self._entry_cpu = 0.0
        #: A runaway chain of promise jobs is being stopped (see _halt), the first error it threw,
        #: and the CPU time the chain has used in earlier passes.
        self._halted = False
        self._halt_error: str | None = None
        self._chain_cpu = 0.0
        #: The rooms whose counts this script's context mirrors: those it has joined or asked the
        #: count of (through `_count_of`).
        self._mirrored: set[str] = set()
        #: Where the CPU-time limit stops a call (stopped_frame.py): the engine's fields, the JSContext*, the
        #: prelude's hook (a JSValue), the frame the handler last stopped (and what it displaced),
        #: the checks let go in a row because no frame was running yet, and whether the job runner
        #: is to move the next check (`nudge`).
        self._fields: stopped_frame.Layout | None = None
        self._context = 0
        self._limit_hook: tuple[int, int] | None = None
        self._trap: tuple[int, int, list[int], tuple[int, ...]] | None = None
        self._declined = 0
        self._nudge = False
        self._watch_key = 0
        self._runtime: int | None = None
        self._ctx: Any = None
        self._api: Any = None
        self._message: Any = None
        self._message_binary: Any = None
        self._open: Any = None
        self._known: Any = None
        self._close: Any = None
        settings = hub.settings
        self._timeout = settings.script_timeout
        self._memory = settings.script_memory
        self._stack = settings.script_stack

    # -- loading ---------------------------------------------------------------------------------

    @classmethod
    def load(cls, path: Path, name: str, hub: Hub) -> JsScript:
        script = cls(path, name, hub)
        try:
            script._start()
        except BaseException:
            script.unload()
            raise
        for warning in misnamed_hooks(name, script._export_names, python=False):
            logging.getLogger("dieselengine").warning("%s", warning)
        return script

    def _start(self) -> None:
        ctx = self._ctx = quickjs.Context()
        ctx.set_memory_limit(self._memory)
        ctx.set_max_stack_size(self._stack)
        watched = cpu_limit.watch(self, ctx)
        if watched is None:
            raise ScriptError(f"{self.path}: this build of quickjs-ng does not expose its C API, which "
                              "dieselengine needs to load modules and time calls")
        self._runtime, self._watch_key = watched
        # A call from the engine into Python, possible without the binding's time limit: the count
        # of a room the context does not mirror yet (the prelude takes it and hides it).
        ctx.add_callable("__diesel_count__", self._count_of)
        # And one as the engine starts the stack of the error that stopped a call (stopped_frame.py).
        ctx.add_callable("__diesel_where__", self._settle_frame)
        api = ctx.eval(_PRELUDE)
        self._context = bytecode._context_of(ctx) or 0
        self._limit_hook = stopped_frame.hook_of(ctx, "__diesel_limit_hook__")
        self._web = webapi.install(ctx, api("post"))
        bytecode.evaluate(ctx, _COMMONJS)
        self._api = api
        self._new_session = api("newSession")
        self._export_attrs = api("exportAttrs")
        self._drain = api("drain")
        self._fire_fn = api("fire")
        self._reset = api("reset")
        self._refetch = api("refetch")
        self._nudge_fn = api("nudge")
        link = self._link = hub_link(self.hub)
        api("init")(json.dumps([{}, []]), self.hub.settings.max_rooms_per_session)
        link.scripts.append(self)

        # The engine loads the modules itself, asking `modules` for each (see modules.py).
        loader = self._modules = ModuleLoader(self._runtime, self._root())
        try:
            entry = loader.entry_source(self.path)
        except ResolveError as exc:
            raise ScriptError(f"{self.path}: {exc}") from None
        self._entry.entries += 1
        try:
            promise = ctx.module(entry)
        except quickjs.JSException as exc:
            raise ScriptError(loader.error or loader.missing_export(str(exc)) or self._load_error(str(exc))) from None
        probe = api("settled")(promise)
        self._run_jobs()
        state = probe()
        if state != "ok":
            self._flush_after_error(None, None)  # what it logged before failing
            if state == "pending":
                raise ScriptError(f"{self.path}: top-level await did not settle while loading")
            raise ScriptError(loader.error or self._load_error(state))

        # Scripts that never mention async code need no promise-job pass once per loop iteration,
        # and the handshake's headers and parameters are copied into the context only for scripts
        # that read them (or could, through eval): an idle session costs less that way. Packages
        # cannot know the session API, so only the served folder's own files count for those.
        sources = loader.sources()
        own = loader.sources(own=True)
        self._tick_jobs = any(re.search(r"\b(async|await|eval|Function|Promise|then|fetch)\b", s) for s in sources)
        dynamic = any(re.search(r"\b(eval|Function)\b", s) for s in own)
        self._wants_headers = dynamic or any("getHeader" in s for s in own)
        self._wants_params = dynamic or any("getParameter" in s for s in own)
        loader.loaded()
        try:
            mask = api("bindHooks")()
            self._export_names = json.loads(api("exportNames")())
        except quickjs.JSException as exc:
            raise ScriptError(f"{self.path}: {str(exc).splitlines()[0]}") from None
        self._flush(self._drain(None, 0), None, None)
        self._open = direct.fast(ctx, api("openSession"))
        self._known = api("known")
        self._message = direct.fast(ctx, api("callMessage")) if mask & 2 else None
        if not self._tick_jobs:  # a script with async code needs a promise-job pass after each call
            self._entry.function = self._message
        self._message_binary = direct.fast(ctx, api("callMessageBinary")) if mask & 2 else None
        self._close = direct.fast(ctx, api("callClose"))
        self.upgrades = bool(mask & 8)
        self._upgrade, self._upgrade_decision, self._adopt_upgrade, self._forget_upgrade = (
            api(name) for name in ("callUpgrade", "upgradeDecision", "adoptUpgrade", "forgetUpgrade"))

    def _load_error(self, text: str) -> str:
        """`file:line:column: SyntaxError: ...` (and the stack, for an error thrown while loading)."""
        first = text.strip().split("\n")[0]
        where = first_location(text)
        if where is None:
            return f"{self.path}: {first}"
        stack = "\n".join(locate(text).split("\n")[1:])
        file, line, column = where
        located = f"{self._root() / file}:{line}:{column}: {first}"
        if stack and not first.startswith("SyntaxError"):
            located += "\n" + stack
        return located

    def _root(self) -> Path:
        """The served folder, as the user gave it to `diesel`."""
        return self.path.parents[len(Path(self.name).parts) - 1]

    # -- hooks -----------------------------------------------------------------------------------

    def call(self, hook: Hook, session: Session, message: Message | None) -> Awaitable[object] | None:
        if hook == "message":
            state = session.runtime_state
            if self._message is None or state is None:
                return None
            sync, count = self._sync() if self._entry.stale else _NO_SYNC
            self._entry.entries += 1
            try:
                if type(message) is str:
                    result = self._message(state, message, sync, count)
                else:
                    result = self._message_binary(state, base64.b64encode(message).decode("ascii"), sync, count)
            except quickjs.JSException as exc:
                raise self._failed(exc, session, message) from None
            return self._message_result(result, session, message)  # type: ignore[arg-type]
        if hook == "open":
            return self._call_open(session)
        return self._call_close(session)

    def finish(self, session: Session, message: Message, result: Any, failed: bool) -> Awaitable[object] | None:
        """The rest of a message the wire handed to this script's entry itself: `result` is what
        the engine returned, or the error it raised when `failed`."""
        if failed:
            raise self._failed(result, session, message)
        return self._message_result(result, session, message)

    def _message_result(self, result: Any, session: Session, message: Message) -> Awaitable[object] | None:
        # The common results first: nothing, one broadcast/send of the message, one op with a text.
        if result is None:
            pass
        elif type(result) is int:
            if result & 3 == K_SEND:
                session.send(message)
            else:
                self.hub.broadcast(self._room_name(result >> 2), message,
                                   session if result & 3 == K_EXCEPT else None)
        elif result[0] != "[":
            self._short(result, session)  # one send or broadcast of a new text, a join or a leave
        else:
            return self._result(result, session, message)
        if self._tick_jobs:  # spares scripts without async code a call on the hottest path
            self._maybe_tick()
        return None

    # -- the upgrade hook ------------------------------------------------------------------------

    def upgrade(self, request: UpgradeRequest) -> Awaitable[object] | None:
        """onUpgrade on a request object made in the context; what it decided (a rejection, a
        subprotocol) is read back once it settled, and its attributes stay there for the session,
        which takes them as they are (the very values)."""
        mark = request.runtime_state = _Upgrade(self._next_upgrade + 1)
        self._next_upgrade = mark.id
        http = request.request
        text, query, headers = self._request_data(http, f"{http.remote_addr}\0{http.path}")
        protocols = json.dumps(request.get_protocols())
        attrs = json.dumps(request.attributes) if request.attributes else None
        self._entry.entries += 1
        try:
            result = self._upgrade(mark.id, text, query, headers, protocols, attrs)
        except quickjs.JSException as exc:
            self._forget(mark)
            raise self._failed(exc, None, None) from None
        try:
            pending = self._result(result, None, None)  # type: ignore[arg-type]
        except BaseException:
            self._forget(mark)
            raise
        if pending is None:
            self._decided(request, mark)
            return None
        return self._upgrade_settled(pending, request, mark)

    async def _upgrade_settled(self, pending: Awaitable[object], request: UpgradeRequest, mark: _Upgrade) -> None:
        try:
            await pending
        except BaseException:  # a rejection, or cancelled past the handshake deadline
            self._forget(mark)
            raise
        self._decided(request, mark)

    def _decided(self, request: UpgradeRequest, mark: _Upgrade) -> None:
        if self._ctx is None:
            return
        self._entry.entries += 1
        decision = self._upgrade_decision(mark.id)
        if decision is None:
            return
        rejection, protocol = json.loads(decision)
        if rejection is not None:
            self._forget(mark)
            request.reject(*rejection)
        elif protocol is not None:
            request.accept_protocol(protocol)  # checked again here: a script may replace Array methods

    def _forget(self, mark: _Upgrade) -> None:
        """The upgrade's request in the context is not needed any more (refused, failed, or its
        client left before its session opened)."""
        if self._ctx is not None:
            self._entry.entries += 1
            self._forget_upgrade(mark.id)

    def _call_open(self, session: Session) -> Awaitable[object] | None:
        """The session's object in the context and its onOpen, in one entry into the engine."""
        text, query, headers, size = self._handshake_data(session)
        if size > SMALL_REQUEST and not self._admitted(session, size):
            return None
        pending = session.runtime_state
        if isinstance(pending, _Upgrade) or session.attributes:
            # attributes from the upgrade: its hook's (in the context), or the server's (the JWT's claims)
            self._entry.entries += 1
            self._adopt_upgrade(pending.id if isinstance(pending, _Upgrade) else 0,
                                json.dumps(session.attributes) if session.attributes else None)
            session.attributes = None
        handle = self._next_handle = self._next_handle + 1
        session.runtime_state = handle
        self._live[handle] = session
        if size > SMALL_REQUEST:
            self._hold_request(handle, size)
        session.conn.direct(self._entry, handle)
        entry = self._entry
        sync, count = self._sync() if entry.stale else _NO_SYNC
        entry.entries += 1
        try:
            result = self._open(handle, text, query, headers, sync, count)
        except quickjs.JSException as exc:
            error = self._failed(exc, session, None)
            self._entry.entries += 1
            try:
                made = self._known(handle)
            except quickjs.JSException:
                made = False
            if not made:  # it failed before onOpen (out of memory): the session has no object
                self._live.pop(handle, None)
                self._request_total -= self._request_bytes.pop(handle, 0)
                session.runtime_state = None
                session.conn.direct(None, None)
            raise error from None
        if result is None:
            if self._tick_jobs:
                self._maybe_tick()
            return None
        return self._result(result, session, None)

    def _admitted(self, session: Session, size: int) -> bool:
        """Sessions copy their request data into the one heap of the script: a large copy (a long
        header, many parameters) counts against a quarter of --script-memory, so that clients
        cannot fill the heap through request data and starve the route. A session whose copy does
        not fit fails alone: it is closed with 1013 (try again later) before it gets an object and
        onOpen runs. Copies up to SMALL_REQUEST (most browsers' requests) are not asked about:
        with the descriptor limit and the head limit, they cannot fill a heap."""
        if self._request_total + size <= self._memory // 4:
            return True
        self._log.warning("session %s: its request data (%d bytes) does not fit in the quarter of --script-memory "
                          "that request data may take (%d bytes held); closing it with 1013",
                          session.id, size, self._request_total)
        session.close(1013, "server busy, try again later")
        return False

    def _hold_request(self, handle: int, size: int) -> None:
        """A session's request data past SMALL_REQUEST, counted while the session lives."""
        self._request_bytes[handle] = size
        self._request_total += size

    def _handshake_data(self, session: Session) -> tuple[str, str | None, str, int]:
        """What a session's object is built from: "id\0addr\0path" (the prelude's `requestOf`),
        then the query (JSON) and the headers, for scripts that read them; and about the bytes
        they take in the heap."""
        request = session.request
        text = f"{session.id}\0{request.remote_addr}\0{request.path}"
        if self._wants_params or self._wants_headers:
            text, query, headers = self._request_data(request, text)
            return text, query, headers, _heap_bytes(text, query, headers)
        return text, None, "", len(text) if text.isascii() else 2 * len(text)

    def _request_data(self, request: Request, text: str) -> tuple[str, str | None, str]:
        query = None
        if request.query and self._wants_params:
            query = json.dumps({k: v[0] for k, v in parse_qs(request.query, keep_blank_values=True).items()})
        headers = "\n".join(f"{k}\0{v}" for k, v in request.headers.items()) if self._wants_headers else ""
        return text, query, headers

    def _call_close(self, session: Session) -> Awaitable[object] | None:
        handle = session.runtime_state
        if handle is None:
            return None
        closed = self._closed
        if closed and closed[-1] == handle:
            # onClose marks its own session closed: no need to send the handle along.
            closed.pop()
            if not closed and not self._dirty:
                self._entry.stale = False
        sync, count = self._sync() if self._entry.stale else _NO_SYNC
        self._entry.entries += 1
        try:
            result = self._close(handle, sync, count)
        except quickjs.JSException as exc:
            raise self._failed(exc, session, None) from None
        if result is None:
            self._maybe_tick()
            return None
        return self._result(result, session, None)

    def _result(self, result: Any, session: Session, message: Message | None) -> Awaitable[object] | None:
        """A hook's result other than None or an int: a short string (one op) or JSON."""
        if type(result) is not str or result[:1] != "[":
            if type(result) is str:
                self._short(result, session)
            self._maybe_tick()
            return None
        status, pid, ops = self._general(result)
        future = None
        if status & S_PROMISE:
            future = self._loop.create_future()
            self._promises[pid] = future
        if ops:
            self._apply(ops, session, message)
        if status & S_JOBS:
            self._run_jobs()
        else:
            self._maybe_tick()
        if future is None:
            return None
        if future.done():
            exc = future.exception()
            if exc is not None:
                raise exc
            return None
        return future

    def _short(self, result: str, session: Session) -> None:
        """One op of the calling session: "code * 2**32 + length:text", a send or broadcast of a new
        text, or a join or leave of the room the text names."""
        head, _, text = result.partition(":")
        try:
            value = int(head)
        except ValueError:
            raise self._forged("a result it cannot read", result) from None
        if len(text) != value & 0xFFFFFFFF:
            text = self._full_text(text, value & 0xFFFFFFFF)
        code = value >> 32
        kind = code & 3
        if kind == K_SEND:
            session.send(text)
        elif kind:
            self.hub.broadcast(self._room_name(code >> 2), text, session if kind == K_EXCEPT else None)
        else:
            self._membership(not code & M_LEAVE, session, text)

    def _room_name(self, room_id: int) -> str:
        if not 0 <= room_id < len(self._room_names):
            raise self._forged("an unknown room id", room_id)
        return self._room_names[room_id]

    def _full_text(self, text: str, length: int) -> str:
        """The engine counts UTF-16 units, Python code points; when they differ by more than the
        astral characters the text had a U+0000 and was cut short: fetch it again, as JSON."""
        if len(text.encode("utf-16-le")) >> 1 == length:
            return text
        return _fix_text(json.loads(self._refetch()))

    def _failed(self, exc: quickjs.JSException, session: Session | None, message: Message | None) -> JsError:
        """A call threw: run what it queued before the error, return the located error."""
        error = JsError(self._describe(str(exc)))
        self._flush_after_error(session, message)
        return error

    def _flush_after_error(self, session: Session | None, message: Message | None) -> None:
        self._entry.entries += 1
        try:
            queued = self._drain(None, 0)
        except quickjs.JSException:
            self._reset()  # out of memory even for that: drop what was queued
            return
        self._flush(queued, session, message)

    def _flush(self, queued: str | None, session: Session | None, message: Message | None, jobs: bool = True) -> None:
        """What a call queued outside a hook (a timer, promise jobs, after an error): a bad value
        is logged as the script's error. `jobs`: run the promise jobs it queued too."""
        try:
            self._flush_ops(queued, session, message, jobs)
        except JsError as exc:
            self.hub.stats.handler_errors += 1
            self._log.error("%s", exc)
        except Exception:  # the server's own bug: logged, and the loop goes on
            self._log.exception("internal: what the script queued could not be run")

    def _flush_ops(self, queued: str | None, session: Session | None, message: Message | None, jobs: bool) -> None:
        if queued is None:
            return
        status, _, ops = self._general(queued)
        if ops:
            self._apply(ops, session, message)
        if status & S_JOBS and jobs:
            self._run_jobs()

    def _general(self, result: Any) -> tuple[int, int, list[Any]]:
        """[status, promise id, ops] of a JSON result."""
        try:
            status, pid, ops = json.loads(result)
        except (TypeError, ValueError):
            raise self._forged("a result it cannot read", result) from None
        if type(status) is not int or type(pid) is not int or type(ops) is not list:
            raise self._forged("a result it cannot read", result)
        return status, pid, ops

    # -- the outbox ------------------------------------------------------------------------------

    def _apply(self, ops: Any, session: Session | None, message: Message | None) -> None:
        """Execute queued host operations in order. The outbox is the script's own, and a script
        can tamper with it (setters on the prototypes' indices, toJSON): every value is checked
        here, and a bad one is that script's error (`_forged`), never the server's or another
        script's. Handles are looked up among this script's sessions only."""
        if type(ops) is not list:
            raise self._forged("an outbox that is not a list", ops)
        live = self._live
        hub = self.hub
        i, n = 0, len(ops)
        while i < n:
            op = ops[i]
            arity = _ARITY.get(op) if type(op) is int else None
            if arity is None or i + 1 + arity > n:
                raise self._forged("an unknown operation", op)
            args = ops[i + 1:i + 1 + arity]
            i += 1 + arity
            if op == OP_BCAST or op == OP_BCAST_BIN or op == OP_BCAST_MSG:
                target = live.get(_handle(args[0]))
                room = self._room(args[1])
                payload: Message
                if op == OP_BCAST:
                    payload = self._text(args[2])
                elif op == OP_BCAST_BIN:
                    payload = self._binary(args[2])
                else:
                    payload = self._message_of(message)
                skip = target if args[-1] else None
                try:
                    hub.broadcast(room, payload, skip)
                except UnicodeEncodeError:
                    hub.broadcast(room, _fix_text(payload), skip)  # type: ignore[arg-type]
            elif op == OP_SEND or op == OP_SEND_BIN or op == OP_SEND_MSG:
                target = live.get(_handle(args[0]))
                if op == OP_SEND:
                    text = self._text(args[1])
                    if target is not None:
                        try:
                            target.send(text)
                        except UnicodeEncodeError:
                            target.send(_fix_text(text))
                elif op == OP_SEND_BIN:
                    data = self._binary(args[1])
                    if target is not None:
                        target.send(data)
                else:
                    payload = self._message_of(message)
                    if target is not None:
                        target.send(payload)
            elif op == OP_JOIN or op == OP_LEAVE:
                target = live.get(_handle(args[0]))
                room = self._room(args[1])
                if target is not None:
                    self._membership(op == OP_JOIN, target, room)
            elif op == OP_LOG:
                level, text = args
                if level not in _LOG_LEVELS:
                    raise self._forged("a log level", level)
                text = self._text(text)
                self._log.log(level, "%s", locate(text) if "<input>:" in text or "<null>:" in text or "\x01" in text else text)
            elif op == OP_TIMER:
                timer_id, ms = args
                if type(timer_id) is not int or type(ms) not in (int, float) or not 1 <= ms <= _MAX_DELAY:
                    raise self._forged("a timer", [timer_id, ms])
                old = self._timers.pop(timer_id, None)
                if old is not None:
                    old.cancel()
                elif len(self._timers) >= MAX_TIMERS:
                    raise self._forged(f"more than {MAX_TIMERS} timers", timer_id)
                if not self._unloaded:
                    self._timers[timer_id] = self._loop.call_later(ms / 1000, self._fire, timer_id)
            elif op == OP_CLEAR:
                old = self._timers.pop(args[0], None) if type(args[0]) is int else None
                if old is not None:
                    old.cancel()
            elif op == OP_CLOSE:
                handle, code, reason = args
                target = live.get(_handle(handle))
                if type(code) is not int or not self.hub.wire.valid_close_code(code) or type(reason) is not str:
                    raise self._forged("a close code and reason", [code, reason])
                if target is not None:
                    # The wire cuts the reason to 123 bytes on a character boundary.
                    target.close(code, reason)
            elif op == OP_SETTLE:
                pid, ok, text = args
                future = self._promises.pop(pid, None) if type(pid) is int else None
                if future is not None and not future.done():
                    if ok:
                        future.set_result(None)
                    else:
                        future.set_exception(JsError(self._describe(self._text(text))))
            elif op == OP_FETCH:
                fetch_id, url, method, headers, body, redirect = args
                if (type(fetch_id) is not int or type(url) is not str or type(method) is not str
                        or type(headers) is not list or any(type(h) is not str for h in headers)
                        or body is not None and type(body) is not str or type(redirect) is not str):
                    raise self._forged("a fetch", args)
                self._start_fetch(fetch_id, url, method, headers, body, redirect)
            elif op == OP_FETCH_ABORT:
                task = self._fetches.pop(args[0], None) if type(args[0]) is int else None
                if task is not None:
                    task.cancel()
            elif op == OP_ROOM_ID:
                room_id, room = args
                names = self._room_names
                if type(room_id) is not int or not 0 <= room_id <= len(names) or room_id >= MAX_ROOM_IDS:
                    raise self._forged("a room id", room_id)
                room = self._room(room)
                if room_id == len(names):
                    names.append(room)
                else:
                    names[room_id] = room

    def _membership(self, join: bool, session: Session, room: str) -> None:
        """A join or leave by the script: the room is mirrored in its context from now on."""
        if join:
            try:
                self.hub.join(session, room)
            except RoomLimitError as exc:
                raise JsError(f"RangeError: {exc}") from None
            self._mirrored.add(room)
        else:
            self.hub.leave(session, room)

    def _forged(self, what: str, value: Any) -> JsError:
        shown = repr(value)
        if len(shown) > 80:
            shown = shown[:77] + "..."
        return JsError(f"TypeError: the script handed the server {what}: {shown} (were built-in prototypes "
                       "tampered with?); the rest of what the call queued is dropped")

    def _message_of(self, message: Message | None) -> Message:
        """The incoming message an operation names; there is none outside onMessage."""
        if message is None:
            raise self._forged("an operation on the incoming message outside onMessage", None)
        return message

    def _room(self, value: Any) -> str:
        if type(value) is not str:
            raise self._forged("a room name that is not a string", value)
        return value

    def _text(self, value: Any) -> str:
        if type(value) is not str:
            raise self._forged("a text that is not a string", value)
        return value

    def _binary(self, value: Any) -> bytes:
        try:
            return base64.b64decode(self._text(value), validate=True)
        except binascii.Error:
            raise self._forged("binary data that is not base64", value) from None

    def _sync(self) -> tuple[str, int]:
        """What changed since the last call: room counts and sessions that started closing. The
        common case, one room's count, goes as (room, count), the rest as (JSON, -1)."""
        self._entry.stale = False
        dirty = self._dirty
        self._dirty = {}
        if len(dirty) == 1 and not self._closed:
            ((room, members),) = dirty.items()
            if room.isascii():  # the binding cannot pass a lone surrogate, which JSON can
                return room, members
        text = json.dumps([dirty, self._closed])
        self._closed = []
        return text, -1

    def _count_of(self, name: Any) -> int:
        """The prelude asks for the count of a room it does not mirror (members(), join()), its
        name as JSON; from now on the room's changes are pushed into the context, until its count
        is 0 again."""
        try:
            room = json.loads(name)
        except (TypeError, ValueError):
            return 0
        if type(room) is not str or self._unloaded:
            return 0
        members = self.hub.members(room)
        if members:
            self._mirrored.add(room)
        return members

    def _settle_frame(self) -> None:
        stopped_frame.settle(self, self._runtime or 0)

    def _push_counts(self) -> None:
        if self._unloaded or not self._entry.stale:
            return
        self._entry.entries += 1
        try:
            queued = self._drain(*self._sync())
        except quickjs.JSException as exc:
            self._log.error("internal: room counts could not be updated: %s", str(exc).splitlines()[0])
            return
        self._flush(queued, None, None)

    # -- promise jobs and timers -----------------------------------------------------------------

    def _maybe_tick(self) -> None:
        """After a call: scripts that may use promises get a promise-job pass this iteration."""
        if self._tick_jobs and not self._jobs_scheduled:
            self._schedule_jobs()

    def _schedule_jobs(self) -> None:
        self._jobs_scheduled = True
        self._loop.call_soon(self._tick)

    def _tick(self) -> None:
        self._jobs_scheduled = False
        if not self._unloaded:
            self._run_jobs()

    def _run_jobs(self) -> None:
        """Run pending promise jobs, then what they queued.

        A pass is one entry into the engine for the CPU-time limit, as a handler call is, and runs
        at most _MAX_JOBS jobs before the rest wait for the next loop iteration. A chain of jobs
        that never lets the queue empty (`for (;;) await null`, a `queueMicrotask` loop) is timed
        across passes; once it has used the script's CPU time it is stopped (see `_halt`)."""
        ctx = self._ctx
        if self._entry.stale:
            self._flush(self._drain(*self._sync()), None, None, jobs=False)
        started = time.thread_time()
        self._entry.entries += 1
        if self._halted:
            self._interrupt_now()
        ran = 0
        empty = False
        while ran < _MAX_JOBS:
            try:
                if not ctx.execute_pending_job():
                    empty = True
                    break
            except quickjs.JSException as exc:
                self._job_failed(str(exc))
            if self._nudge:  # a check was let go: move the next one (stopped_frame.py)
                self._nudge = False
                try:
                    self._nudge_fn()
                except quickjs.JSException:
                    pass  # stopped at its own check: the script is over its time, and its next job stops the same way
            ran += 1
            if not ran & 255 and not self._halted and self._chain_cpu + time.thread_time() - started >= self._timeout:
                self._halt()
        if ran:
            try:
                queued = self._drain(None, 0)
            except quickjs.JSException:
                self._reset()
                queued = None
            self._flush(queued, None, None, jobs=False)
        if empty:
            self._chain_cpu = 0.0
            if self._halted:
                self._resume_jobs()
        else:
            self._chain_cpu += time.thread_time() - started
            if not self._jobs_scheduled and not self._unloaded:
                self._schedule_jobs()  # the rest in the next loop iteration

    def _job_failed(self, text: str) -> None:
        """An error a job threw. One past the CPU time stops the chain (logged once, with the
        first such error, when the chain is over)."""
        stopped_frame.disarm(self)
        if not self._halted and text.startswith("InternalError: interrupted"):
            self._halt()
        if self._halted:
            if self._halt_error is None:
                self._halt_error = text
            return
        self.hub.stats.handler_errors += 1
        self._log.error("uncaught error in a promise job\n%s", self._describe(text))

    def _halt(self) -> None:
        """A chain of promise jobs used the script's CPU time: the prelude refuses new jobs
        (`then`, `queueMicrotask` throw) and, after a short grace, every job still queued is
        interrupted at its first check, until the queue is empty; logged once, when it is."""
        self._halted = True
        self._halt_error = None
        self._api("halt")(True)
        # A short grace, for a job to reach a refused `then` and say where the chain is.
        self._entry.entries += 1
        self._seen_entry = self._entry.entries
        self._entry_cpu = time.thread_time() - self._timeout + min(0.05, self._timeout / 4)

    def _interrupt_now(self) -> None:
        """The current entry is over its CPU time (see cpu_limit._on_interrupt)."""
        self._seen_entry = self._entry.entries
        self._entry_cpu = float("-inf")

    def _resume_jobs(self) -> None:
        self._halted = False
        where = self._api("halt")(False)
        self.hub.stats.handler_errors += 1
        # The first error of the chain that has a position, or else the first.
        errors = [text for text in (self._halt_error, where) if text]
        detail = next((text for text in errors if first_location(text)), errors[0] if errors else "")
        position = first_location(detail) if detail else None
        located = "%s:%d:%d" % position if position else None
        detail = locate(detail) if detail else ""
        self._log.error("%sa chain of promise jobs used more than its %g s of CPU time (--script-timeout) and "
                        "was stopped%s", f"{located}: " if located else "", self._timeout,
                        "\n" + detail.rstrip() if detail else "")

    def _fire(self, timer_id: int) -> None:
        if self._unloaded:
            return
        self._timers.pop(timer_id, None)
        sync, count = self._sync() if self._entry.stale else _NO_SYNC
        self._entry.entries += 1
        try:
            queued = self._fire_fn(timer_id, sync, count)
        except quickjs.JSException as exc:
            self.hub.stats.handler_errors += 1
            self._log.error("uncaught error in a timer callback\n%s", self._describe(str(exc)))
            self._flush_after_error(None, None)
            return
        self._flush(queued, None, None)
        self._maybe_tick()

    # -- fetch -----------------------------------------------------------------------------------

    def _start_fetch(self, fetch_id: int, url: str, method: str, headers: list[str], body: str | None,
                     redirect: str) -> None:
        """Run a script's fetch on the loop; its promise settles in a later entry into the engine."""
        if self._unloaded:
            return
        data = base64.b64decode(body) if body is not None else None
        task = self._loop.create_task(self._fetch(fetch_id, url, method, headers, data, redirect))
        self._fetches[fetch_id] = task

    async def _fetch(self, fetch_id: int, url: str, method: str, headers: list[str], body: bytes | None,
                     redirect: str) -> None:
        try:
            reply: Response = await fetcher_for(self.hub).fetch(url, method, headers, body, redirect)
        except FetchError as exc:
            self._settle_fetch(fetch_id, "fetchFailed", fetch_id, str(exc))
            return
        self._settle_fetch(fetch_id, "fetchDone", fetch_id, reply.status, reply.reason, json.dumps(reply.headers),
                           base64.b64encode(reply.body).decode("ascii"), reply.url, reply.redirected)

    def _settle_fetch(self, fetch_id: int, function: str, *args: Any) -> None:
        """Resolve or reject a fetch's promise in the context, then run what that set off."""
        if self._fetches.pop(fetch_id, None) is None or self._unloaded:
            return  # aborted by the script, or the script is gone
        self._entry.entries += 1
        try:
            self._web(function)(*args)
        except quickjs.JSException as exc:
            self._log.error("internal: a fetch could not be settled: %s", self._describe(str(exc)))
            return
        self._run_jobs()

    # -- errors ----------------------------------------------------------------------------------

    def _describe(self, text: str) -> str:
        stopped_frame.disarm(self)  # if the error that stopped a call had no stack built (stopped_frame.py)
        text = locate(text)
        if text.strip() == "null":
            # The engine could not even allocate the error object: the memory limit was hit
            # (possibly while it was throwing another error, e.g. the time limit's).
            text = "InternalError: out of memory"
        first, _, rest = text.partition("\n")
        if first.startswith("InternalError: interrupted"):
            first += f" (the call used more than its {self._timeout:g} s of CPU time: --script-timeout)"
        elif first.startswith("InternalError: out of memory"):
            first += f" (the script reached its memory limit of {_size(self._memory)}: --script-memory)"
        elif first.startswith("RangeError: Maximum call stack size exceeded"):
            first += f" (stack limit {_size(self._stack)})"
            rows = rest.split("\n")
            if len(rows) > 6:
                rest = "\n".join(rows[:6] + ["    ..."])
        return first + ("\n" + rest if rest else "")

    def describe_error(self, exc: BaseException) -> str:
        if isinstance(exc, JsError):
            return str(exc)
        if isinstance(exc, quickjs.JSException):
            return self._describe(str(exc))
        import traceback

        return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)).rstrip()

    # -- lifecycle -------------------------------------------------------------------------------

    def closing(self, session: Session) -> None:
        """Called once, when the session stops being open (server close, client close, lost
        connection): from the next call into the context its isOpen() reads false, including in
        an onMessage the dispatcher already had queued, and in timers."""
        handle = session.runtime_state
        if handle is not None and handle in self._live:
            self._closed.append(handle)
            self._entry.stale = True

    def release(self, session: Session) -> None:
        handle = session.runtime_state
        if isinstance(handle, _Upgrade):  # its client left while onUpgrade ran
            self._forget(handle)
            session.runtime_state = None
        elif handle is not None:
            self._live.pop(handle, None)
            self._request_total -= self._request_bytes.pop(handle, 0)
            session.runtime_state = None

    def adopt(self, old: Script, sessions: Iterable[Session]) -> None:
        """Reload: recreate each live session in this context with its attributes (as JSON) and
        rooms (which live in the hub and are untouched)."""
        for session in sessions:
            old_handle = session.runtime_state
            attrs = None
            if isinstance(old, JsScript) and old_handle is not None and old._ctx is not None:
                try:
                    attrs = old._export_attrs(old_handle)
                    old._flush(old._drain(None, 0), None, None)
                except quickjs.JSException as exc:
                    self._log.warning("reload: the attributes of session %s are lost: %s", session.id,
                                      str(exc).splitlines()[0])
            handle = self._next_handle = self._next_handle + 1
            rooms = json.dumps(sorted(room.name for room in session.rooms))
            text, query, headers, size = self._handshake_data(session)
            if size > SMALL_REQUEST:
                self._hold_request(handle, size)
            self._entry.entries += 1
            try:
                self._new_session(handle, text, query, headers, attrs, rooms, session.is_open())
            except quickjs.JSException as exc:
                self._log.error("reload: session %s cannot be carried over: %s", session.id, self._describe(str(exc)))
                session.runtime_state = None
                session.conn.direct(None, None)
                continue
            session.runtime_state = handle
            self._live[handle] = session
            session.conn.direct(self._entry, handle)

    def attributes(self, session: Session) -> dict[str, object]:
        """The attributes as the JS context holds them, through JSON (what reload carries over)."""
        handle = session.runtime_state
        if handle is None or self._ctx is None:
            return {}
        self._log.disabled = True  # its warnings about values JSON cannot carry are reload's
        try:
            text = self._export_attrs(handle)
            self._flush(self._drain(None, 0), None, None)
        except quickjs.JSException as exc:
            return {"(unreadable)": str(exc).splitlines()[0]}
        finally:
            self._log.disabled = False
        return json.loads(text) if text else {}

    def sources(self) -> set[Path]:
        """Itself and every module it loaded (helpers, packages), also by a dynamic import()."""
        files = self._modules.files.values() if self._modules is not None else ()
        return {self.path.resolve(), *(file.path.resolve() for file in files)}

    def unload(self) -> None:
        """Stop its timers, abandon its pending async hooks, forget the context."""
        if self._unloaded:
            return
        self._unloaded = True
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        for future in self._promises.values():
            future.cancel()
        self._promises.clear()
        for task in self._fetches.values():
            task.cancel()
        self._fetches.clear()
        if self._modules is not None:
            self._modules.close()
        if self._link is not None and self in self._link.scripts:
            self._link.scripts.remove(self)
        if self._ctx is not None:
            stopped_frame.release(self)
        if self._watch_key:
            cpu_limit.unwatch(self._runtime if self._ctx is not None else None, self._watch_key)
        self._live.clear()
        self._ctx = None
        self._web = None
        self._api = self._new_session = self._export_attrs = self._drain = self._fire_fn = self._known = None
        self._open = self._message = self._message_binary = self._close = None
        self._entry.function = None
