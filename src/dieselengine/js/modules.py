"""ES modules through quickjs-ng's own module loader: real linking, so imported bindings are live,
cycles work, `export *` and namespaces are the engine's, and every frame names its file.

The binding has no module loader, so one is installed with the engine's C API
(`JS_SetModuleLoaderFunc`, reached with ctypes as for the interrupt handler): the engine asks for
each import (`_normalize`: which module a specifier names) and for each module's code (`_load`:
compiled here with `JS_Eval(..., COMPILE_ONLY)`). A module's name is its path in the served folder,
so stack frames read `chat.js:3:5`. Where a package is CommonJS, the engine gets generated ES
modules instead (see `commonjs.js`): the file's code in a factory under its own name, and a facade
(`\\x01cjs:` + name) exporting `module.exports` as `default` and the names a cjs-module-lexer-style
scan finds as named exports. JSON files are CommonJS modules exporting their value.
"""

from __future__ import annotations

import ctypes
import itertools
import json
import re
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..runtime import ScriptError
from . import cpu_limit
from .lexer import Tok, tokenize
from .resolve import Kind, ResolveError, Resolver

#: Internal specifiers start with U+0001 (a C string cannot hold NUL): the facade of a CommonJS
#: file, a module named by its resolved name (MAIN, DEP), which the normalizer passes through.
FACADE = "\x01cjs:"
MAIN = "\x01main:"
DEP = "\x01dep:"

_IDENTIFIER = re.compile(r"^[A-Za-z_$][\w$]*$")
_EVAL_MODULE_COMPILE_ONLY = 1 | (1 << 5)
_TAG_EXCEPTION = 6
_PROP_C_W_E = 7


class _JSValue(ctypes.Structure):
    _fields_ = [("ptr", ctypes.c_void_p), ("tag", ctypes.c_int64)]


_NORMALIZE = ctypes.CFUNCTYPE(ctypes.c_void_p, ctypes.c_void_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_void_p)
_LOAD = ctypes.CFUNCTYPE(ctypes.c_void_p, ctypes.c_void_p, ctypes.c_char_p, ctypes.c_void_p)


def _bind(engine: Any) -> None:
    engine.JS_SetModuleLoaderFunc.argtypes = [ctypes.c_void_p, _NORMALIZE, _LOAD, ctypes.c_void_p]
    engine.JS_SetModuleLoaderFunc.restype = None
    engine.JS_Eval.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t, ctypes.c_char_p, ctypes.c_int]
    engine.JS_Eval.restype = _JSValue
    engine.js_strdup.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
    engine.js_strdup.restype = ctypes.c_void_p
    engine.JS_FreeValue.argtypes = [ctypes.c_void_p, _JSValue]
    engine.JS_FreeValue.restype = None
    engine.JS_GetImportMeta.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
    engine.JS_GetImportMeta.restype = _JSValue
    engine.JS_NewStringLen.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t]
    engine.JS_NewStringLen.restype = _JSValue
    engine.JS_DefinePropertyValueStr.argtypes = [ctypes.c_void_p, _JSValue, ctypes.c_char_p, _JSValue, ctypes.c_int]
    engine.JS_DefinePropertyValueStr.restype = ctypes.c_int
    engine.JS_ThrowTypeError.restype = _JSValue


@dataclass
class _File:
    path: Path
    name: str  # path relative to the served folder, posix
    source: str
    kind: Kind
    toks: list[Tok] = field(default_factory=list)


class ModuleLoader:
    """The modules of one script: resolves and reads files, and hands their code to the engine."""

    def __init__(self, runtime: int, root: Path) -> None:
        self.root = root.resolve()
        self.resolver = Resolver(self.root)
        self.files: dict[str, _File] = {}
        #: The first error met while loading, already located; the engine's own message is vaguer.
        self.error: str | None = None
        self._key = next(_keys)
        _loaders[self._key] = weakref.ref(self)
        _engine.JS_SetModuleLoaderFunc(runtime, _on_normalize, _on_load, self._key)

    def close(self) -> None:
        _loaders.pop(self._key, None)

    def entry_source(self, main: Path) -> str:
        """The entry module the runtime evaluates: it imports the script's namespace."""
        file = self.file(main.resolve())
        name = MAIN + file.name if file.kind == "esm" else FACADE + file.name
        return f"import * as main from {json.dumps(name)};\n__diesel_main__(main);\n"

    def loaded(self) -> None:
        """The script is loaded: forget the packages' text and tokens (megabytes of Python objects);
        an `import()` later reads what it needs again, and an import error in a package's code at
        run time names the file without the line. The served folder's own files are kept."""
        for file in self.files.values():
            if "node_modules" in Path(file.name).parts:
                file.source = ""
                file.toks = []

    def sources(self, own: bool = False) -> list[str]:
        """The sources of every file loaded, or only those of the served folder itself (own)."""
        return [f.source for f in self.files.values()
                if not own or "node_modules" not in Path(f.name).parts]

    # -- files -----------------------------------------------------------------------------------

    def file(self, path: Path) -> _File:
        name = path.relative_to(self.root).as_posix()
        known = self.files.get(name)
        if known is not None:
            return known
        source, toks = self._read(path, name)
        kind = self.resolver.kind(path, _module_syntax(toks))
        file = self.files[name] = _File(path, name, source, kind, toks)
        return file

    def _read(self, path: Path, name: str) -> tuple[str, list[Tok]]:
        try:
            source = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ResolveError(f"cannot be read: {exc}") from None
        source = source.replace("\r\n", "\n")
        if source.startswith("#!"):
            source = "//" + source[2:]
        toks = tokenize(source) if path.suffix != ".json" else []
        if "node_modules" in Path(name).parts and "NODE_ENV" in source:
            source, toks = _define_node_env(source, toks)
        return source, toks

    def _text(self, file: _File) -> _File:
        """A file with its text, read again if `loaded` forgot it."""
        if not file.source:
            try:
                file.source, file.toks = self._read(file.path, file.name)
            except ResolveError:
                pass
        return file

    def _locate(self, importer: str, spec: str) -> str:
        """`path:line:column` of the specifier string in the importing file (its first mention)."""
        file = self.files.get(importer)
        path = self.root / importer if importer else self.root
        if file is not None:
            for tok in file.toks:
                if tok.kind == "str" and tok.value[1:-1] == spec:
                    line = file.source.count("\n", 0, tok.start) + 1
                    column = tok.start - (file.source.rfind("\n", 0, tok.start) + 1) + 1
                    return f"{path}:{line}:{column}"
        return str(path)

    def missing_export(self, text: str) -> str | None:
        """The engine's "Could not find export 'x' in module 'm'" located at the import naming x."""
        match = re.search(r"Could not find export '(.+?)' in module '(.+?)'", text)
        if match is None:
            return None
        name, module = match.groups()
        for file in list(self.files.values()):
            toks = file.toks
            for i, tok in enumerate(toks):
                if tok.value != "import" or tok.depth != 0:
                    continue
                j = i + 1
                while j < len(toks) and toks[j].value != "from" and toks[j].value != ";":
                    j += 1
                if j + 1 >= len(toks) or toks[j].value != "from" or toks[j + 1].kind != "str":
                    continue
                spec = toks[j + 1].value[1:-1]
                try:
                    if self.normalize(file.name, spec).removeprefix(FACADE) != module.removeprefix(FACADE):
                        continue
                except ScriptError:
                    continue
                for k in range(i + 1, j):
                    if toks[k].value == name:
                        line = file.source.count("\n", 0, toks[k].start) + 1
                        column = toks[k].start - (file.source.rfind("\n", 0, toks[k].start) + 1) + 1
                        return (f"{self.root / file.name}:{line}:{column}: SyntaxError: the module {json.dumps(spec)} "
                                f"does not provide an export named {json.dumps(name)}")
        return None

    # -- the engine's two questions --------------------------------------------------------------

    def normalize(self, base: str, spec: str) -> str:
        """The module name `spec` means when `base` imports it."""
        if spec.startswith((MAIN, DEP)):
            return spec[len(MAIN if spec.startswith(MAIN) else DEP):]
        if spec.startswith(FACADE):
            return spec
        importer = base[len(FACADE):] if base.startswith(FACADE) else base
        try:
            target = self.resolver.resolve(spec, self.root / importer)
            file = self.file(target)
        except ResolveError as exc:
            why = str(exc) if str(exc).startswith("is ") else f": {exc}"
            message = f"{self._locate(importer, spec)}: import {json.dumps(spec)}{' ' if why[0] == 'i' else ''}{why}"
            self.error = self.error or message
            raise ScriptError(message) from None
        return file.name if file.kind == "esm" else FACADE + file.name

    def code(self, name: str) -> str:
        """The source the engine compiles for a module name."""
        if name.startswith(FACADE):
            return self._facade(self._text(self.files[name[len(FACADE):]]))
        file = self._text(self.files[name])
        if file.kind == "esm":
            return file.source
        return self._commonjs(file)

    def _commonjs(self, file: _File) -> str:
        """A CommonJS file as an ES module that defines its factory; everything it requires with a
        string literal is resolved now and imported first, all on the first line so the file's
        lines keep their numbers."""
        deps: dict[str, Any] = {}
        head = []
        if file.kind == "json":
            body = f"module.exports = {file.source}"
        else:
            body = file.source
            for spec in _requires(file.toks):
                if spec in deps:
                    continue
                try:
                    target = self.file(self.resolver.resolve(spec, file.path, require=True))
                except ResolveError as exc:
                    deps[spec] = [str(exc)]
                    continue
                deps[spec] = target.name
                if target.kind == "esm":
                    alias = f"__diesel_ns{len(head)}"
                    head.append(f"import * as {alias} from {json.dumps(DEP + target.name)}; "
                                f"__diesel_cjs__.esm({json.dumps(target.name)}, {alias});")
                else:
                    head.append(f"import {json.dumps(DEP + target.name)};")
        return ("".join(head) + f"__diesel_cjs__.define({json.dumps(file.name)}, {json.dumps(deps)}, "
                "function (exports, require, module, __filename, __dirname, process, global) {"
                + body + "\n});\n")

    def _facade(self, file: _File) -> str:
        names = sorted(self._exported_names(file, set()) - {"default", "__esModule"})
        lines = [f"import {json.dumps(DEP + file.name)};",
                 f"const m = __diesel_cjs__.require({json.dumps(file.name)});",
                 "export default __diesel_cjs__.interop(m);"]
        for i, name in enumerate(names):
            lines.append(f"const e{i} = m == null ? undefined : m[{json.dumps(name)}]; "
                         f"export {{ e{i} as {json.dumps(name)} }};")
        return "\n".join(lines) + "\n"

    def _exported_names(self, file: _File, seen: set[str]) -> set[str]:
        """The names a CommonJS file exports, found as Node's cjs-module-lexer finds them."""
        if file.name in seen:
            return set()
        seen.add(file.name)
        file = self._text(file)
        if file.kind == "json":
            try:
                value = json.loads(file.source)
            except ValueError:
                return set()
            return {k for k in value if _IDENTIFIER.match(k)} if isinstance(value, dict) else set()
        names, reexports = _cjs_exports(file.toks)
        for spec in reexports:
            try:
                target = self.file(self.resolver.resolve(spec, file.path, require=True))
            except ResolveError:
                continue
            if target.kind != "esm":
                names |= self._exported_names(target, seen)
        return names

    def compile(self, ctx: int, name: str) -> int | None:
        """Compile a module (the engine links and runs it); None with an exception pending."""
        engine = _engine
        code = self.code(name).encode("utf-8")
        value = engine.JS_Eval(ctx, code, len(code), name.encode("utf-8"), _EVAL_MODULE_COMPILE_ONLY)
        if value.tag == _TAG_EXCEPTION:
            return None
        module = value.ptr
        if not name.startswith("\x01"):
            meta = engine.JS_GetImportMeta(ctx, module)
            url = f"file:///{name}".encode("utf-8")
            engine.JS_DefinePropertyValueStr(ctx, meta, b"url", engine.JS_NewStringLen(ctx, url, len(url)),
                                             _PROP_C_W_E)
            engine.JS_FreeValue(ctx, meta)
        return module


def _define_node_env(source: str, toks: list[Tok]) -> tuple[str, list[Tok]]:
    """`process.env.NODE_ENV` becomes `"production"` in packages, as bundlers define it: packages
    written for bundlers read it where the sandbox has no `process`."""
    edits = []
    for i in range(len(toks) - 4):
        if toks[i].value == "process" and toks[i + 1].value == "." and toks[i + 2].value == "env" \
                and toks[i + 3].value == "." and toks[i + 4].value == "NODE_ENV" \
                and not (i and toks[i - 1].value in (".", "?.")):
            edits.append((toks[i].start, toks[i + 4].end))
    if not edits:
        return source, toks
    for start, end in reversed(edits):
        source = source[:start] + '"production"' + source[end:]
    return source, tokenize(source)


def _module_syntax(toks: list[Tok]) -> bool:
    """Whether a file has top-level import or export statements (not `import(` or `import.meta`)."""
    for i, tok in enumerate(toks):
        if tok.depth == 0 and tok.kind == "id" and tok.value in ("import", "export") and not (
                i > 0 and toks[i - 1].value in (".", "?.")):
            nxt = toks[i + 1] if i + 1 < len(toks) else None
            if tok.value == "import" and (nxt is None or nxt.value in ("(", ".")):
                continue
            return True
    return False


def _requires(toks: list[Tok]) -> list[str]:
    """The string-literal specifiers of `require("...")` calls."""
    found = []
    for i in range(len(toks) - 3):
        tok = toks[i]
        if tok.value == "require" and tok.kind == "id" and toks[i + 1].value == "(" and toks[i + 2].kind == "str" \
                and toks[i + 3].value == ")" and not (i and toks[i - 1].value in (".", "?.")):
            found.append(toks[i + 2].value[1:-1])
    return found


def _cjs_exports(toks: list[Tok]) -> tuple[set[str], list[str]]:
    """Export names and re-exported specifiers of a CommonJS file: `exports.a =`,
    `module.exports.a =`, `exports["a"] =`, `Object.defineProperty(exports, "a"`,
    `module.exports = { a, b: 1 }`, `module.exports = require("x")`, `__exportStar(require("x"))`."""
    names: set[str] = set()
    reexports: list[str] = []
    n = len(toks)

    def value(i: int) -> str:
        return toks[i].value if i < n else ""

    def is_exports(i: int) -> int:
        """Index after `exports` or `module.exports` at i, else -1."""
        if value(i) == "exports" and value(i - 1) not in (".", "?."):
            return i + 1
        if value(i) == "module" and value(i + 1) == "." and value(i + 2) == "exports" and value(i - 1) not in (".", "?."):
            return i + 3
        return -1

    for i in range(n):
        tok = toks[i]
        if tok.kind != "id":
            continue
        j = is_exports(i)
        if j >= 0:
            if value(j) == "." and value(j + 2) == "=" and value(j + 3) != "=" and toks[j + 1].kind == "id":
                names.add(toks[j + 1].value)
            elif value(j) == "[" and j + 1 < n and toks[j + 1].kind == "str" and value(j + 2) == "]" and value(j + 3) == "=":
                names.add(toks[j + 1].value[1:-1])
            elif value(j) == "=" and value(j + 1) != "=" and tok.value == "module":
                if value(j + 1) == "require" and value(j + 2) == "(" and j + 3 < n and toks[j + 3].kind == "str":
                    reexports.append(toks[j + 3].value[1:-1])
                elif value(j + 1) == "{":
                    depth = toks[j + 1].depth + 1
                    k = j + 2
                    while k < n and not (toks[k].value == "}" and toks[k].depth == depth - 1):
                        t = toks[k]
                        if t.depth == depth and value(k - 1) in ("{", ","):
                            if t.value == "." and value(k + 3) == "require" and k + 5 < n and toks[k + 5].kind == "str":
                                reexports.append(toks[k + 5].value[1:-1])
                            elif t.kind == "id" and value(k + 1) in (",", "}", ":", "("):
                                names.add(t.value)
                            elif t.kind == "str" and value(k + 1) == ":":
                                names.add(t.value[1:-1])
                        k += 1
        elif tok.value == "defineProperty" and value(i - 1) == "." and value(i - 2) == "Object" and value(i + 1) == "(":
            k = is_exports(i + 2)
            if k >= 0 and value(k) == "," and k + 1 < n and toks[k + 1].kind == "str":
                names.add(toks[k + 1].value[1:-1])
        elif tok.value in ("__exportStar", "__export") and value(i + 1) == "(" and value(i + 2) == "require" \
                and value(i + 3) == "(" and i + 4 < n and toks[i + 4].kind == "str":
            reexports.append(toks[i + 4].value[1:-1])
    return names, reexports


# ---- the callbacks the engine calls ----------------------------------------------------------------
#
# One pair for the process (a ctypes callback must outlive every runtime that may call it); the
# opaque pointer says which script's loader is asking.

_loaders: dict[int, weakref.ref[ModuleLoader]] = {}
_keys = itertools.count(1)
_engine: Any = cpu_limit._engine
if _engine is not None:
    _bind(_engine)


def _loader(opaque: int | None) -> ModuleLoader | None:
    ref = _loaders.get(opaque or 0)
    return ref() if ref is not None else None


def _throw(ctx: int, message: str) -> None:
    _engine.JS_ThrowTypeError(ctypes.c_void_p(ctx), ctypes.c_char_p(b"%s"),
                              ctypes.c_char_p(message.encode("utf-8", "replace")))


@_NORMALIZE
def _on_normalize(ctx: int, base: bytes, spec: bytes, opaque: int) -> int | None:
    loader = _loader(opaque)
    if loader is None:
        _throw(ctx, "modules cannot be loaded after the script was unloaded")
        return None
    try:
        name = loader.normalize(base.decode("utf-8"), spec.decode("utf-8"))
    except ScriptError as exc:
        _throw(ctx, str(exc))
        return None
    except Exception as exc:  # pragma: no cover - a bug of ours must not crash the engine
        _throw(ctx, f"internal error while resolving {spec!r}: {exc!r}")
        return None
    return _engine.js_strdup(ctx, name.encode("utf-8"))


@_LOAD
def _on_load(ctx: int, name: bytes, opaque: int) -> int | None:
    loader = _loader(opaque)
    if loader is None:
        _throw(ctx, "modules cannot be loaded after the script was unloaded")
        return None
    try:
        return loader.compile(ctx, name.decode("utf-8"))
    except Exception as exc:  # pragma: no cover - a bug of ours must not crash the engine
        _throw(ctx, f"internal error while loading {name!r}: {exc!r}")
        return None
