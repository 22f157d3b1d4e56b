#!/usr/bin/env python3
"""Cross-node fan-out: dieselengine `--cluster` vs Socket.IO + @socket.io/redis-adapter, one Redis.

One room of 200 clients split evenly across the nodes (client i connects to node i % nodes), 10 of
them sending 64-byte messages (5 per node); every message goes to the 199 others, most of them on
the other node, so nearly every delivery crosses Redis. The same C generator
(`loadgen_multi.c`, one process, one clock) drives every configuration and reports its own CPU.

    python bench/cluster/run.py [--quick] [--configs diesel-1,diesel-2,socketio-2,socketio-1]

Configurations: `diesel-1` is one dieselengine node without `--cluster` (the single-node figure the
cluster is compared with), `diesel-2` two `--cluster` nodes, `socketio-2` two Socket.IO nodes on
the Redis adapter, `socketio-1` one Socket.IO node (reference). Placement on this 2-core machine:
a 1-node server on core 0 and the generator on core 1 (as in bench/run.py); 2-node: one node per
core, the generator and redis-server left to the scheduler (the same for both products).

Method (as bench/run.py's fan-out): the highest offered send rate delivered in full with
p99 < 50 ms, found by doubling then bisection, then a run at 70 % of it for p50/p99.
Writes bench/cluster/RESULTS.md and bench/cluster/results.json; requires redis-server, node, cc,
and `npm install --prefix bench/cluster` (done automatically when missing).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
CACHE = HERE / ".cache"
LOGS = HERE / "logs"
CHAT_PY = ROOT / "bench" / "servers" / "diesel_py"
CONNS, SENDERS = 200, 10
P99_LIMIT_MS = 50.0
ALL_CONFIGS = ["diesel-1", "diesel-2", "socketio-2", "socketio-1"]
SIO_QUERY = "?EIO=4&transport=websocket&route=chat"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def build_loadgen() -> Path:
    src, out = HERE / "loadgen_multi.c", CACHE / "loadgen_multi"
    if not out.exists() or out.stat().st_mtime < src.stat().st_mtime:
        CACHE.mkdir(exist_ok=True)
        subprocess.run(["cc", "-O2", "-Wall", "-o", str(out), str(src)], check=True)
    return out


def need_node_modules() -> None:
    mods = HERE / "node_modules"
    if not ((mods / "socket.io").exists() and (mods / "@socket.io" / "redis-adapter").exists()
            and (mods / "redis").exists()):
        subprocess.run(["npm", "install", "--prefix", str(HERE), "--no-audit", "--no-fund"], check=True)


def diesel_cmd() -> list[str]:
    exe = os.environ.get("DIESEL") or shutil.which("diesel")
    return [exe] if exe else [sys.executable, "-m", "dieselengine"]


class Proc:
    """A subprocess in its own session, pinned with taskset when `core` is given."""

    def __init__(self, name: str, argv: list[str], core: str | None = None) -> None:
        LOGS.mkdir(exist_ok=True)
        self.name = name
        self.log = LOGS / f"{name}.log"
        full = (["taskset", "-c", core] if core is not None else []) + argv
        with open(self.log, "ab") as log:
            log.write(f"\n--- {dt.datetime.now().isoformat()} {' '.join(full)}\n".encode())
            log.flush()
            env = dict(os.environ, NODE_PATH=str(HERE / "node_modules"))
            self.proc = subprocess.Popen(full, cwd=ROOT, stdout=log, stderr=log, stdin=subprocess.DEVNULL,
                                         env=env, start_new_session=True)

    def stop(self) -> None:
        if self.proc.poll() is not None:
            return
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                return
            try:
                self.proc.wait(5)
                return
            except subprocess.TimeoutExpired:
                continue


def wait_http(port: int, proc: Proc, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.proc.poll() is not None:
            raise RuntimeError(f"{proc.name} exited at start; see {proc.log}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{proc.name} not ready; see {proc.log}")


def start_redis() -> tuple[Proc, str]:
    exe = shutil.which("redis-server")
    if not exe:
        sys.exit("redis-server not found (apt-get install redis-server)")
    port = free_port()
    proc = Proc("redis", [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                if sock.recv(16).startswith(b"+PONG"):
                    return proc, f"redis://127.0.0.1:{port}"
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("redis-server did not start")


def start_config(config: str, redis_url: str) -> tuple[list[Proc], list[int], str]:
    """Start the servers of a configuration; returns (processes, ports, generator protocol)."""
    product, nodes = config.rsplit("-", 1)
    count = int(nodes)
    cores: list[str | None] = ["0"] if count == 1 else ["0", "1"]
    procs, ports = [], []
    for i in range(count):
        port = free_port()
        if product == "diesel":
            argv = diesel_cmd() + ["serve", str(CHAT_PY), "--host", "127.0.0.1", "--port", str(port)]
            if count > 1:
                argv += ["--cluster", redis_url + "/0", "--cluster-prefix", f"bench{os.getpid()}"]
        else:
            argv = ["node", str(HERE / "socketio_cluster.js" if count > 1 else ROOT / "bench/servers/socketio.js"),
                    str(port)] + ([redis_url] if count > 1 else [])
        proc = Proc(f"{config}-{i}", argv, cores[i])
        procs.append(proc)
        ports.append(port)
    for proc, port in zip(procs, ports):
        if product == "diesel":
            wait_http(port, proc)
        else:
            wait_tcp(port, proc)
    return procs, ports, "ws" if product == "diesel" else "sio"


def wait_tcp(port: int, proc: Proc, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.proc.poll() is not None:
            raise RuntimeError(f"{proc.name} exited at start; see {proc.log}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{proc.name} not ready; see {proc.log}")


class LoadGen:
    def __init__(self, exe: Path, ports: list[int], proto: str, core: str | None) -> None:
        path, query = ("/socket.io/", SIO_QUERY) if proto == "sio" else ("/ws/chat", "")
        argv = ([] if core is None else ["taskset", "-c", core]) + [
            str(exe), "--mode", "fanout", "--proto", proto, "--port", ",".join(map(str, ports)),
            "--path", path, "--query", query, "--conns", str(CONNS), "--senders", str(SENDERS)]
        self.argv = argv
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)

    def read(self, timeout: float) -> dict[str, Any]:
        box: list[str] = []
        thread = threading.Thread(target=lambda: box.append(self.proc.stdout.readline()), daemon=True)  # type: ignore[union-attr]
        thread.start()
        thread.join(timeout)
        if not box or not box[0]:
            self.proc.kill()
            raise RuntimeError("load generator gave no result")
        return json.loads(box[0])

    def run(self, rate: float, secs: float) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(f"run {rate:.1f} {secs}\n")
        self.proc.stdin.flush()
        return self.read(secs + 40)

    def close(self) -> None:
        try:
            assert self.proc.stdin is not None
            self.proc.stdin.write("quit\n")
            self.proc.stdin.flush()
            self.proc.wait(10)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait()


def step_ok(s: dict[str, Any], rate: float) -> bool:
    return (s["lost"] == 0 and s["received"] > 0 and s["sent_rate"] >= 0.97 * rate
            and 0 <= s["p99_ms"] < P99_LIMIT_MS and s["dropped"] == 0)


def cpu_ticks(pids: list[int]) -> float:
    """utime + stime of processes, in seconds."""
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, IndexError, ValueError):
            pass
    return total


def measure(config: str, exe: Path, redis_url: str, redis_pid: int, quick: bool) -> dict[str, Any]:
    secs, tol = (1.0, 1.25) if quick else (2.5, 1.10)
    procs, ports, proto = start_config(config, redis_url)
    steps: list[dict[str, Any]] = []
    try:
        time.sleep(0.3)
        lg = LoadGen(exe, ports, proto, "1" if len(ports) == 1 else None)
        try:
            conn = lg.read(60)
            if conn["established"] < CONNS:
                raise RuntimeError(f"only {conn['established']}/{CONNS} clients connected")
            time.sleep(1.5)  # cluster counts settle (SPEC: within a second)
            lg.run(200, 1.0)  # warm-up, not judged

            def trial(rate: float) -> bool:
                pids = [p.proc.pid for p in procs] + [redis_pid]
                before = {pid: cpu_ticks([pid]) for pid in pids}
                s = lg.run(rate, secs)
                s["cpu_s"] = {name: round(cpu_ticks([pid]) - before[pid], 2)
                              for name, pid in zip([p.name for p in procs] + ["redis"], pids)}
                s["ok"] = step_ok(s, rate)
                steps.append(s)
                print(f"  {config}: offered {rate:>9.0f}/s  deliveries/s {s['deliveries_per_s']:>11,.0f}  "
                      f"lost {s['lost']:>7}  p99 {s['p99_ms']:>8.2f} ms  gen cpu {s['gen_cpu_frac']:.0%}  "
                      f"{'ok' if s['ok'] else 'FAIL'}", flush=True)
                return s["ok"]

            good, bad, rate = 0.0, 0.0, 500.0
            while True:
                if trial(rate):
                    good = rate
                    if bad or rate >= 256000:
                        break
                    rate *= 2
                else:
                    bad = rate
                    if good or rate <= 10:
                        break
                    rate /= 2
            while good and bad and bad / good > tol:
                mid = (good + bad) / 2
                if trial(mid):
                    good = mid
                else:
                    bad = mid
            at70 = lg.run(0.7 * good, secs * 2) if good else None
            generator = shlex.join(lg.argv)
        finally:
            lg.close()
    finally:
        for proc in procs:
            proc.stop()
    best = max((s for s in steps if s["ok"]), key=lambda s: s["offered_rate"], default=None)
    return {"config": config, "max_rate": good, "max_deliveries_per_s": best["deliveries_per_s"] if best else 0,
            "max_step": best, "at70": at70, "steps": steps, "generator": generator}


def machine() -> dict[str, str]:
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass

    def version(argv: list[str]) -> str:
        try:
            return subprocess.run(argv, capture_output=True, text=True, timeout=10).stdout.strip().splitlines()[0]
        except (OSError, IndexError, subprocess.TimeoutExpired):
            return "?"

    return {"cpu": cpu, "nproc": str(os.cpu_count()), "kernel": platform.release(),
            "python": platform.python_version(), "node": version(["node", "--version"]),
            "redis": version(["redis-server", "--version"])}


def report(results: list[dict[str, Any]], command: str, started: float) -> str:
    info = machine()
    by = {r["config"]: r for r in results}
    lines = [
        "# Cross-node fan-out: dieselengine cluster vs Socket.IO + Redis adapter", "",
        f"- date: {dt.datetime.now(dt.timezone.utc).isoformat(timespec='seconds')}",
        f"- command: `{command}`",
        f"- machine: {info['cpu']}, {info['nproc']} cores, Linux {info['kernel']}",
        f"- versions: python {info['python']}, node {info['node']}, {info['redis']}",
        f"- total run time: {time.monotonic() - started:.0f} s", "",
        f"Scenario: one room of {CONNS} clients split evenly across the nodes (client i on node i % n), "
        f"{SENDERS} of them sending 64-byte messages (half on each node); each message goes to the "
        f"{CONNS - 1} others. Loopback only (127.0.0.x). Max = highest offered rate delivered in full "
        f"with p99 < {P99_LIMIT_MS:.0f} ms (doubling, then bisection); then a run at 70 % of it.", "",
        "Placement (2 cores): 1 node on core 0 with the generator on core 1; 2 nodes on cores 0 and 1, "
        "generator and redis-server scheduled freely. Gen CPU = the generator's CPU / wall time.", "",
        "| configuration | max msgs/s sent | max deliveries/s | p99 at max | gen CPU at max | "
        "deliveries/s at 70 % | p50 at 70 % | p99 at 70 % | CPU s per node / redis at max |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        m, a = r["max_step"], r["at70"]
        if m is None:
            lines.append(f"| {r['config']} | no passing step | | | | | | | |")
            continue
        lines.append(
            f"| {r['config']} | {r['max_rate']:,.0f} | {r['max_deliveries_per_s']:,.0f} | {m['p99_ms']:.2f} ms | "
            f"{m['gen_cpu_frac']:.0%} | {a['deliveries_per_s']:,.0f} | {a['p50_ms']:.2f} ms | {a['p99_ms']:.2f} ms | "
            f"{' / '.join(f'{v:.1f}' for v in m['cpu_s'].values())} in {m['seconds']:.1f} s |")
    lines.append("")

    def ratio(a: str, b: str) -> str:
        if a in by and b in by and by[b]["max_deliveries_per_s"]:
            return f"{by[a]['max_deliveries_per_s'] / by[b]['max_deliveries_per_s']:.2f}x"
        return "n/a"

    lines += [
        f"- diesel-2 vs socketio-2 (target >= 5x): **{ratio('diesel-2', 'socketio-2')}**",
        f"- diesel-2 vs diesel-1, our single-node figure (target >= 0.5x): **{ratio('diesel-2', 'diesel-1')}**",
        "",
        "Generator command lines (ports are free ports picked per run):", "",
    ]
    lines += [f"- {r['config']}: `{r['generator']}`" for r in results]
    lines.append("")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", default=",".join(ALL_CONFIGS))
    parser.add_argument("--quick", action="store_true", help="1 s steps, coarser bisection")
    args = parser.parse_args()
    configs = [c for c in args.configs.split(",") if c]
    started = time.monotonic()
    exe = build_loadgen()
    if any(c.startswith("socketio") for c in configs):
        need_node_modules()
    redis, url = start_redis()
    results = []
    try:
        for config in configs:
            print(f"{config}:", flush=True)
            results.append(measure(config, exe, url, redis.proc.pid, args.quick))
    finally:
        redis.stop()
    command = "python bench/cluster/run.py " + " ".join(sys.argv[1:])
    (HERE / "results.json").write_text(json.dumps(results, indent=1))
    text = report(results, command.strip(), started)
    (HERE / "RESULTS.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
