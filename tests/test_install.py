"""Installing as a user would, in fresh venvs with no C compiler on PATH: from the source tree (the
C wire cannot build, the install still succeeds and serves on the portable wire) and from a wheel
built where there is one (the C wire comes inside the wheel). Each then serves the examples and
runs tests against the installed package.

These build and install the package, so they run once per suite: in the pass on the C wire
(DIESEL_WIRE unset, `auto` or `c`); the source install's own tests run on the portable wire anyway.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest
from conftest import ROOT

pytestmark = pytest.mark.skipif(os.environ.get("DIESEL_WIRE", "auto") == "asyncio",
                                reason="installs run once per suite, in the C wire's pass")

#: What the installed package is tried on: the examples served and chatted with, and the protocol's
#: limits and close codes; a new user's first steps (`diesel init`, the project's own test, the
#: harness on the examples' chat), which need the package's data files (template/, client/).
INSTALLED_TESTS = ["tests/test_examples.py", "tests/test_protocol.py", "tests/test_init.py", "examples/test_chat.py"]


def _source_tree(folder: Path) -> Path:
    """A copy of what `git` tracks (no venv, no built extension, no build/ left behind)."""
    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    for name in files.decode().split("\0"):
        if name and (ROOT / name).is_file():
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, folder / name)
    return folder


def _venv_without_compiler(folder: Path) -> tuple[Path, dict[str, str]]:
    """A fresh venv, and an environment whose PATH holds only its bin/: no cc, gcc or clang."""
    venv.create(folder, with_pip=True)
    python = folder / "bin" / "python"
    env = {key: value for key, value in os.environ.items() if key not in ("CC", "PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = str(folder / "bin")
    assert shutil.which("gcc", path=env["PATH"]) is None and shutil.which("cc", path=env["PATH"]) is None
    return python, env


def _run(command: list[str | Path], env: dict[str, str], cwd: Path = ROOT, timeout: float = 300) -> str:
    result = subprocess.run([str(part) for part in command], env=env, cwd=cwd, capture_output=True, text=True,
                            timeout=timeout)
    assert result.returncode == 0, f"{command} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
    return result.stdout + result.stderr


def _installed_tests_pass(python: Path, env: dict[str, str]) -> None:
    """The installed package (not src/: tests import it from the venv) passes the chosen tests."""
    where = _run([python, "-c", "import dieselengine; print(dieselengine.__file__)"], env)
    assert str(ROOT / "src") not in where
    output = _run([python, "-m", "pytest", "-q", "-p", "no:cacheprovider", *INSTALLED_TESTS], env)
    assert " passed" in output and "failed" not in output, output


@pytest.mark.timeout(600)
def test_source_install_without_a_compiler_serves_on_the_portable_wire(tmp_path):
    python, env = _venv_without_compiler(tmp_path / "venv")
    tree = _source_tree(tmp_path / "src")
    output = _run([python, "-m", "pip", "install", "-v", f"{tree}[test]"], env)
    assert 'building extension "dieselengine.wire._wire" failed' in output  # the warning, install goes on
    assert 'building extension "dieselengine.js._direct" failed' in output
    assert _run([python, "-c", "from dieselengine import wire; print(wire.load().name)"], env).strip() == "asyncio"
    # JavaScript calls go through the binding's own objects
    assert _run([python, "-c", "from dieselengine.js import direct; print(direct._direct)"], env).strip() == "None"
    refused = subprocess.run([str(tmp_path / "venv" / "bin" / "diesel"), "serve", str(ROOT / "examples"),
                              "--wire", "c"], env=env, capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2
    assert refused.stderr.strip().splitlines() == [
        "diesel: error: --wire c: the C wire was not built at install (it needs a C compiler then)"]
    _installed_tests_pass(python, {**env, "DIESEL_WIRE": "auto"})


@pytest.mark.timeout(600)
def test_wheel_installs_without_a_compiler_with_the_c_wire_inside(tmp_path):
    tree = _source_tree(tmp_path / "src")
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", tmp_path / "dist", tree], dict(os.environ))
    [wheel] = (tmp_path / "dist").glob("dieselengine-*.whl")
    assert "-linux_" in wheel.name or "manylinux" in wheel.name  # a platform wheel: the C wire is in it
    python, env = _venv_without_compiler(tmp_path / "venv")
    _run([python, "-m", "pip", "install", f"dieselengine[test] @ {wheel.as_uri()}"], env)
    assert _run([python, "-c", "from dieselengine import wire; print(wire.load().name)"], env).strip() == "c"
    assert _run([python, "-c", "from dieselengine.js import direct; print(direct._direct is not None)"],
                env).strip() == "True"
    _installed_tests_pass(python, {**env, "DIESEL_WIRE": "c"})
