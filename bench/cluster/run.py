#!/usr/bin/env python3
"""Cross-node fan-out: dieselengine `--cluster` vs Socket.IO + @socket.io/redis-adapter, one Redis.

One room of 200 clients split evenly across the nodes (client i connects to node i % nodes), 10 of
them sending 64-byte messages (5 per node); every message goes to the 199 others, most of them on
the other node, so nearly every delivery crosses Redis. The same C generator
(bench/loadgen/loadgen.c with a `--port` list, one process, one clock) drives every configuration
and reports its own CPU.

    python bench/cluster/run.py [--quick] [--configs diesel-1,diesel-2,socketio-2,socketio-1] [--out FILE]

Configurations: `diesel-1` is one dieselengine node without `--cluster` (the single-node figure the
cluster is compared with), `diesel-2` two `--cluster` nodes, `socketio-2` two Socket.IO nodes on
the Redis adapter, `socketio-1` one Socket.IO node (reference). Placement on this 2-core machine:
a 1-node server on core 0 and the generator on core 1 (as in bench/run.py); 2-node: one node per
core, the generator and redis-server left to the scheduler (the same for both products).

Method (as bench/run.py's fan-out): the highest offered send rate delivered in full with
p99 < 50 ms, found by doubling then bisection, then a run at 70 % of it for p50/p99; the generator,
the server processes, the pass test and the search are bench/run.py's. Writes
bench/cluster/results/latest.md and latest.json (the committed RESULTS.md is written by hand from
one of them); requires redis-server, node, cc, and `npm install --prefix bench/cluster` (done
automatically when missing).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import shlex
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(HERE.parent))
import run as bench  # noqa: E402  bench/run.py: load generator, server processes, fan-out search

LOGS = HERE / "logs"
RESULTS = HERE / "results"
NODE_MODULES = HERE / "node_modules"
CHAT_PY = ROOT / "bench" / "servers" / "diesel_py"
CONNS, SENDERS = 200, 10
ALL_CONFIGS = ["diesel-1", "diesel-2", "socketio-2", "socketio-1"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def need_node_modules() -> None:
    mods = NODE_MODULES
    if not ((mods / "socket.io").exists() and (mods / "@socket.io" / "redis-adapter").exists()
            and (mods / "redis").exists()):
        subprocess.run(["npm", "install", "--prefix", str(HERE), "--no-audit", "--no-fund"], check=True)


def diesel_cmd() -> list[str]:
    exe = os.environ.get("DIESEL") or shutil.which("diesel")
    return [exe] if exe else [sys.executable, "-m", "dieselengine"]


def redis_def() -> bench.ServerDef:
    """redis-server on a free port, left to the scheduler; ready when the port accepts."""
    exe = shutil.which("redis-server")
    if not exe:
        sys.exit("redis-server not found (apt-get install redis-server)")
    return bench.ServerDef("redis", lambda p: [exe, "--port", str(p), "--bind", "127.0.0.1", "--save", "",
                                               "--appendonly", "no"], port=free_port(), core=None)


def node_defs(config: str, redis_url: str) -> list[bench.ServerDef]:
    """The servers of a configuration, node i on core i, each on a free port."""
    product, nodes = config.rsplit("-", 1)
    count = int(nodes)
    if product == "diesel":
        cluster = ["--cluster", redis_url + "/0", "--cluster-prefix", f"bench{os.getpid()}"] if count > 1 else []
        argv = lambda p: diesel_cmd() + ["serve", str(CHAT_PY), "--host", "127.0.0.1", "--port", str(p)] + cluster
    else:
        script = HERE / "socketio_cluster.js" if count > 1 else ROOT / "bench/servers/socketio.js"
        argv = lambda p: ["node", str(script), str(p)] + ([redis_url] if count > 1 else [])
    proto, health = ("ws", "http") if product == "diesel" else ("sio", "tcp")
    return [bench.ServerDef(f"{config}-{i}", argv, proto=proto, health=health, port=free_port(), core=str(i),
                            node_path=NODE_MODULES) for i in range(count)]


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
    defs = node_defs(config, redis_url)
    steps: list[dict[str, Any]] = []
    with contextlib.ExitStack() as stack:
        procs = [stack.enter_context(bench.Server(d, LOGS)) for d in defs]
        lg = bench.LoadGen(exe, defs[0], "fanout", "chat", ports=[d.port for d in defs],
                           core=bench.LOADGEN_CORE if len(defs) == 1 else None, conns=CONNS, senders=SENDERS)
        try:
            conn = lg.read(60)
            if conn["established"] < CONNS:
                raise RuntimeError(f"only {conn['established']}/{CONNS} clients connected")
            time.sleep(1.5)  # cluster counts settle (SPEC: within a second)
            lg.run(200, 1.0)  # warm-up, not judged

            def trial(rate: float) -> bool:
                pids = [p.pid for p in procs] + [redis_pid]
                before = {pid: cpu_ticks([pid]) for pid in pids}
                s = lg.run(rate, secs)
                s["cpu_s"] = {name: round(cpu_ticks([pid]) - before[pid], 2)
                              for name, pid in zip([d.name for d in defs] + ["redis"], pids)}
                s["ok"] = bench.step_ok(s, rate)
                steps.append(s)
                print(f"  {config}: offered {rate:>9.0f}/s  deliveries/s {s['deliveries_per_s']:>11,.0f}  "
                      f"lost {s['lost']:>7}  p99 {s['p99_ms']:>8.2f} ms  gen cpu {s['gen_cpu_frac']:.0%}  "
                      f"{'ok' if s['ok'] else 'FAIL'}", flush=True)
                return s["ok"]

            good = bench.find_max_rate(trial, 500.0, 10.0, tol)
            at70 = lg.run(0.7 * good, secs * 2) if good else None
            generator = shlex.join(lg.argv)
        finally:
            lg.close()
    return {"config": config, **bench.fanout_result(good, steps, at70), "generator": generator}


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
        f"with p99 < {bench.P99_LIMIT_MS:.0f} ms (doubling, then bisection); then a run at 70 % of it.", "",
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
    parser.add_argument("--out", default=str(RESULTS / "latest.md"), help="report (and .json beside it)")
    args = parser.parse_args()
    configs = [c for c in args.configs.split(",") if c]
    started = time.monotonic()
    exe = bench.build_loadgen()
    if any(c.startswith("socketio") for c in configs):
        need_node_modules()
    LOGS.mkdir(exist_ok=True)
    results = []
    with bench.Server(redis_def(), LOGS) as redis:
        url = f"redis://127.0.0.1:{redis.sdef.port}"
        for config in configs:
            print(f"{config}:", flush=True)
            results.append(measure(config, exe, url, redis.pid, args.quick))
    command = "python bench/cluster/run.py " + " ".join(sys.argv[1:])
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(results, indent=1))
    text = report(results, command.strip(), started)
    out.write_text(text)
    print(text)
    print(f"written: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
