#!/usr/bin/env python3
"""Fan-out at fixed offered rates, the same rates for every server, side by side.

`run.py`'s fan-out searches for the highest rate whose p99 stays under 50 ms, which a busy shared
machine turns into noise: one slow step on the server's core ends the search low. Here every
server gets the same rates (200 clients in one room, 10 senders, 64-byte messages, server on
core 0, generator on core 1, a fresh server each) and the table says what each delivered, how
many deliveries were lost or late, the latency, and the server's own CPU time per delivery (user
and kernel, from /proc: what a change costs at a rate every build delivers in full), so servers
can be compared where the search gave up.

    python bench/fixed_fanout.py [--servers bun,diesel-js,diesel-py,diesel-js-asyncio,diesel-py-asyncio]
                                 [--rates 4000,8000] [--seconds 3]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run as bench  # noqa: E402  (bench/run.py: servers, the load generator)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--servers", default="bun,diesel-js,diesel-py,diesel-js-asyncio,diesel-py-asyncio")
    parser.add_argument("--rates", default="4000,8000")
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    rates = [float(rate) for rate in args.rates.split(",")]
    exe = bench.build_loadgen()
    print("| server | offered msgs/s | deliveries/s | lost | p50 | p99 | server CPU | user us/delivery | "
          "kernel us/delivery |")
    print("|---|---|---|---|---|---|---|---|---|")
    names = args.servers.split(",")
    ports = bench.free_ports(names)
    with tempfile.TemporaryDirectory() as logs:
        for name in names:
            sdef = bench.SERVER_DEFS[name]
            sdef.port = ports[name]
            try:
                sdef.needs()
                with bench.Server(sdef, Path(logs)) as server:
                    lg = bench._fanout_clients(bench.Ctx(exe=exe, quick=True, repeat=1, log_dir=Path(logs)), sdef)
                    for rate in rates:
                        meter = bench.CpuMeter(server)
                        step = lg.run(rate, args.seconds)
                        cpu = meter.per_op(step["received"])
                        print(f"| {name} | {rate:,.0f} | {bench.fmt(step['deliveries_per_s'])} | {step['lost']:,} | "
                              f"{step['p50_ms']:.1f} ms | {step['p99_ms']:.1f} ms | "
                              f"{cpu['server_cpu_frac'] * 100:.0f}% | {cpu['server_user_us'] or 0:.3f} | "
                              f"{cpu['server_sys_us'] or 0:.3f} |",
                              flush=True)
                    lg.cmd("quit")
            except (bench.Skip, RuntimeError) as exc:
                print(f"| {name} | skipped: {exc} | | | | | | | |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
