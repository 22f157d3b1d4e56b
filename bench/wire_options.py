"""wss and permessage-deflate side by side with Bun, in one run (issue 17 item 6).

    python bench/wire_options.py [--quick] [--servers bun,diesel-js,diesel-js-asyncio] [--out FILE]

Each dieselengine wire and Bun run the same scenarios with the same option on, on the harness of
run.py (server on core 0, generator on core 1, fresh server per scenario):

- wss fan-out: 200 clients in one room over TLS, 10 senders, seed-chat-sized JSON (`--json 1
  --size 160`); the highest rate delivered in full with p99 < 50 ms, then a run at 70 % of it;
- wss echo: 100 connections over TLS in a closed loop;
- compressed fan-out: the same room with every client offering permessage-deflate as Chrome
  does (Bun: `perMessageDeflate: true`; dieselengine: `--compression shared`), with the bytes
  received off the socket per delivery beside the plain run's;
- idle: 5,000 connections offering permessage-deflate, the default --compression: RSS per connection.

Certificates come from a throwaway CA (trustme, a test dependency). Writes a Markdown table to
stdout and to --out (default bench/results/wire_options.md), every raw generator line to the
.json beside it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run as h  # noqa: E402  (the harness: servers, generator, rate search)

SIZE = 160  # bytes of JSON per chat message, as the seed chat's


def certificates() -> tuple[str, str]:
    import trustme

    folder = h.CACHE / "tls"
    folder.mkdir(parents=True, exist_ok=True)
    cert, key = folder / "cert.pem", folder / "key.pem"
    if not cert.exists():
        issued = trustme.CA().issue_cert("127.0.0.1", "localhost")
        issued.cert_chain_pems[0].write_to_path(str(cert))
        issued.private_key_pem.write_to_path(str(key))
    return str(cert), str(key)


def server_defs(cert: str, key: str) -> dict[str, dict[str, h.ServerDef]]:
    """{server: {option: ServerDef}} for the options "wss", "deflate" and "plain"."""
    bun = str(h.SERVERS_DIR / "bun_pubsub.js")
    defs: dict[str, dict[str, h.ServerDef]] = {"bun": {
        "wss": h.ServerDef("bun-wss", lambda p: [h.bun_bin(), bun, str(p), "--tls", cert, key], needs=h.need_node_peers),
        "deflate": h.ServerDef("bun-deflate", lambda p: [h.bun_bin(), bun, str(p), "--deflate"], needs=h.need_node_peers),
        "plain": h.ServerDef("bun", lambda p: [h.bun_bin(), bun, str(p)], needs=h.need_node_peers),
    }}
    for name, wire in (("diesel-js", "c"), ("diesel-js-asyncio", "asyncio")):
        def argv(extra: list[str], wire: str = wire) -> Any:
            return lambda p: [h.diesel_bin(), "serve", str(h.SERVERS_DIR / "diesel_js"), "--wire", wire,
                              "--host", "127.0.0.1", "--port", str(p), *extra]

        defs[name] = {
            "wss": h.ServerDef(f"{name}-wss", argv(["--certfile", cert, "--keyfile", key, "--compression", "off"]),
                               needs=h.need_diesel),
            "deflate": h.ServerDef(f"{name}-deflate", argv(["--compression", "shared"]), needs=h.need_diesel),
            "plain": h.ServerDef(name, argv(["--compression", "off"]), needs=h.need_diesel),
        }
    return defs


OPTIONS = {"wss": {"tls": 1}, "deflate": {"deflate": 1}, "plain": {}}


def fanout(ctx: h.Ctx, sdef: h.ServerDef, option: str) -> dict[str, Any]:
    secs, tol = (1.0, 1.25) if ctx.quick else (2.5, 1.10)
    extra = dict(OPTIONS[option], json=1, size=SIZE)
    steps: list[dict[str, Any]] = []

    def clients() -> h.LoadGen:
        lg = h.LoadGen(ctx.exe, sdef, "fanout", "chat", conns=200, senders=10, **extra)
        connected = lg.read(60)
        if connected["established"] < 200:
            lg.kill()
            raise RuntimeError(f"only {connected['established']}/200 clients connected")
        lg.run(200, 1.0)
        return lg

    with h.Server(sdef, ctx.log_dir):
        lg = clients()
        try:
            def trial(rate: float) -> bool:
                step = lg.run(rate, secs)
                step["ok"] = h.step_ok(step, rate)
                steps.append(step)
                return step["ok"]

            good = h.find_max_rate(trial, 1000.0, 25.0, tol)
        finally:
            lg.close()
    at70 = None
    if good:
        with h.Server(sdef, ctx.log_dir):
            lg = clients()
            try:
                at70 = lg.run(0.7 * good, secs * 2)
            finally:
                lg.close()
    result = h.fanout_result(good, steps, at70)
    for record in (result["max_step"], at70):
        if record and record["received"]:
            record["wire_bytes_per_delivery"] = record["rx_bytes"] / record["received"]
    ctx.raw.append({"server": sdef.name, "scenario": "fanout", "result": result})
    return result


def echo(ctx: h.Ctx, sdef: h.ServerDef, option: str) -> dict[str, Any]:
    with h.Server(sdef, ctx.log_dir) as srv:
        lg = h.LoadGen(ctx.exe, sdef, "echo", "echo", conns=100, duration=3 if ctx.quick else 6, warmup=1,
                       json=1, size=SIZE, **OPTIONS[option])
        try:
            lg.read(60)
            meter = h.CpuMeter(srv)
            record = lg.read(60)
            record.update(meter.per_op(record["messages"]))
        finally:
            lg.close()
    ctx.raw.append({"server": sdef.name, "scenario": "echo", "result": record})
    return record


def idle(ctx: h.Ctx, sdef: h.ServerDef) -> dict[str, Any]:
    record = h.measured_load(ctx, sdef, "idle", "echo", "established", 300, conns=5000, conc=256, timeout=30,
                             deflate=1)
    record["kib_per_conn"] = (record["rss_after_kib"] - record["rss_before_kib"]) / max(1, record["established"])
    ctx.raw.append({"server": sdef.name, "scenario": "idle", "result": record})
    return record


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--servers", default="bun,diesel-js,diesel-js-asyncio")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", type=Path, default=h.BENCH / "results" / "wire_options.md")
    args = parser.parse_args()
    h.raise_nofile()
    log_dir = h.BENCH / "results" / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    ctx = h.Ctx(exe=h.build_loadgen(), quick=args.quick, repeat=1, log_dir=log_dir)
    defs = server_defs(*certificates())
    names = args.servers.split(",")
    results: dict[str, dict[str, Any]] = {}
    for name in names:
        row: dict[str, Any] = results.setdefault(name, {})
        for label, run_one in (("wss fan-out", lambda d: fanout(ctx, d["wss"], "wss")),
                               ("wss echo", lambda d: echo(ctx, d["wss"], "wss")),
                               ("deflate fan-out", lambda d: fanout(ctx, d["deflate"], "deflate")),
                               ("plain fan-out", lambda d: fanout(ctx, d["plain"], "plain")),
                               ("idle, offering deflate", lambda d: idle(ctx, d["deflate"]))):
            sdef = defs[name]
            for option, port in h.free_ports(list(sdef)).items():
                sdef[option].port = port
            try:
                for needs in {id(d.needs): d.needs for d in sdef.values()}.values():
                    needs()
                row[label] = run_one(sdef)
            except (h.Skip, RuntimeError) as exc:
                row[label] = {"skipped": str(exc)}
            print(f"{name} {label}: {summary(label, row[label])}", flush=True)
    text = render(results, names, args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    args.out.with_suffix(".json").write_text(json.dumps(ctx.raw, indent=1))
    print(text)
    return 0


def summary(label: str, record: dict[str, Any]) -> str:
    if "skipped" in record:
        return f"skipped: {record['skipped']}"
    if "fan-out" in label:
        best = record["max_step"] or {}
        return (f"{best.get('deliveries_per_s', 0):,.0f} deliveries/s at {record['max_rate']:,.0f} msgs/s; "
                f"{best.get('wire_bytes_per_delivery', 0):.1f} B/delivery; gen cpu {best.get('gen_cpu_frac', 0):.2f}")
    if "echo" in label:
        return f"{record['messages_per_s']:,.0f} msgs/s p99 {record['p99_ms']:.2f} ms; gen cpu {record['gen_cpu_frac']:.2f}"
    return f"{record['established']} conns, {record['kib_per_conn']:.2f} KiB each"


def render(results: dict[str, dict[str, Any]], names: list[str], args: argparse.Namespace) -> str:
    bun = results.get("bun", {})
    lines = [f"# wss and permessage-deflate beside Bun ({dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC)", "",
             f"`python bench/wire_options.py{' --quick' if args.quick else ''} --servers {args.servers}`; "
             "one run, the machine shared with other work (ratios from this run only).", "",
             "| server | scenario | result | vs Bun | bytes on the wire per delivery | generator CPU |",
             "|---|---|---|---|---|---|"]
    for name in names:
        for label, record in results[name].items():
            if "skipped" in record:
                lines.append(f"| {name} | {label} | skipped: {record['skipped']} | | | |")
                continue
            ref = bun.get(label, {})
            if "fan-out" in label:
                best = record["max_step"] or {}
                value = best.get("deliveries_per_s", 0)
                ref_value = (ref.get("max_step") or {}).get("deliveries_per_s") if "skipped" not in ref else None
                cell = f"{value / 1e6:.2f} M deliveries/s ({record['max_rate']:,.0f} msgs/s sent)"
                wire_bytes = f"{best.get('wire_bytes_per_delivery', 0):.1f}"
                gen = f"{best.get('gen_cpu_frac', 0):.2f}"
            elif "echo" in label:
                value, ref_value = record["messages_per_s"], ref.get("messages_per_s")
                cell = f"{value / 1e3:.1f} k msgs/s, p99 {record['p99_ms']:.2f} ms"
                wire_bytes, gen = "", f"{record['gen_cpu_frac']:.2f}"
            else:
                value, ref_value = record["kib_per_conn"], ref.get("kib_per_conn")
                cell = f"{value:.2f} KiB per connection ({record['established']} held)"
                wire_bytes, gen = "", ""
            versus = f"{value / ref_value:.2f}x" if ref_value and name != "bun" else ""
            lines.append(f"| {name} | {label} | {cell} | {versus} | {wire_bytes} | {gen} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
