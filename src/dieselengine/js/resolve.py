"""Where an import leads: relative helpers in the served folder and npm packages in its
`node_modules`, resolved as a bundler targeting a web worker would (esbuild's and webpack's rules).

A bare specifier is looked up in the nearest `node_modules` between the importing file and the
served folder, never above it. A package's `exports` is read with the conditions `worker`,
`browser`, `import` (`require` for a CommonJS `require()`), `module` and `default`, in the order
the package lists them, with subpath exports and `*` patterns; without `exports`, the `browser`
field (string form), `module`, then `main`; then Node's probing (`.js`, `.mjs`, `.cjs`, `.json`,
`index.*`). Node's built-in modules are refused: the sandbox has none of what they wrap.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

Kind = Literal["esm", "cjs", "json"]

#: `require('module').builtinModules` of Node 20, without the private `_` ones.
_BUILTINS = frozenset("""
assert assert/strict async_hooks buffer child_process cluster console constants crypto dgram
diagnostics_channel dns dns/promises domain events fs fs/promises http http2 https inspector
inspector/promises module net os path path/posix path/win32 perf_hooks process punycode querystring
readline readline/promises repl stream stream/consumers stream/promises stream/web string_decoder sys
timers timers/promises tls trace_events tty url util util/types v8 vm wasi worker_threads zlib
test sqlite sea
""".split())
_WHY = {
    "fs": "no file system in the sandbox", "fs/promises": "no file system in the sandbox",
    "path": "no file system in the sandbox", "path/posix": "no file system in the sandbox",
    "path/win32": "no file system in the sandbox", "module": "no file system in the sandbox",
    "net": "no network in the sandbox but fetch()", "http": "no network in the sandbox but fetch()",
    "https": "no network in the sandbox but fetch()", "http2": "no network in the sandbox but fetch()",
    "dgram": "no network in the sandbox but fetch()", "dns": "no network in the sandbox but fetch()",
    "tls": "no network in the sandbox but fetch()", "crypto": "use the global crypto (Web Crypto)",
    "child_process": "no processes in the sandbox", "cluster": "no processes in the sandbox",
    "worker_threads": "no processes in the sandbox", "process": "no processes in the sandbox",
    "os": "no operating system in the sandbox",
}
#: Conditions of `exports`, as a bundler for a web worker has them; `require` replaces `import`
#: for a CommonJS `require()`.
IMPORT_CONDITIONS = frozenset({"worker", "browser", "import", "module", "default"})
REQUIRE_CONDITIONS = frozenset({"worker", "browser", "require", "module", "default"})
_PROBE = ("", ".js", ".mjs", ".cjs", ".json")
_INDEX = ("index.js", "index.mjs", "index.cjs", "index.json")
_PACKAGE = re.compile(r"^((?:@[^/@]+/)?[^/@.][^/]*)(/.*)?$")


class ResolveError(Exception):
    """An import that cannot be served; the message follows `import "spec"` in the error."""


@dataclass(frozen=True)
class Package:
    folder: Path
    meta: dict[str, Any]


def builtin(spec: str) -> str | None:
    """Why a Node built-in (`fs`, `node:fs`, `fs/promises`) is refused, None if spec is not one."""
    name = spec[5:] if spec.startswith("node:") else spec
    if spec.startswith("node:") or name in _BUILTINS:
        return _WHY.get(name, _WHY.get(name.split("/")[0], "Node's built-in modules are not in the sandbox"))
    return None


class Resolver:
    """Resolves specifiers to files below `root`, the served folder."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()

    def inside(self, file: Path) -> bool:
        return file == self.root or self.root in file.parents

    def resolve(self, spec: str, importer: Path, *, require: bool = False) -> Path:
        why = builtin(spec)
        if why is not None:
            raise ResolveError(f"is not allowed ({why})")
        if spec.startswith(("./", "../")) or spec in (".", ".."):
            target = (importer.parent / spec).resolve()
            if not self.inside(target):
                raise ResolveError(f"is not allowed: it is outside the served folder {self.root}")
            found = _probe(target)
            if found is None:
                raise ResolveError(f"no such module ({target})")
            return found
        match = _PACKAGE.match(spec)
        if match is None or ":" in spec.split("/")[0]:
            raise ResolveError("is not allowed: a script imports helpers by a relative path (\"./_util.js\") and "
                               "packages by name; the sandbox has no file system, network or environment modules")
        name, sub = match.group(1), "." + (match.group(2) or "")
        package = self.package(name, importer)
        if package is None:
            raise ResolveError(f"no package {name!r} in node_modules (npm install {name} in {self.root})")
        conditions = REQUIRE_CONDITIONS if require else IMPORT_CONDITIONS
        exports = package.meta.get("exports")
        if exports is not None:
            target = _exports_target(exports, sub, conditions)
            if target is None:
                raise ResolveError(f"package {name!r} does not export {sub!r} (its package.json \"exports\")")
            file = (package.folder / target).resolve()
            if not self.inside(file) or not file.is_file():
                raise ResolveError(f"package {name!r} exports {sub!r} as {target!r}, which is not a file")
            return file
        if sub == ".":
            for field in ("browser", "module", "main"):
                entry = package.meta.get(field)
                if isinstance(entry, str) and entry:
                    found = _probe((package.folder / entry).resolve())
                    if found is not None and self.inside(found):
                        return found
            found = _probe(package.folder / "index")
        else:
            found = _probe((package.folder / sub).resolve())
        if found is None or not self.inside(found):
            raise ResolveError(f"package {name!r} has no module {sub!r}")
        return found

    def package(self, name: str, importer: Path) -> Package | None:
        """The package `name` in the nearest node_modules from importer up to the served folder."""
        folder = importer.parent
        while True:
            candidate = folder / "node_modules" / name
            meta = _package_json(candidate)
            if meta is not None:
                return Package(candidate.resolve(), meta)
            if folder == self.root or not self.inside(folder):
                return None
            folder = folder.parent

    def kind(self, file: Path, has_module_syntax: bool) -> Kind:
        """How a file is loaded: `.mjs` and files with import/export are ES modules, `.cjs` and files
        of a package without `"type": "module"` that use no module syntax are CommonJS."""
        if file.suffix == ".json":
            return "json"
        if file.suffix == ".mjs" or has_module_syntax:
            return "esm"
        if file.suffix == ".cjs":
            return "cjs"
        if "node_modules" not in file.relative_to(self.root).parts:
            return "esm"  # the served folder's own scripts
        folder = file.parent
        while self.inside(folder):
            meta = _package_json(folder)
            if meta is not None:
                return "esm" if meta.get("type") == "module" else "cjs"
            folder = folder.parent
        return "cjs"


@lru_cache(maxsize=4096)
def _package_json(folder: Path) -> dict[str, Any] | None:
    try:
        meta = json.loads((folder / "package.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) else None


def _probe(target: Path) -> Path | None:
    """Node's file probing: the path, with an extension, then as a folder (its package.json main
    or index)."""
    for ext in _PROBE:
        file = target.with_name(target.name + ext) if ext else target
        if file.is_file():
            return file
    if target.is_dir():
        meta = _package_json(target)
        main = meta.get("main") if meta else None
        if isinstance(main, str) and main:
            found = _probe((target / main).resolve())
            if found is not None:
                return found
        for index in _INDEX:
            if (target / index).is_file():
                return target / index
    return None


def _exports_target(exports: Any, sub: str, conditions: frozenset[str]) -> str | None:
    """The target of `sub` ("." or "./x") in a package.json `exports` (Node's PACKAGE_EXPORTS_RESOLVE)."""
    if isinstance(exports, (str, list)) or (isinstance(exports, dict) and not any(k.startswith(".") for k in exports)):
        return _conditional(exports, conditions, "") if sub == "." else None
    if not isinstance(exports, dict):
        return None
    if sub in exports and "*" not in sub:
        return _conditional(exports[sub], conditions, "")
    best: tuple[str, str] | None = None
    for key in exports:
        star = key.find("*")
        if star < 0 or key.count("*") != 1:
            continue
        prefix, suffix = key[:star], key[star + 1:]
        if sub.startswith(prefix) and sub != prefix and sub.endswith(suffix) and len(sub) >= len(key):
            if best is None or _pattern_order(key) > _pattern_order(best[0]):
                best = (key, sub[len(prefix):len(sub) - len(suffix)])
    if best is not None:
        return _conditional(exports[best[0]], conditions, best[1])
    # Deprecated folder mappings ("./": "./"), still used by some packages.
    for key in sorted((k for k in exports if k.endswith("/")), key=len, reverse=True):
        if sub.startswith(key):
            target = _conditional(exports[key], conditions, "")
            return None if target is None else target + sub[len(key):]
    return None


def _pattern_order(key: str) -> tuple[int, int]:
    return key.find("*"), len(key)


def _conditional(target: Any, conditions: frozenset[str], star: str) -> str | None:
    if isinstance(target, str):
        if not target.startswith("./"):
            return None
        return target.replace("*", star)
    if isinstance(target, list):
        for item in target:
            found = _conditional(item, conditions, star)
            if found is not None:
                return found
        return None
    if isinstance(target, dict):
        for key, value in target.items():
            if key in conditions:
                found = _conditional(value, conditions, star)
                if found is not None:
                    return found
        return None
    return None
