"""Cost of one JavaScript script's context: load time and engine memory of `JsScript.load` for a
one-line script, i.e. what every script (not every session) pays for the prelude, the web APIs and
the module loader.

    python bench/micro/js_context.py [--scripts 50] [--repeat 5]

Prints the best of `--repeat` runs of the mean load time, and the engine's memory of one loaded
context (`malloc_size` from quickjs-ng's JS_ComputeMemoryUsage).
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from dieselengine import wire
from dieselengine.hub import Hub
from dieselengine.js import JsScript
from dieselengine.settings import Settings
from dieselengine.stats import Stats

SOURCE = "export function onMessage(session, message) { session.send(message); }\n"


async def measure(folder: Path, scripts: int, repeat: int) -> tuple[float, int]:
    hub = Hub(Settings(path=folder), asyncio.get_running_loop(), Stats(), wire.load())
    best = float("inf")
    memory = 0
    for _ in range(repeat):
        loaded = []
        started = time.perf_counter()
        for _ in range(scripts):
            loaded.append(JsScript.load(folder / "echo.js", "echo.js", hub))
        best = min(best, (time.perf_counter() - started) / scripts * 1e3)
        memory = loaded[0]._ctx.memory()["malloc_size"]
        for script in loaded:
            script.unload()
    return best, memory


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scripts", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "echo.js").write_text(SOURCE)
        ms, memory = asyncio.run(measure(folder, args.scripts, args.repeat))
    print(f"load {ms:6.2f} ms/script   engine memory {memory / 1024:7.1f} KiB/context")


if __name__ == "__main__":
    main()
