"""Options from flags, DIESEL_* environment variables and diesel.toml; the generated reference."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest
import websockets
from conftest import ROOT, write_scripts

from dieselengine import config

ECHO = "def on_message(session, message):\n    session.send(message)\n"


def diesel(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "dieselengine", *args], capture_output=True, text=True,
                          timeout=60, env=env, cwd=cwd)


def test_flags_win_over_environment_which_wins_over_file(tmp_path):
    file = tmp_path / "diesel.toml"
    file.write_text('port = 9001\nhost = "0.0.0.0"\nmax-message-size = "1M"\nscript-timeout = 2\n'
                    'reload = true\ntrusted-proxy = ["10.0.0.1", "10.0.0.2"]\nstatic = "public"\n')
    environ = {"DIESEL_PORT": "9002", "DIESEL_MAX_MESSAGE_SIZE": "512K", "HOME": "/root"}
    settings = config.load(tmp_path, {"port": 9003}, environ, file)
    assert settings.port == 9003                     # flag over environment and file
    assert settings.max_message_size == 512 << 10    # environment over file
    assert settings.host == "0.0.0.0" and settings.script_timeout == 2.0 and settings.reload is True
    assert settings.trusted_proxies == frozenset({"10.0.0.1", "10.0.0.2"})
    assert settings.static_dir == tmp_path / "public"   # relative to the file's folder
    assert config.load(tmp_path, {}, {}, None).port == 8080
    file.write_text("max-message-size = 1048576\n")
    assert config.load(tmp_path, {}, {"DIESEL_TRUSTED_PROXY": "1.1.1.1,2.2.2.2"}, file).trusted_proxies == \
        frozenset({"1.1.1.1", "2.2.2.2"})
    assert config.load(tmp_path, {}, {}, file).max_message_size == 1 << 20


@pytest.mark.parametrize("text, message", [
    ("prot = 8080\n", "unknown option 'prot' (did you mean 'port'?)"),
    ("port = \"eighty\"\n", "port: invalid value 'eighty'"),
    ("reload = 3\n", "reload: expected true or false"),
    ("log-level = \"loud\"\n", "'loud' is not one of debug, info, warning, error"),
    ("port = [1]\n", "port: expected PORT as on the command line"),
    ("port = \n", "diesel.toml: "),
])
def test_file_errors_name_the_key(tmp_path, text, message):
    (tmp_path / "diesel.toml").write_text(text)
    with pytest.raises(config.ConfigError, match=None) as caught:
        config.load(tmp_path, {}, {}, tmp_path / "diesel.toml")
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_environment_errors_name_the_variable(tmp_path):
    warnings: list[str] = []
    settings = config.load(tmp_path, {}, {"DIESEL_PROT": "1"}, None, warn=warnings.append)
    assert warnings == ["unknown environment variable 'DIESEL_PROT' (did you mean 'DIESEL_PORT'?), ignored"]
    assert settings.port == 8080
    with pytest.raises(config.ConfigError, match="DIESEL_SCRIPT_MEMORY: invalid value 'lots'"):
        config.load(tmp_path, {}, {"DIESEL_SCRIPT_MEMORY": "lots"}, None)


def test_command_line_reports_config_errors_in_one_line(tmp_path):
    app = write_scripts(tmp_path / "app", {"echo.py": ECHO, "diesel.toml": "max-mesage-size = 1\n"})
    result = diesel("check", str(app))
    assert result.returncode == 2
    assert result.stderr.strip() == (f"diesel: error: {app / 'diesel.toml'}: unknown option 'max-mesage-size' "
                                     "(did you mean 'max-message-size'?)")
    result = diesel("serve", str(app), "--config", str(tmp_path / "none.toml"))
    assert result.returncode == 2 and "none.toml: cannot read" in result.stderr
    result = diesel("serve", str(app), "--port", "x")
    assert result.returncode == 2 and "argument --port: invalid value 'x'" in result.stderr


def test_served_folder_file_and_environment_reach_the_server(serve, tmp_path, monkeypatch):
    # the file says 1K, the environment 4K: a 3K message passes, a 5K one is refused with 1009
    app = write_scripts(tmp_path / "app", {"echo.py": ECHO, "diesel.toml": 'max-message-size = "1K"\n'})
    monkeypatch.setenv("DIESEL_MAX_MESSAGE_SIZE", "4K")
    server = serve(app)

    async def main():
        async with websockets.connect(server.url("/ws/echo"), max_size=None) as ws:
            await ws.send("x" * 3000)
            assert await ws.recv() == "x" * 3000
            await ws.send("x" * 5000)
            with pytest.raises(websockets.ConnectionClosed):
                await ws.recv()
            assert ws.close_code == 1009

    asyncio.run(asyncio.wait_for(main(), 20))


def test_option_reference_is_current():
    committed = (ROOT / "docs" / "options.md").read_text()
    assert committed == config.reference(), \
        "docs/options.md is stale: run `python -m dieselengine.config > docs/options.md`"
    for option in config.OPTIONS:
        assert f"`--{option.name}" in committed and option.env in committed
