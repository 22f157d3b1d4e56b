"""Where option values come from: flags over `DIESEL_*` environment variables over diesel.toml.

Everything here is derived from the `option(...)` fields of `Settings`: the argparse options, the
names read from the environment and the file, and the reference in docs/options.md
(`python -m dieselengine.config > docs/options.md`). Only the cli layer calls this module.
"""

from __future__ import annotations

import argparse
import difflib
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from .options import Declared, declared
from .settings import Settings

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

CONFIG_FILE = "diesel.toml"
CONFIG_ENV = "DIESEL_CONFIG"
OPTIONS: list[Declared] = declared(Settings)
_BY_NAME = {option.name: option for option in OPTIONS}
_BY_ENV = {option.env: option for option in OPTIONS}


class ConfigError(ValueError):
    """An option value that cannot be used; the message is one line naming where it came from."""


def _unknown(kind: str, name: str, known: list[str]) -> ConfigError:
    close = difflib.get_close_matches(name, known, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return ConfigError(f"unknown {kind} {name!r}{hint}")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Every option as a long flag, in argument groups. Absent flags stay absent from the namespace
    (so the environment and the file can fill them); --help shows the built-in defaults."""
    groups: dict[str, Any] = {}
    for option in OPTIONS:
        spec = option.spec
        group = groups.get(spec.group) or groups.setdefault(spec.group, parser.add_argument_group(spec.group))
        text = spec.help
        if option.default not in (None, False, frozenset()):
            text += f" (default: {option.show(option.default)})"
        kwargs: dict[str, Any] = {"dest": option.field, "default": argparse.SUPPRESS, "help": text}
        if option.switch:
            kwargs["action"] = argparse.BooleanOptionalAction if option.default else "store_true"
        else:
            kwargs["type"] = _flag_parser(option)
            kwargs["metavar"] = spec.metavar
            if spec.repeat:
                kwargs["action"] = "append"
        group.add_argument(f"--{option.name}", **kwargs)


def _flag_parser(option: Declared):
    def parse(text: str) -> Any:
        try:
            return option.parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
    parse.__name__ = option.name
    return parse


def from_environment(environ: Mapping[str, str], warn: Callable[[str], None] = print) -> dict[str, Any]:
    """The options set by `DIESEL_*` variables. An unknown `DIESEL_*` name is only warned about:
    the environment is shared with other programs (a typo is still named, with the likely option)."""
    values: dict[str, Any] = {}
    for key, text in environ.items():
        if not key.startswith("DIESEL_") or key == CONFIG_ENV:
            continue
        option = _BY_ENV.get(key)
        if option is None:
            warn(f"{_unknown('environment variable', key, [*_BY_ENV, CONFIG_ENV])}, ignored")
            continue
        try:
            if option.spec.repeat:
                values[option.field] = [option.parse(part) for part in text.split(",") if part.strip()]
            else:
                values[option.field] = option.parse(text)
        except ValueError as exc:
            raise ConfigError(f"{key}: {exc}") from None
    return values


def from_file(file: Path) -> dict[str, Any]:
    """The options set in a TOML file: keys are long option names, values as on the command line
    (`port = 8080`, `max-message-size = "1M"`); relative paths are relative to the file's folder."""
    try:
        with open(file, "rb") as stream:
            table = tomllib.load(stream)
    except OSError as exc:
        raise ConfigError(f"{file}: cannot read: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{file}: {exc}") from None
    values: dict[str, Any] = {}
    for key, raw in table.items():
        option = _BY_NAME.get(key)
        if option is None:
            raise ConfigError(f"{file}: {_unknown('option', key, list(_BY_NAME))}")
        try:
            if option.spec.repeat:
                items = raw if isinstance(raw, list) else [raw]
                value: Any = [_file_value(option, item) for item in items]
            else:
                value = _file_value(option, raw)
        except ValueError as exc:
            raise ConfigError(f"{file}: {key}: {exc}") from None
        if option.is_path and isinstance(value, Path):
            value = file.parent / value
        values[option.field] = value
    return values


def _file_value(option: Declared, raw: Any) -> Any:
    if option.switch and isinstance(raw, bool):
        return raw
    if isinstance(raw, str) or (isinstance(raw, (int, float)) and not isinstance(raw, bool)):
        return option.parse(str(raw))
    raise ValueError(f"expected {option.spec.metavar or 'a value'} as on the command line, got {raw!r}")


def config_file(path: Path, flag: Path | None, environ: Mapping[str, str]) -> Path | None:
    """--config, else $DIESEL_CONFIG, else diesel.toml in the served folder if there is one."""
    if flag is not None:
        return flag
    if environ.get(CONFIG_ENV):
        return Path(environ[CONFIG_ENV])
    folder = path if path.is_dir() else path.parent
    candidate = folder / CONFIG_FILE
    return candidate if candidate.is_file() else None


def load(path: Path, flags: Mapping[str, Any], environ: Mapping[str, str],
         file: Path | None = None, warn: Callable[[str], None] = print) -> Settings:
    """The settings for serving `path`: flags over environment over file over defaults."""
    values: dict[str, Any] = {}
    if file is not None:
        values.update(from_file(file))
    values.update(from_environment(environ, warn))
    values.update(flags)
    for option in OPTIONS:
        if option.spec.repeat and option.field in values:
            values[option.field] = frozenset(values[option.field])
    return Settings(path=path, **values)


def reference() -> str:
    """docs/options.md: every option with its flag, variable, file key, default and meaning."""
    lines = [
        "# Option reference",
        "",
        "<!-- Generated from src/dieselengine/settings.py by `python -m dieselengine.config > docs/options.md`;"
        " do not edit. -->",
        "",
        "Every option of `diesel serve` can be given three ways; a flag wins over the environment,",
        "which wins over the file:",
        "",
        "- on the command line: `--max-message-size 1M`;",
        "- in the environment: `DIESEL_MAX_MESSAGE_SIZE=1M` (repeatable options: commas between values);",
        f"- in `{CONFIG_FILE}` in the served folder (or the file named by `--config` or `{CONFIG_ENV}`):",
        "  `max-message-size = \"1M\"` or `max-message-size = 1048576` (repeatable options: a list).",
        "  Relative paths in the file are relative to the file's folder.",
        "",
        "An unknown key in the file is an error that names it; an unknown `DIESEL_*` variable is",
        "named in a warning (the environment is shared with other programs).",
        "Sizes take K, M or G suffixes (powers of 1024). Switches take `true`/`false` (`1`/`0`,",
        "`yes`/`no` in the environment).",
    ]
    group = None
    for option in OPTIONS:
        spec = option.spec
        if spec.group != group:
            group = spec.group
            lines += ["", f"## {group}", ""]
            lines += ["| flag | environment | file | default | meaning |", "|---|---|---|---|---|"]
        if option.switch:
            # a switch on by default is turned off with --no-NAME (argparse's BooleanOptionalAction)
            flag = f"`--{option.name}`" + (f", `--no-{option.name}`" if option.default else "")
        else:
            flag = f"`--{option.name} {spec.metavar}`"
        default = "" if option.default in (None, frozenset()) else f"`{option.show(option.default)}`"
        meaning = spec.help + (f"; one of {', '.join(spec.choices)}" if spec.choices else "")
        lines.append(f"| {flag} | `{option.env}` | `{option.name}` | {default} | {meaning} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write(reference())
