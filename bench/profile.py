"""Profile a dieselengine server under one load with py-spy: where its CPU goes, native frames
included (system calls show as `write`, `read`, `epoll_pwait`...).

    python bench/profile.py echo|fanout|handshake|churn [--server diesel-js|diesel-py] [--seconds 5]

The server runs on core 0, the generator on core 1, as in bench/run.py; prints the frames with the
most samples of their own, then the dieselengine frames by inclusive share.

Use it for which Python function, not for how much is kernel: py-spy charges samples to the
innermost native frame, which overstated `read`/`write` (83-93 % against the 55-60 % kernel time
that /proc and `perf record -e cpu-clock` show). bench/run.py reports the user / kernel split.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run as bench  # noqa: E402

#: scenario -> (generator mode, route, options; fan-out runs at a fixed, sustainable rate)
LOADS = {
    "echo": ("echo", "echo", {"conns": 100}),
    "fanout": ("fanout", "chat", {"conns": 200, "senders": 10}),
    "handshake": ("idle", "echo", {"conns": 10_000, "srcs": 4}),
    "churn": ("churn", "chat", {"cycles": 30_000, "conc": 100}),
}


def summarize(raw: Path, top: int = 20) -> str:
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        samples = int(count)
        total += samples
        frames = stack.split(";")
        own[frames[-1]] += samples
        for frame in set(frames):
            inclusive[frame] += samples
    lines = [f"{total} samples", "", "self  frame"]
    lines += [f"{n / total:5.1%} {frame[:110]}" for frame, n in own.most_common(top)]
    lines += ["", "incl  dieselengine frame"]
    lines += [f"{n / total:5.1%} {frame[:110]}" for frame, n in inclusive.most_common()
              if "dieselengine/" in frame and "__main__" not in frame and "cli.py" not in frame][:top]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("scenario", choices=sorted(LOADS))
    parser.add_argument("--server", default="diesel-js", choices=["diesel-js", "diesel-py"])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--keep", action="store_true", help="keep the raw profile in /tmp/last_profile.raw")
    parser.add_argument("--rate", type=float, default=20_000, help="fan-out messages/s offered")
    args = parser.parse_args()
    if subprocess.run(["which", "py-spy"], capture_output=True).returncode:
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "py-spy"], check=True)
    exe = bench.build_loadgen()
    sdef = bench.SERVER_DEFS[args.server]
    sdef.needs()
    sdef.port = bench.free_ports([args.server])[args.server]
    mode, route, options = LOADS[args.scenario]
    with tempfile.TemporaryDirectory() as tmp, bench.Server(sdef, Path(tmp)) as server:
        raw = Path(tmp) / "profile.raw"
        spy = subprocess.Popen(["py-spy", "record", "--native", "--format", "raw", "--rate", "500",
                                "--duration", str(int(args.seconds) + 1), "--pid", str(server.pid), "--output", str(raw)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.5)
        if mode == "fanout":
            gen = bench.LoadGen(exe, sdef, mode, route, **options)
            gen.read()
            print(gen.run(args.rate, args.seconds))
        else:
            extra = {"duration": args.seconds, "warmup": 0} if mode == "echo" else {}
            gen = bench.LoadGen(exe, sdef, mode, route, **options, **extra)
            result = gen.read(args.seconds + 120)
            if mode == "echo":  # the first line only says the connections are up
                result = gen.read(args.seconds + 60)
            print(result)
        spy.wait()
        gen.kill()
        print(summarize(raw))
        if "--keep" in sys.argv:
            import shutil; shutil.copy(raw, "/tmp/last_profile.raw")
    return 0


if __name__ == "__main__":
    sys.exit(main())
