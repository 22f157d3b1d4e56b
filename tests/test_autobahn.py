"""Autobahn|Testsuite's fuzzing client against a JavaScript and a Python echo route: no case FAILED.

`wstest` is Python 2.7 code (the `autobahntestsuite` package on PyPI). It is installed once into a
Python 2.7 virtualenv under ~/.cache/dieselengine-autobahn (or $AUTOBAHN_CACHE), with the
exact versions its sdist pins in requires.txt; without a Python 2.7 interpreter the test is skipped
and says why. Sections 12 and 13 (permessage-deflate) are left out until compression lands: they
would report UNIMPLEMENTED. Every other section runs, the 9.* performance cases included.
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
EXCLUDED = ["12.*", "13.*"]


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


@pytest.mark.timeout(900)  # a first run installs wstest (under a minute); the cases take about one
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
    spec = {
        "outdir": str(tmp_path / "reports"),
        "servers": [{"agent": f"diesel-{lang}", "url": server.url(f"/ws/echo_{lang}")} for lang in ("js", "py")],
        "cases": ["*"],
        "exclude-cases": EXCLUDED,
        "exclude-agent-cases": {},
    }
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    _run([wstest, "-m", "fuzzingclient", "-s", tmp_path / "spec.json"], cwd=tmp_path)
    results = json.loads((tmp_path / "reports" / "index.json").read_text())
    failed, non_strict = [], []
    for agent, cases in results.items():
        assert len(cases) > 250, f"{agent}: only {len(cases)} cases ran"
        for case, result in cases.items():
            verdicts = (result["behavior"], result["behaviorClose"])
            if "FAILED" in verdicts or "UNIMPLEMENTED" in verdicts:
                failed.append(f"{agent} {case} {verdicts}")
            elif "NON-STRICT" in verdicts:
                non_strict.append(f"{agent} {case}")
    print("NON-STRICT (see README, Conformance):", ", ".join(sorted(non_strict)) or "none")
    assert not failed, "Autobahn cases failed:\n" + "\n".join(failed)
    assert server.proc.poll() is None
