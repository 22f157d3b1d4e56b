#!/usr/bin/env python3
"""Benchmark dieselengine against its peers: one command, one markdown report.

Each server runs pinned to core 0 and the C load generator to core 1, so the two never compete
for a core and the generator's own CPU time (it reports getrusage) shows whether it, rather than
the server, was the limit. Every scenario gets a fresh server process so RSS figures start clean.

    python bench/run.py [--scenarios fanout,echo,idle,slow,churn]
                        [--servers bun,node-ws,socketio,python-socketio,websockets,diesel-js,diesel-py,
                                   diesel-js-asyncio,diesel-py-asyncio,uvloop-floor,c-floor,c-floor-py,c-floor-js;
                                   not in the default list: diesel-js-nolog, diesel-js-jwt,
                                   diesel-js-baseline ($BASELINE_DIESEL)]
                        [--quick] [--repeat 3]

Echo and each idle step run --repeat times on fresh servers and report the median with its
range, so a ratio can be told from noise. Writes bench/results/latest.md (and latest.json with
every raw generator line).
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import json
import os
import platform
import resource
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

BENCH = Path(__file__).resolve().parent
PEERS = BENCH / "peers"
CACHE = BENCH / ".cache"
RESULTS = BENCH / "results"
SERVERS_DIR = BENCH / "servers"
#: Servers listen below the ephemeral range (from 32768), where the generator's own connections,
#: tens of thousands a step, would take a port between two runs of one server.
PORTS = range(18100, 32000)
SERVER_CORE, LOADGEN_CORE = "0", "1"
P99_LIMIT_MS = 50.0
SLOW_SIZE = 1024
SIO_QUERY = "?EIO=4&transport=websocket&route="
ALL_SCENARIOS = ["fanout", "echo", "idle", "slow", "churn"]
ALL_SERVERS = ["bun", "node-ws", "socketio", "python-socketio", "websockets", "diesel-js", "diesel-py",
               "diesel-js-asyncio", "diesel-py-asyncio", "uvloop-floor",
               "c-floor", "c-floor-py", "c-floor-js"]
PY_DEPS = {"socketio": "python-socketio", "uvicorn": "uvicorn", "websockets": "websockets",
           "uvloop": "uvloop", "httptools": "httptools"}  # uvicorn ws="websockets-sansio" needs websockets >= 13


class Skip(Exception):
    """A server that cannot run here (missing binary, failed start): reported, never faked."""


# ---------------------------------------------------------------- servers


@dataclass
class ServerDef:
    """How to start one server and how to address its chat and echo routes."""

    name: str
    argv: Callable[[int], list[str]]
    proto: str = "ws"  # "ws" raw frames, "sio" Engine.IO v4 / Socket.IO
    health: str = "tcp"  # "tcp": port accepts; "http": GET /healthz answers 200
    needs: Callable[[], None] = lambda: None
    port: int = 0
    core: str | None = SERVER_CORE  # taskset core list, None = left to the scheduler
    node_path: Path = PEERS / "node_modules"
    #: Scenarios it takes part in (None: all): the reference servers have no rooms.
    scenarios: frozenset[str] | None = None
    #: The query every generator client sends (a token for the JWT variant).
    query: str = ""

    def route(self, name: str) -> tuple[str, str]:
        """(path, query) of route "chat" or "echo" for the generator."""
        if self.proto == "sio":
            return "/socket.io/", SIO_QUERY + name
        return f"/ws/{name}", self.query


JWT_SECRET = "bench-secret-" + "0123456789abcdef" * 2


def _bench_token() -> str:
    """An HS256 token for the JWT variant, valid for a day (PyJWT: a dependency of dieselengine)."""
    try:
        import jwt
    except ImportError:
        return ""
    return jwt.encode({"sub": "bench", "exp": int(time.time()) + 86400}, JWT_SECRET, algorithm="HS256")


def bun_bin() -> str:
    return str(PEERS / "node_modules" / ".bin" / "bun")


def diesel_bin() -> str:
    """The `diesel` command (or $DIESEL): skipped, never substituted, when absent."""
    cmd = os.environ.get("DIESEL") or shutil.which("diesel")
    if not cmd:
        raise Skip("`diesel` is not on PATH (set $DIESEL to override)")
    return cmd


def need_node_peers() -> None:
    mods = PEERS / "node_modules"
    if not (Path(bun_bin()).exists() and (mods / "ws").exists() and (mods / "socket.io").exists()):
        print("installing node peers: npm install --prefix bench/peers", flush=True)
        subprocess.run(["npm", "install", "--prefix", str(PEERS), "--no-audit", "--no-fund"], check=True)


def need_py_peers() -> None:
    missing = [pkg for mod, pkg in PY_DEPS.items() if importlib.util.find_spec(mod) is None]
    if missing:
        print("installing python peers: pip install " + " ".join(missing), flush=True)
        subprocess.run([sys.executable, "-m", "pip", "install", *missing], check=True)


def need_diesel() -> None:
    diesel_bin()


def need_baseline() -> None:
    if not os.environ.get("BASELINE_DIESEL"):
        raise Skip("set $BASELINE_DIESEL to the `diesel` of the build to compare with")


SERVER_DEFS: dict[str, ServerDef] = {
    "bun": ServerDef("bun", lambda p: [bun_bin(), str(SERVERS_DIR / "bun_pubsub.js"), str(p)],
                     needs=need_node_peers),
    "node-ws": ServerDef("node-ws", lambda p: ["node", str(SERVERS_DIR / "node_ws.js"), str(p)],
                         needs=need_node_peers),
    "socketio": ServerDef("socketio", lambda p: ["node", str(SERVERS_DIR / "socketio.js"), str(p)],
                          proto="sio", needs=need_node_peers),
    "python-socketio": ServerDef("python-socketio",
                                 lambda p: [sys.executable, str(SERVERS_DIR / "python_socketio.py"), str(p)],
                                 proto="sio", needs=need_py_peers),
    "websockets": ServerDef("websockets",
                            lambda p: [sys.executable, str(SERVERS_DIR / "websockets_server.py"), str(p)],
                            needs=need_py_peers),
    # dieselengine on each wire: the C one (`diesel-js`, `diesel-py`) and the portable one (`-asyncio`).
    **{f"diesel-{lang}{suffix}": ServerDef(
        f"diesel-{lang}{suffix}",
        lambda p, lang=lang, wire=wire: [diesel_bin(), "serve", str(SERVERS_DIR / f"diesel_{lang}"), "--wire", wire,
                                         "--host", "127.0.0.1", "--port", str(p)],
        health="http", needs=need_diesel)
       for lang in ("js", "py") for suffix, wire in (("", "c"), ("-asyncio", "asyncio"))},
    # diesel-js on the C wire without its access log (what the log costs), and verifying a JWT per
    # handshake (HS256, PyJWT): not peers, variants of diesel-js (issue 14).
    "diesel-js-nolog": ServerDef(
        "diesel-js-nolog", lambda p: [diesel_bin(), "serve", str(SERVERS_DIR / "diesel_js"), "--wire", "c",
                                      "--host", "127.0.0.1", "--port", str(p), "--no-access-log"],
        health="http", needs=need_diesel),
    # diesel-js served by another build ($BASELINE_DIESEL, e.g. main before a change): an A/B
    # comparison inside one run, on the same machine state.
    "diesel-js-baseline": ServerDef(
        "diesel-js-baseline", lambda p: [os.environ.get("BASELINE_DIESEL") or diesel_bin(), "serve",
                                         str(SERVERS_DIR / "diesel_js"), "--host", "127.0.0.1", "--port", str(p)],
        health="http", needs=need_baseline),
    "diesel-js-jwt": ServerDef(
        "diesel-js-jwt", lambda p: [diesel_bin(), "serve", str(SERVERS_DIR / "diesel_js"), "--wire", "c",
                                    "--host", "127.0.0.1", "--port", str(p), "--jwt-secret", JWT_SECRET],
        health="http", needs=need_diesel, query=f"?token={_bench_token()}"),
    # Not a peer: the ceiling for any Python server on uvloop (servers/uvloop_floor.py).
    "uvloop-floor": ServerDef("uvloop-floor",
                              lambda p: [sys.executable, str(SERVERS_DIR / "uvloop_floor.py"), str(p)],
                              needs=need_py_peers, scenarios=frozenset({"echo", "idle"})),
    # Not peers: echo over a transport in C, the handler in C, Python or JS (servers/c_floor.c).
    **{name: ServerDef(name, lambda p, kind=kind: [sys.executable, str(SERVERS_DIR / "c_floor.py"), str(p), kind],
                       scenarios=frozenset({"echo", "idle"} if kind == "none" else {"echo"}))
       for name, kind in (("c-floor", "none"), ("c-floor-py", "python"), ("c-floor-js", "js"))},
}


def tree_pids(root: int) -> list[int]:
    """root and all its descendants, from /proc (a server may fork workers)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
            ppid = int(stat[stat.rindex(")") + 2:].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def cpu_seconds(root: int) -> tuple[float, float]:
    """(user, system) CPU seconds used so far by the process tree, from /proc."""
    user = system = 0
    for pid in tree_pids(root):
        try:
            with open(f"/proc/{pid}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        user += int(fields[11])
        system += int(fields[12])
    tick = os.sysconf("SC_CLK_TCK")
    return user / tick, system / tick


class CpuMeter:
    """The server's own CPU over a measured window, per operation: the kernel's share (system
    calls, TCP) against the server's own code, which profilers that sample stacks misattribute."""

    def __init__(self, server: "Server") -> None:
        self.pid = server.pid
        self.start = cpu_seconds(self.pid)
        self.t0 = time.monotonic()

    def per_op(self, ops: int) -> dict[str, float | None]:
        user, system = cpu_seconds(self.pid)
        wall = time.monotonic() - self.t0
        user -= self.start[0]
        system -= self.start[1]
        return {"server_cpu_frac": (user + system) / wall if wall else None,
                "server_user_us": user / ops * 1e6 if ops else None,
                "server_sys_us": system / ops * 1e6 if ops else None}


def rss_kib(root: int) -> int:
    """Resident set size summed over the process tree, in KiB."""
    total = 0
    for pid in tree_pids(root):
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
                        break
        except OSError:
            pass
    return total


class Server:
    """One running server process (on core 0 unless sdef.core says otherwise); a context manager so it
    is always stopped."""

    def __init__(self, sdef: ServerDef, log_dir: Path) -> None:
        self.sdef = sdef
        self.log_path = log_dir / f"{sdef.name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> "Server":
        argv = ([] if self.sdef.core is None else ["taskset", "-c", self.sdef.core]) + self.sdef.argv(self.sdef.port)
        log = open(self.log_path, "ab")
        log.write(f"\n--- {dt.datetime.now().isoformat()} {' '.join(argv)}\n".encode())
        log.flush()
        env = dict(os.environ, NODE_PATH=str(self.sdef.node_path))
        self.proc = subprocess.Popen(argv, cwd=BENCH.parent, stdout=log, stderr=log, stdin=subprocess.DEVNULL,
                                     env=env, start_new_session=True)
        log.close()
        try:
            self._wait_ready(20.0)
        except BaseException:
            self.stop()
            raise
        time.sleep(0.3)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def rss(self) -> int:
        return rss_kib(self.pid)

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                tail = self.log_path.read_text(errors="replace").strip().splitlines()[-1:] or ["?"]
                raise Skip(f"exited with {self.proc.returncode} at start: {tail[0][:160]}")
            if self._ready():
                return
            time.sleep(0.05)
        raise Skip(f"not ready after {timeout:.0f} s")

    def _ready(self) -> bool:
        if self.sdef.health == "http":
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.sdef.port}/healthz", timeout=1) as r:
                    return r.status == 200
            except OSError:
                return False
        try:
            with socket.create_connection(("127.0.0.1", self.sdef.port), timeout=0.5):
                return True
        except OSError:
            return False

    def stop(self) -> None:
        """SIGTERM the process group we created, then SIGKILL it after 5 s."""
        if self.proc is None or self.proc.poll() is not None:
            return
        for sig, wait in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                return
            try:
                self.proc.wait(wait)
                return
            except subprocess.TimeoutExpired:
                continue


def free_ports(names: Sequence[str]) -> dict[str, int]:
    """A port for each name, in a block that nobody listens on now, starting where this process's
    id says: two people's runs on one machine do not meet each other's servers ("port in use", or
    a generator talking to the other run's server)."""
    width = len(names)
    blocks = len(PORTS) // width
    first = os.getpid() % blocks
    for k in range(blocks):
        base = PORTS[0] + (first + k) % blocks * width
        if all(_free(port) for port in range(base, base + width)):
            return {name: base + i for i, name in enumerate(names)}
    raise SystemExit(f"no {width} free ports in {PORTS.start}-{PORTS.stop - 1}")


def _free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


# ---------------------------------------------------------------- load generator


def build_loadgen() -> Path:
    """Compile loadgen.c with the system cc into bench/.cache when the source is newer."""
    src, out = BENCH / "loadgen" / "loadgen.c", CACHE / "loadgen"
    if not out.exists() or out.stat().st_mtime < src.stat().st_mtime:
        CACHE.mkdir(exist_ok=True)
        subprocess.run(["cc", "-O2", "-Wall", "-o", str(out), str(src), "-lssl", "-lcrypto", "-lz"], check=True)
    return out


class LoadGen:
    """A running generator on core 1; JSON lines out, "run RATE SECS" / "quit" commands in.

    ports (default: sdef.port) spreads the clients over several servers, client i on ports[i % n];
    core None leaves the generator to the scheduler.
    """

    def __init__(self, exe: Path, sdef: ServerDef, mode: str, route: str, *, ports: list[int] | None = None,
                 core: str | None = LOADGEN_CORE, **opts: Any) -> None:
        path, query = sdef.route(route)
        argv = ([] if core is None else ["taskset", "-c", core]) + [
            str(exe), "--mode", mode, "--proto", sdef.proto, "--port", ",".join(map(str, ports or [sdef.port])),
            "--path", path, "--query", query]
        for k, v in opts.items():
            argv += [f"--{k.replace('_', '-')}", str(v)]
        self.argv = argv
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
        self.lines: list[dict[str, Any]] = []

    def read(self, timeout: float = 300.0) -> dict[str, Any]:
        assert self.proc.stdout is not None
        box: list[str] = []
        t = threading.Thread(target=lambda: box.append(self.proc.stdout.readline()), daemon=True)  # type: ignore[union-attr]
        t.start()
        t.join(timeout)
        if not box or not box[0]:
            self.kill()
            raise RuntimeError("load generator gave no result (timeout or crash)")
        rec = json.loads(box[0])
        self.lines.append(rec)
        return rec

    def cmd(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def run(self, rate: float, secs: float) -> dict[str, Any]:
        self.cmd(f"run {rate:.1f} {secs}")
        return self.read(secs + 40)

    def close(self) -> None:
        try:
            self.cmd("quit")
        except (BrokenPipeError, OSError):
            pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


# ---------------------------------------------------------------- scenarios


@dataclass
class Ctx:
    exe: Path
    quick: bool
    #: Fresh-server repetitions of echo and of each idle step (the median is reported, with the range).
    repeat: int
    log_dir: Path
    raw: list[dict[str, Any]] = field(default_factory=list)
    fanout_max: dict[str, float] = field(default_factory=dict)


def step_ok(s: dict[str, Any], rate: float, readers: int = 200) -> bool:
    """Full delivery to every client still connected, the offered rate actually sent, p99 under
    the limit. A step after which clients are missing (a server that closes clients it cannot
    keep up with) does not pass."""
    return (s["lost"] == 0 and s["received"] > 0 and s["sent_rate"] >= 0.97 * rate
            and 0 <= s["p99_ms"] < P99_LIMIT_MS and s["dropped"] == 0 and s.get("readers", readers) == readers)


def scenario_fanout(ctx: Ctx, sdef: ServerDef) -> dict[str, Any]:
    """Highest offered send rate delivered in full with p99 < 50 ms; then p50/p99 at 70 % of it.

    Doubling then bisection on one set of 200 connections; the generator waits for the room to go
    quiet before each step so an overloaded step's backlog does not leak into the next. The 70 %
    run gets a fresh server and fresh connections: an overloaded step can cost clients (a server
    may close those it cannot keep up with), and the 70 % figure must be for the whole room.
    """
    secs, tol = (1.0, 1.25) if ctx.quick else (2.5, 1.10)
    steps: list[dict[str, Any]] = []
    with Server(sdef, ctx.log_dir):
        lg = _fanout_clients(ctx, sdef)
        try:
            def trial(rate: float) -> bool:
                s = lg.run(rate, secs)
                s["ok"] = step_ok(s, rate)
                steps.append(s)
                return s["ok"]

            good = find_max_rate(trial, 1000.0, 25.0, tol)
        finally:
            lg.close()
    at70 = None
    if good:
        with Server(sdef, ctx.log_dir):
            lg = _fanout_clients(ctx, sdef)
            try:
                at70 = lg.run(0.7 * good, secs * 2)
            finally:
                lg.close()
    ctx.fanout_max[sdef.name] = good
    return fanout_result(good, steps, at70)


def _fanout_clients(ctx: Ctx, sdef: ServerDef) -> LoadGen:
    """200 clients in the room, warmed up (JIT, allocator) with a short step that is not judged."""
    lg = LoadGen(ctx.exe, sdef, "fanout", "chat", conns=200, senders=10)
    conn = lg.read(60)
    if conn["established"] < 200:
        lg.kill()
        raise RuntimeError(f"only {conn['established']}/200 clients connected")
    lg.run(200, 1.0)
    return lg


def find_max_rate(trial: Callable[[float], bool], start: float, floor: float, tol: float) -> float:
    """Highest rate at which trial(rate) passes: double from start until a step fails (or halve until
    one passes, giving up at floor), then bisect until failing / passing <= tol. 0 if none passed."""
    good, bad, rate = 0.0, 0.0, start
    while True:
        if trial(rate):
            good = rate
            if bad or rate >= 256000:
                break
            rate *= 2
        else:
            bad = rate
            if good or rate <= floor:
                break
            rate /= 2
    while good and bad and bad / good > tol:
        mid = (good + bad) / 2
        if trial(mid):
            good = mid
        else:
            bad = mid
    return good


def fanout_result(good: float, steps: list[dict[str, Any]], at70: dict[str, Any] | None) -> dict[str, Any]:
    """The fan-out record: the maximum, its best passing step, the 70 % run and every step."""
    best = max((s for s in steps if s["ok"]), key=lambda s: s["offered_rate"], default=None)
    return {"max_rate": good, "max_deliveries_per_s": best["deliveries_per_s"] if best else 0,
            "max_step": best, "at70": at70, "steps": steps}


def median_of(runs: list[dict[str, Any]], key: str) -> dict[str, Any]:
    """The run with the median `key`, carrying the range of `key` over all runs: the noise that a
    ratio between two servers must exceed to mean anything."""
    ordered = sorted(runs, key=lambda r: r[key])
    return dict(ordered[(len(ordered) - 1) // 2], runs=len(runs), low=ordered[0][key], high=ordered[-1][key])


def scenario_echo(ctx: Ctx, sdef: ServerDef) -> dict[str, Any]:
    """100 connections, closed loop: each sends its next message when the echo arrives."""
    return median_of([_echo_once(ctx, sdef) for _ in range(ctx.repeat)], "messages_per_s")


def _echo_once(ctx: Ctx, sdef: ServerDef) -> dict[str, Any]:
    with Server(sdef, ctx.log_dir) as srv:
        lg = LoadGen(ctx.exe, sdef, "echo", "echo", conns=100, duration=3 if ctx.quick else 6, warmup=1)
        try:
            lg.read(60)
            meter = CpuMeter(srv)
            rec = lg.read(60)
            rec.update(meter.per_op(rec["messages"]))
            return rec
        finally:
            lg.close()


def fd_cap() -> int:
    """Most connections one process can hold here (the RLIMIT_NOFILE hard limit, less slack)."""
    return resource.getrlimit(resource.RLIMIT_NOFILE)[1] - 200


def scenario_idle(ctx: Ctx, sdef: ServerDef) -> list[dict[str, Any]]:
    """N idle connections to /ws/echo (no room): RSS per connection and handshakes per second."""
    wanted = [10000] if ctx.quick else [10000, 100000]
    return [median_of([_idle_once(ctx, sdef, n) for _ in range(ctx.repeat)], "handshakes_per_s") for n in wanted]


def _idle_once(ctx: Ctx, sdef: ServerDef, n: int) -> dict[str, Any]:
    conns = min(n, fd_cap())
    rec = measured_load(ctx, sdef, "idle", "echo", "established", 300, conns=conns, conc=256, timeout=30)
    est = rec["established"]
    return {"wanted": n, "conns": conns, "established": est, "failed": rec["failed"],
            "handshakes_per_s": rec["handshakes_per_s"], "rss_before_kib": rec["rss_before_kib"],
            "rss_after_kib": rec["rss_after_kib"],
            "kib_per_conn": (rec["rss_after_kib"] - rec["rss_before_kib"]) / est if est else None,
            "gen_cpu_s": rec["gen_cpu_s"], "seconds": rec["seconds"], "capped": conns < n,
            "server_user_us": rec["server_user_us"], "server_sys_us": rec["server_sys_us"]}


def measured_load(ctx: Ctx, sdef: ServerDef, mode: str, route: str, count: str, wait: float,
                  **opts: Any) -> dict[str, Any]:
    """One generator run on a fresh server: its record, plus the server's CPU per operation (the
    record's `count` field) and its RSS before the load and one second after it finished."""
    with Server(sdef, ctx.log_dir) as srv:
        before = srv.rss()
        meter = CpuMeter(srv)
        lg = LoadGen(ctx.exe, sdef, mode, route, **opts)
        try:
            rec = lg.read(wait)
            rec.update(meter.per_op(rec[count]))
            time.sleep(1.0)
            rec.update(rss_before_kib=before, rss_after_kib=srv.rss())
        finally:
            lg.close()
    return rec


def scenario_slow(ctx: Ctx, sdef: ServerDef, rate: float) -> dict[str, Any]:
    """The fan-out room with 20 of 200 clients not reading: readers' service and server RSS.

    The same offered rate for every server keeps RSS growth comparable, unless that is over half
    the server's own fan-out maximum (then half of it, so we measure slow readers, not overload).
    Messages are 1 KiB and the non-readers use a 4 KiB receive buffer so the kernel's socket
    buffers fill within a second and the server has to queue (or drop, or close) in user space.
    """
    secs = 6.0 if ctx.quick else 15.0
    samples: list[tuple[float, int]] = []
    with Server(sdef, ctx.log_dir) as srv:
        # the baseline: the same room and rate with every client reading, for the p99 ratio
        lg = LoadGen(ctx.exe, sdef, "fanout", "chat", conns=200, senders=10, size=SLOW_SIZE)
        try:
            lg.read(60)
            baseline = lg.run(rate, secs / 3)
        finally:
            lg.close()
    with Server(sdef, ctx.log_dir) as srv:
        lg = LoadGen(ctx.exe, sdef, "fanout", "chat", conns=200, senders=10, slow_frac=f"{20 / 190:.6f}",
                     size=SLOW_SIZE)
        try:
            lg.read(60)
            stop = threading.Event()
            t0 = time.monotonic()

            def sample() -> None:
                while not stop.is_set():
                    samples.append((time.monotonic() - t0, srv.rss()))
                    stop.wait(0.5)

            th = threading.Thread(target=sample, daemon=True)
            th.start()
            step = lg.run(rate, secs)
            stop.set()
            th.join()
        finally:
            lg.close()
    half = [s for s in samples if s[0] >= secs / 2 + 0.3] or samples[-1:]
    slope = (half[-1][1] - half[0][1]) / (half[-1][0] - half[0][0]) if len(half) > 1 and half[-1][0] > half[0][0] else 0.0
    return {"rate": rate, "step": step, "baseline": baseline, "rss_start_kib": samples[0][1] if samples else 0,
            "rss_mid_kib": half[0][1] if half else 0, "rss_end_kib": samples[-1][1] if samples else 0,
            "rss_max_kib": max((s[1] for s in samples), default=0), "second_half_kib_per_s": slope,
            "samples": samples}


def scenario_churn(ctx: Ctx, sdef: ServerDef) -> dict[str, Any]:
    """connect / handshake (join on open) / close cycles on /ws/chat, 100 at a time."""
    cycles = 10000 if ctx.quick else 100000
    return measured_load(ctx, sdef, "churn", "chat", "cycles", 600, cycles=cycles, conc=100, timeout=10)


def cpu_busy(interval: float = 0.5) -> float:
    """Fraction of all cores busy over interval, from /proc/stat."""

    def snap() -> tuple[int, int]:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        return sum(v), v[3] + v[4]

    t0, i0 = snap()
    time.sleep(interval)
    t1, i1 = snap()
    return 1 - (i1 - i0) / max(1, t1 - t0)


def wait_for_idle_machine(max_wait: float) -> float:
    """Wait (bounded) until nothing else uses the cores; return the busy fraction at the start.

    Another process on either core skews both the server and the generator, so the report notes
    every scenario that had to start on a busy machine.
    """
    deadline = time.monotonic() + max_wait
    busy = cpu_busy()
    while busy > 0.10 and time.monotonic() < deadline:
        time.sleep(1.0)
        busy = cpu_busy()
    return busy


# ---------------------------------------------------------------- report


def fmt(v: float | None, digits: int = 0) -> str:
    if v is None:
        return "-"
    if abs(v) >= 1e6:
        return f"{v / 1e6:.2f} M"
    if abs(v) >= 1e4:
        return f"{v / 1e3:.1f} k"
    return f"{v:,.{digits}f}"


def ratio(v: float | None, ref: float | None, lower_is_better: bool = False) -> str:
    if not v or not ref:
        return "-"
    return f"{(ref / v if lower_is_better else v / ref):.2f}x"


def gen_flag(frac: float | None) -> str:
    return f"{frac * 100:.0f}%" + (" (!)" if frac and frac > 0.9 else "") if frac is not None else "-"


def spread(r: dict[str, Any]) -> str:
    """` (low-high)` over the repetitions of a median figure; nothing for a single run."""
    if r.get("runs", 1) < 2:
        return ""
    return f" ({fmt(r['low'])}-{fmt(r['high'])})"


def cpu_cells(r: dict[str, Any]) -> str:
    """`server CPU | user us | kernel us` cells: how busy the server's core was, and its CPU per
    operation split between its own code and the kernel."""
    frac, user, system = r.get("server_cpu_frac"), r.get("server_user_us"), r.get("server_sys_us")
    busy = f"{frac * 100:.0f}%" if frac is not None else "-"
    return f"{busy} | {fmt(user, 1)} | {fmt(system, 1)}"


CPU_NOTE = ("Server CPU = the server's CPU time / wall time over the measured window (100 % = its core "
            "was the limit); user / kernel us = its CPU time per operation in its own code and in the "
            "kernel (system calls, TCP), from /proc.")


def render(results: dict[str, dict[str, Any]], servers: list[str], scenarios: list[str], meta: dict[str, str]) -> str:
    md = ["# dieselengine benchmark results", ""]
    md += [f"- {k}: {v}" for k, v in meta.items()]
    md += ["", "Server on core 0, generator on core 1. `x Bun` > 1 means better than Bun. Gen CPU = the "
               "generator's own CPU time / wall time in that step; (!) marks steps where it was over 90 %, "
               "where the number is a lower bound for the server rather than its limit. " + CPU_NOTE, ""]

    def cell(name: str, scen: str) -> Any:
        return results.get(name, {}).get(scen)

    def rows(scen: str, ncols: int) -> Iterator[tuple[str, Any]]:
        """(server, result) of each server that ran scen; a skipped or failed one gets its reason as a row."""
        for name in servers:
            r = cell(name, scen)
            if isinstance(r, str):
                md.append(f"| {name} | {r} |" + " |" * (ncols - 2))
            elif r is not None:
                yield name, r

    if "fanout" in scenarios:
        bun = cell("bun", "fanout")
        ref = bun["max_deliveries_per_s"] if isinstance(bun, dict) else None
        md += ["## Fan-out: 200 clients in one room, 10 sending 64-byte messages", "",
               f"Highest offered rate with every delivery made and p99 < {P99_LIMIT_MS:.0f} ms; "
               "then a run at 70 % of that rate.", "",
               "| server | max msgs/s sent | max deliveries/s | x Bun | p99 at max | gen CPU at max "
               "| deliveries/s at 70 % | p50 at 70 % | p99 at 70 % |",
               "|---|---|---|---|---|---|---|---|---|"]
        for name, r in rows("fanout", 9):
            m, a = r["max_step"] or {}, r["at70"] or {}
            md.append(f"| {name} | {fmt(r['max_rate'])} | {fmt(r['max_deliveries_per_s'])} | "
                      f"{ratio(r['max_deliveries_per_s'], ref)} | {fmt(m.get('p99_ms'), 1)} ms | "
                      f"{gen_flag(m.get('gen_cpu_frac'))} | {fmt(a.get('deliveries_per_s'))} | "
                      f"{fmt(a.get('p50_ms'), 2)} ms | {fmt(a.get('p99_ms'), 2)} ms |")
        md.append("")
    if "echo" in scenarios:
        bun = cell("bun", "echo")
        ref = bun["messages_per_s"] if isinstance(bun, dict) else None
        md += ["## Echo: 100 connections, closed loop", "",
               "Each server measured on fresh servers --repeat times: the run with the median rate, and "
               "the range of the rates in brackets.", "",
               "| server | messages/s | x Bun | p50 | p99 | gen CPU | server CPU | user us/msg | kernel us/msg |",
               "|---|---|---|---|---|---|---|---|---|"]
        for name, r in rows("echo", 9):
            md.append(f"| {name} | {fmt(r['messages_per_s'])}{spread(r)} | {ratio(r['messages_per_s'], ref)} | "
                      f"{r['p50_ms']:.2f} ms | {r['p99_ms']:.2f} ms | {gen_flag(r['gen_cpu_frac'])} | {cpu_cells(r)} |")
        md.append("")
    if "idle" in scenarios:
        bun = cell("bun", "idle")
        md += ["## Idle connections (to /ws/echo, no room)", "",
               "RSS of the server's process tree after minus before, divided by the connections held. "
               "Gen CPU and us per handshake are over the whole connect phase. Each step measured on fresh servers "
               "--repeat times: the run with the median handshake rate, the range of the rates in brackets.", "",
               "| server | connections | KiB per conn | x Bun (less is better) | handshakes/s | x Bun | gen CPU "
               "| user us/handshake | kernel us/handshake |",
               "|---|---|---|---|---|---|---|---|---|"]
        for name, res in rows("idle", 9):
            for i, r in enumerate(res):
                b = bun[i] if isinstance(bun, list) and len(bun) > i else {}
                conns = f"{r['established']:,}" + (f" (of {r['wanted']:,}: capped)" if r["capped"] else "")
                if r["failed"]:
                    conns += f", {r['failed']} failed"
                md.append(f"| {name} | {conns} | {fmt(r['kib_per_conn'], 1)} | "
                          f"{ratio(r['kib_per_conn'], b.get('kib_per_conn'), True)} | "
                          f"{fmt(r['handshakes_per_s'])}{spread(r)} | {ratio(r['handshakes_per_s'], b.get('handshakes_per_s'))} | "
                          f"{gen_flag(r['gen_cpu_s'] / r['seconds'] if r.get('seconds') else None)} | "
                          f"{fmt(r.get('server_user_us'), 1)} | {fmt(r.get('server_sys_us'), 1)} |")
        md.append("")
    if "slow" in scenarios:
        md += ["## Slow consumers: fan-out room, 20 of 200 clients stop reading", "",
               f"Messages of {SLOW_SIZE} bytes; the offered rate is --slow-rate, or half the server's own "
               "fan-out maximum when that is lower.", "",
               "Readers = the 180 clients that keep reading. RSS sampled every 0.5 s; growth is the slope "
               "over the second half of the run.", "",
               "p99 without = the same rate with every client reading (a separate run, fresh server).", "",
               "| server | offered msgs/s | readers' deliveries/s | p99 | p99 without | p99 ratio | lost "
               "| slow clients closed by server | RSS start / mid / end MiB | 2nd-half growth KiB/s |",
               "|---|---|---|---|---|---|---|---|---|---|"]
        for name, r in rows("slow", 10):
            s = r["step"]
            base = r.get("baseline") or {}
            base_p99 = base.get("p99_ms")
            ratio_p99 = f"{s['p99_ms'] / base_p99:.2f}x" if base_p99 else "-"
            md.append(f"| {name} | {fmt(r['rate'])} | {fmt(s['deliveries_per_s'])} | {s['p99_ms']:.2f} ms | "
                      f"{'-' if base_p99 is None else f'{base_p99:.2f} ms'} | {ratio_p99} | "
                      f"{s['lost']:,} | {s['slow_closed']} | {r['rss_start_kib'] / 1024:.1f} / "
                      f"{r['rss_mid_kib'] / 1024:.1f} / {r['rss_end_kib'] / 1024:.1f} | "
                      f"{r['second_half_kib_per_s']:,.0f} |")
        md.append("")
    if "churn" in scenarios:
        bun = cell("bun", "churn")
        ref = bun["cycles_per_s"] if isinstance(bun, dict) else None
        md += ["## Churn: connect / join / close cycles on /ws/chat (100 in flight)", "",
               "| server | cycles | failed | cycles/s | x Bun | RSS before MiB | RSS after MiB | gen CPU "
               "| server CPU | user us/cycle | kernel us/cycle |",
               "|---|---|---|---|---|---|---|---|---|---|---|"]
        for name, r in rows("churn", 11):
            md.append(f"| {name} | {r['cycles']:,} | {r['failed']:,} | {fmt(r['cycles_per_s'])} | "
                      f"{ratio(r['cycles_per_s'], ref)} | {r['rss_before_kib'] / 1024:.1f} | "
                      f"{r['rss_after_kib'] / 1024:.1f} | {gen_flag(r.get('gen_cpu_frac'))} | {cpu_cells(r)} |")
        md.append("")
    return "\n".join(md)


def sh(cmd: list[str]) -> str:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=20).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "?"


def machine_meta(argv: list[str], servers: list[str]) -> dict[str, str]:
    model = next((ln.split(":", 1)[1].strip() for ln in sh(["lscpu"]).splitlines() if ln.startswith("Model name")), "?")
    versions = [f"python {platform.python_version()}", f"node {sh(['node', '--version'])}"]
    if Path(bun_bin()).exists():
        versions.append(f"bun {sh([bun_bin(), '--version'])}")
    for mod in ("websockets", "socketio", "engineio", "uvicorn", "uvloop"):
        try:
            versions.append(f"{mod} {__import__(mod).__version__}")
        except (ImportError, AttributeError):
            pass
    try:
        cc = Path("/proc/sys/net/ipv4/tcp_congestion_control").read_text().strip()
    except OSError:
        cc = "?"
    return {"date": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
            "command": " ".join(["python"] + argv), "cpu": model, "nproc": sh(["nproc"]),
            "kernel": platform.release(), "tcp congestion control": cc,
            "RLIMIT_NOFILE hard": str(resource.getrlimit(resource.RLIMIT_NOFILE)[1]),
            "versions": ", ".join(versions),
            "python-socketio deployment": "socketio.AsyncServer + ASGIApp under uvicorn (uvloop, httptools, websockets-sansio), websocket transport only"}


def raise_nofile() -> None:
    """Soft limit up to the hard limit (raising the hard limit needs CAP_SYS_RESOURCE)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 120000
    if hard < want:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, want))
            return
        except (ValueError, OSError):
            pass
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scenarios", default=",".join(ALL_SCENARIOS))
    ap.add_argument("--servers", default=",".join(ALL_SERVERS))
    ap.add_argument("--quick", action="store_true", help="short steps, 10k idle / churn (about 5 min)")
    ap.add_argument("--repeat", type=int, default=3,
                    help="fresh-server runs of echo and of each idle step; the median is reported with the range")
    ap.add_argument("--slow-rate", type=float, default=500.0,
                    help="offered msgs/s in the slow-consumer scenario, the same for every server")
    ap.add_argument("--out", default=str(RESULTS / "latest.md"))
    args = ap.parse_args()
    scenarios = [s for s in args.scenarios.split(",") if s]
    servers = [s for s in args.servers.split(",") if s]
    for s in scenarios:
        if s not in ALL_SCENARIOS:
            ap.error(f"unknown scenario {s}")
    for s in servers:
        if s not in SERVER_DEFS:
            ap.error(f"unknown server {s}")
    signal.signal(signal.SIGTERM, on_signal)
    raise_nofile()
    RESULTS.mkdir(exist_ok=True)
    log_dir = RESULTS / "logs"
    log_dir.mkdir(exist_ok=True)
    ctx = Ctx(exe=build_loadgen(), quick=args.quick, repeat=max(1, args.repeat), log_dir=log_dir)
    results: dict[str, dict[str, Any]] = {}
    t_all = time.monotonic()
    contention: list[str] = []
    ports = free_ports(servers)
    for i, name in enumerate(servers):
        sdef = SERVER_DEFS[name]
        sdef.port = ports[name]
        results[name] = {}
        try:
            sdef.needs()
        except (Skip, subprocess.CalledProcessError) as e:
            for scen in scenarios:
                if sdef.scenarios is None or scen in sdef.scenarios:
                    results[name][scen] = f"skipped: {e}"
            print(f"[{name}] skipped: {e}", flush=True)
            continue
        for scen in scenarios:
            if sdef.scenarios is not None and scen not in sdef.scenarios:
                continue
            t0 = time.monotonic()
            busy = wait_for_idle_machine(10 if args.quick else 30)
            if busy > 0.10:
                contention.append(f"{name}/{scen}: {busy * 100:.0f} % of the 2 cores busy with other work at start")
            print(f"[{name}] {scen} ...", end=" ", flush=True)
            try:
                if scen == "fanout":
                    r: Any = scenario_fanout(ctx, sdef)
                elif scen == "echo":
                    r = scenario_echo(ctx, sdef)
                elif scen == "idle":
                    r = scenario_idle(ctx, sdef)
                elif scen == "slow":
                    own = ctx.fanout_max.get(name)
                    r = scenario_slow(ctx, sdef, min(args.slow_rate, own / 2) if own else args.slow_rate)
                else:
                    r = scenario_churn(ctx, sdef)
                print(f"done in {time.monotonic() - t0:.0f} s", flush=True)
            except Skip as e:
                r = f"skipped: {e}"
                print(r, flush=True)
            except Exception as e:  # one broken server or scenario must not sink the whole run
                r = f"error: {type(e).__name__}: {e}"
                print(r, flush=True)
            results[name][scen] = r
            write_report(args.out, results, servers, scenarios, t_all, contention, partial=True)
    md = write_report(args.out, results, servers, scenarios, t_all, contention, partial=False)
    print("\n" + md)
    print(f"\nwritten: {args.out}")
    return 0


def write_report(out_path: str, results: dict[str, dict[str, Any]], servers: list[str], scenarios: list[str],
                 t_all: float, contention: list[str], partial: bool) -> str:
    """Write the markdown and JSON; called after every scenario so an interrupted run leaves a report."""
    meta = machine_meta(sys.argv, servers)
    meta["total run time"] = f"{time.monotonic() - t_all:.0f} s" + (" (run still in progress or interrupted)" if partial else "")
    meta["other load on the machine"] = "; ".join(contention) if contention else "none seen at the start of any scenario"
    md = render(results, servers, scenarios, meta)
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(md + "\n")
    out.with_suffix(".json").write_text(json.dumps({"meta": meta, "results": results}, indent=1))
    return md


def on_signal(signum: int, frame: object) -> None:
    """SIGTERM behaves like Ctrl-C, so the running server and generator are stopped on the way out."""
    raise KeyboardInterrupt


if __name__ == "__main__":
    sys.exit(main())
