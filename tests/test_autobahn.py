"""Autobahn|Testsuite's fuzzing client against a JavaScript and a Python echo route: no case FAILED.

`wstest` is Python 2.7 code (the `autobahntestsuite` package on PyPI). It is installed once into a
Python 2.7 virtualenv under ~/.cache/dieselengine-autobahn (or $AUTOBAHN_CACHE), with the
exact versions its sdist pins in requires.txt; without a Python 2.7 interpreter the test is skipped
and says why. Every case of every section runs on both routes, one wstest per route, side by side.

Sections 12 and 13 (permessage-deflate, 216 cases) send up to 1000 messages per case, one at a
time, each through zlib on both sides: as published they take about 20 minutes per route and wire
on 2 cores, over half of it in wstest. Here a case of theirs sends at most CASE_BYTES (1 MiB; under
a minute a route for the 216): 1000 messages up to 1 KiB, 8 of 128 KiB, each case still walking
through the whole of its test file (the largest, a PDF, is 1,042,328 bytes) with Autobahn's sizes,
fragmentations and offers unchanged. AUTOBAHN_FULL=1 runs them as published. Every case of
theirs is OK / OK on both wires and routes (bench/RESULTS.md); a NON-STRICT or INFORMATIONAL
verdict passes here (README, Conformance, says which cases have one and why).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from conftest import write_scripts

AUTOBAHN = "autobahntestsuite==25.10.1"
PYTHON27 = Path.home() / ".pyenv" / "versions" / "2.7.18" / "bin" / "python"
#: The last virtualenv release that can still make a Python 2.7 environment.
VIRTUALENV = "virtualenv<20.22"
FULL = os.environ.get("AUTOBAHN_FULL") == "1"
#: The bytes a case of sections 12 and 13 sends (its message count capped at CASE_BYTES / size).
CASE_BYTES = 1 << 20
#: wstest, with each case of sections 12 and 13 capped at the bytes given first (run by wstest's
#: Python 2.7; the cases are classes, so changing COUNT changes what the fuzzing client runs).
CAPPED_WSTEST = """
import sys
from autobahntestsuite.case import case12_x_x
from autobahntestsuite.wstest import run
budget = int(sys.argv.pop(1))
for case in case12_x_x.Case12_X_X + case12_x_x.Case13_X_X:
    count = min(case.COUNT, budget // case.LEN)
    case.DESCRIPTION = case.DESCRIPTION.replace("Send %d " % case.COUNT, "Send %d " % count)
    case.COUNT = count
sys.argv[0] = "wstest"
sys.exit(run())
"""


def _python27() -> Path | None:
    if PYTHON27.is_file():
        return PYTHON27
    found = shutil.which("python2.7")
    return Path(found) if found else None


def _run(command: list[str | Path], **kwargs: object) -> None:
    result = subprocess.run([str(part) for part in command], capture_output=True, text=True, timeout=600,
                            **kwargs)  # type: ignore[call-overload]
    if result.returncode != 0:
        raise RuntimeError(f"{command[:4]} exited {result.returncode}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")


def _wstest(python27: Path) -> Path:
    """wstest in a Python 2.7 virtualenv, made once with the sdist's pinned requirements."""
    cache = Path(os.environ.get("AUTOBAHN_CACHE", Path.home() / ".cache" / "dieselengine-autobahn"))
    venv = cache / "venv27"
    wstest = venv / "bin" / "wstest"
    ready = cache / f"{AUTOBAHN}.ready"
    if ready.is_file() and wstest.is_file():
        return wstest
    shutil.rmtree(venv, ignore_errors=True)
    cache.mkdir(parents=True, exist_ok=True)
    tool = cache / "virtualenv"
    _run([sys.executable, "-m", "pip", "install", "-q", "--target", tool, VIRTUALENV])
    _run([sys.executable, "-m", "virtualenv", "-q", "-p", python27, venv], env={**os.environ, "PYTHONPATH": str(tool)})
    sdists = cache / "sdist"
    _run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", ":all:", "-d", sdists, AUTOBAHN])
    (sdist,) = sdists.glob("autobahntestsuite-*.tar.gz")
    with tarfile.open(sdist) as archive:
        member = next(m for m in archive.getmembers() if m.name.endswith(".egg-info/requires.txt"))
        requires = archive.extractfile(member).read().decode()  # type: ignore[union-attr]
    pins = cache / "requires.txt"
    pins.write_text(requires)
    _run([venv / "bin" / "pip", "install", "-q", "-r", pins, AUTOBAHN])
    ready.write_text("ok\n")
    return wstest


def _fuzz(wstest: Path, agent: str, url: str, folder: Path) -> subprocess.Popen[bytes]:
    """One wstest fuzzing client on one route; its log in folder/wstest.log, its report in
    folder/reports."""
    folder.mkdir()
    spec = {"outdir": str(folder / "reports"), "servers": [{"agent": agent, "url": url}], "cases": ["*"],
            "exclude-cases": [], "exclude-agent-cases": {}}
    (folder / "spec.json").write_text(json.dumps(spec))
    command = [wstest] if FULL else [wstest.parent / "python", "-c", CAPPED_WSTEST, CASE_BYTES]
    with open(folder / "wstest.log", "wb") as log:
        return subprocess.Popen([*map(str, command), "-m", "fuzzingclient", "-s", "spec.json"], cwd=folder,
                                stdout=log, stderr=subprocess.STDOUT)


# A first run installs wstest (under a minute); the cases take 1-3 minutes (20-40 with AUTOBAHN_FULL).
@pytest.mark.timeout(7800 if FULL else 900)
def test_autobahn_fuzzingclient_has_no_failure(serve, tmp_path):
    python27 = _python27()
    if python27 is None:
        pytest.skip(f"Autobahn|Testsuite needs Python 2.7 ({PYTHON27} or python2.7 on PATH): none here")
    wstest = _wstest(python27)
    app = write_scripts(tmp_path / "app", {
        "echo_js.js": "export function onMessage(session, message) { session.send(message); }\n",
        "echo_py.py": "def on_message(session, message):\n    session.send(message)\n",
    })
    # Case 9 sends messages up to 16 MiB and reads each echo only once it is whole.
    server = serve(app, "--max-message-size", "16M", "--send-queue-size", "64M", "--max-buffered", "256M")
    runs = {lang: _fuzz(wstest, f"diesel-{lang}", server.url(f"/ws/echo_{lang}"), tmp_path / lang)
            for lang in ("js", "py")}
    try:
        for lang, run in runs.items():
            status = run.wait(timeout=7200 if FULL else 800)
            log = (tmp_path / lang / "wstest.log").read_text(errors="replace")
            assert status == 0, f"wstest on the {lang} route exited {status}:\n{log[-3000:]}"
    finally:
        for run in runs.values():
            if run.poll() is None:
                run.kill()
                run.wait()
    failed, non_strict = [], []
    for lang in runs:
        agent = f"diesel-{lang}"
        cases = json.loads((tmp_path / lang / "reports" / "index.json").read_text())[agent]
        assert len(cases) == 517, f"{agent}: {len(cases)} cases ran, not all 517"
        for case, result in cases.items():
            verdicts = (result["behavior"], result["behaviorClose"])
            if "FAILED" in verdicts or "UNIMPLEMENTED" in verdicts:
                failed.append(f"{agent} {case} {verdicts}")
            elif "NON-STRICT" in verdicts:
                non_strict.append(f"{agent} {case}")
    print("NON-STRICT (see README, Conformance):", ", ".join(sorted(non_strict)) or "none")
    assert not failed, "Autobahn cases failed:\n" + "\n".join(failed)
    assert server.proc.poll() is None
