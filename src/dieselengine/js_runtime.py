"""JavaScript handler scripts: ES modules run in a sandboxed quickjs-ng context, one per script.

The sandbox is the engine itself: a quickjs-ng context has no file system, network, process or
environment API, only the language and what `js_prelude.js` adds (the session and room API,
`console`, timers). Each script gets its own runtime, so a limit hit by one script (CPU time per
call, memory, stack) never touches another, and the context stays usable afterwards.

How a call works. quickjs-ng refuses calls from JavaScript into Python while a time limit is set,
so the script never calls the server: its host operations (send, join, broadcast, log, timers)
are appended to an outbox in the context and executed here, in order, when the call returns.
What a script must read synchronously is mirrored into the context: the session's handshake
data and attributes live there, and room member counts are pushed in before a call whenever
they changed (`Hub.count_listeners`), while a script's own joins and leaves update its mirror at
once. The outbox comes back as JSON in general; the commonest hooks
(one broadcast, send, join or leave by the calling session) come back as an int or a
"code:text" string, which keeps a relay call near the cost of entering the engine at all. A
session's object is made in the same entry into the engine as its onOpen call; Python knows it
by its handle. The CPU-time limit is enforced by an interrupt handler rather than by the
binding's `set_time_limit`, which reads the CPU clock on every entry (see "the CPU-time limit"
below).

Modules. quickjs-ng's Python binding has no module loader, so imports and exports are rewritten
before evaluation: `import {a} from "./_util.js"` becomes a lookup of the already evaluated helper's
namespace, `export` declarations register getters. Only relative imports of `.js` files inside
the served folder are allowed. Every module is evaluated with its lines shifted into a range of
its own (the engine names every module `<input>`), so a stack frame's line tells its file.
"""

from __future__ import annotations

import asyncio
import base64
import ctypes
import itertools
import json
import logging
import re
import time
import weakref
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

import quickjs

from ._wire import Entry
from .runtime import Hook, Script, ScriptError

if TYPE_CHECKING:
    from .hub import Hub
    from .session import Message, Session

log = logging.getLogger("dieselengine")

_PRELUDE = (Path(__file__).with_name("js_prelude.js")).read_text()
_PRELUDE_LINES = _PRELUDE.count("\n") + 1

# Opcodes of the outbox; keep in sync with js_prelude.js.
OP_SEND, OP_SEND_BIN, OP_SEND_MSG, OP_CLOSE, OP_JOIN, OP_LEAVE = 1, 2, 3, 4, 5, 6
OP_BCAST, OP_BCAST_BIN, OP_BCAST_MSG, OP_LOG, OP_TIMER = 7, 8, 9, 10, 11
OP_CLEAR, OP_SETTLE, OP_ROOM_ID = 12, 13, 14
#: Arguments after each opcode.
_ARITY = {OP_SEND: 2, OP_SEND_BIN: 2, OP_SEND_MSG: 1, OP_CLOSE: 3, OP_JOIN: 2, OP_LEAVE: 2,
          OP_BCAST: 4, OP_BCAST_BIN: 4, OP_BCAST_MSG: 3, OP_LOG: 2, OP_TIMER: 2, OP_CLEAR: 1,
          OP_SETTLE: 3, OP_ROOM_ID: 2}
K_BCAST, K_EXCEPT, K_SEND = 1, 2, 3
#: Kind 0 of a "code:text" result: a join of the room named by the text, or with this bit a leave.
M_LEAVE = 4
#: The arguments of an entry point when nothing changed since the last call (see _sync).
_NO_SYNC: tuple[None, int] = (None, 0)
S_PROMISE, S_JOBS = 1, 2
#: Promise jobs run in one go before the rest wait for the next loop iteration.
_MAX_JOBS = 10000
#: Room counts a script may have pending before they are pushed into its context unasked.
_MAX_DIRTY = 4096


class JsError(Exception):
    """An error thrown by a script; the message is already located (file:line:column, stack)."""


# ---- error locations ---------------------------------------------------------------------------

_LOCATION = re.compile(r"<input>:(\d+)(?::(\d+))?")
_FRAME = re.compile(r"^\s+at .*$")


@dataclass
class _LineMap:
    """Modules laid out in one line space: module i has lines offset+1 .. offset+lines."""

    ranges: list[tuple[int, int, str]] = field(default_factory=list)

    def where(self, line: int) -> tuple[str, int] | None:
        """(file, line) of a line of the space; None for the prelude (the server's own code)."""
        for offset, lines, file in self.ranges:
            if offset < line <= offset + lines + 1:
                return file, line - offset
        return None

    def locate(self, text: str) -> str:
        """Replace `<input>:line:column` with the script's file name; drop the prelude's frames."""
        out = []
        for row in text.rstrip("\n").split("\n"):
            match = _LOCATION.search(row)
            if match:
                where = self.where(int(match.group(1)))
                if where is None:
                    if _FRAME.match(row):
                        continue
                    where = ("<dieselengine>", int(match.group(1)))
                column = f":{match.group(2)}" if match.group(2) else ""
                row = row[:match.start()] + f"{where[0]}:{where[1]}{column}" + row[match.end():]
            out.append(row)
        return "\n".join(out)

    def first_location(self, text: str) -> str | None:
        for match in _LOCATION.finditer(text):
            where = self.where(int(match.group(1)))
            if where is not None:
                return f"{where[0]}:{where[1]}:{match.group(2) or 1}"
        return None


# ---- modules: a small lexer and the import/export rewrite ----------------------------------------

_IDENT = re.compile(r"[\w$\u0080-\uffff]+")
_REGEX_AFTER_WORDS = frozenset(
    "return typeof instanceof in of new delete void throw case do else yield await".split())
_STATEMENT_WORDS = frozenset(
    "export import function class const let var if for while do return async switch try throw".split())


@dataclass
class _Tok:
    kind: str  # "id", "str", "tpl", "re", "p" (punctuator)
    value: str
    start: int
    end: int
    depth: int
    newline: bool  # a line break comes before it


def _tokenize(src: str) -> list[_Tok]:
    """Tokens of a JavaScript source, good enough to find its top-level import/export statements:
    strings, template literals (with nested `${}`), comments and regular expressions are skipped
    whole, brackets give each token its nesting depth."""
    toks: list[_Tok] = []
    stack: list[str] = []
    i, n = 0, len(src)
    newline = False

    def regex_allowed() -> bool:
        if not toks:
            return True
        prev = toks[-1]
        if prev.kind == "id":
            return prev.value in _REGEX_AFTER_WORDS
        if prev.kind in ("str", "tpl", "re"):
            return False
        return prev.value not in (")", "]")

    def template(j: int) -> int:
        """Scan a template from j (just after ` or the } closing a substitution)."""
        while j < n:
            c = src[j]
            if c == "\\":
                j += 2
            elif c == "`":
                return j + 1
            elif c == "$" and src.startswith("${", j):
                stack.append("${")
                return j + 2
            else:
                j += 1
        return n

    while i < n:
        c = src[i]
        if c in " \t\v\f\r\u00a0\ufeff":
            i += 1
            continue
        if c in "\n\u2028\u2029":
            newline = True
            i += 1
            continue
        start = i
        depth = len(stack)
        if c == "/" and src.startswith("//", i):
            j = src.find("\n", i)
            i = n if j < 0 else j
            continue
        if c == "/" and src.startswith("/*", i):
            j = src.find("*/", i + 2)
            if j < 0:
                i = n
            else:
                newline = newline or "\n" in src[i:j]
                i = j + 2
            continue
        if c == "/" and regex_allowed():
            j = i + 1
            in_class = False
            while j < n and src[j] != "\n":
                d = src[j]
                if d == "\\":
                    j += 2
                    continue
                if d == "[":
                    in_class = True
                elif d == "]":
                    in_class = False
                elif d == "/" and not in_class:
                    break
                j += 1
            j += 1
            match = _IDENT.match(src, j)
            i = match.end() if match else j
            toks.append(_Tok("re", src[start:i], start, i, depth, newline))
        elif c in "\"'":
            j = i + 1
            while j < n and src[j] != c and src[j] != "\n":
                j += 2 if src[j] == "\\" else 1
            i = j + 1
            toks.append(_Tok("str", src[start:i], start, i, depth, newline))
        elif c == "`":
            i = template(i + 1)
            toks.append(_Tok("tpl", src[start:i], start, i, depth, newline))
        elif c == "}" and stack and stack[-1] == "${":
            stack.pop()
            i = template(i + 1)
            toks.append(_Tok("tpl", src[start:i], start, i, len(stack), newline))
        elif c in "{([":
            toks.append(_Tok("p", c, start, i + 1, depth, newline))
            stack.append(c)
            i += 1
        elif c in "})]":
            if stack:
                stack.pop()
            toks.append(_Tok("p", c, start, i + 1, len(stack), newline))
            i += 1
        else:
            match = _IDENT.match(src, i)
            if match:
                i = match.end()
                toks.append(_Tok("id", match.group(), start, i, depth, newline))
            else:
                i += 1
                toks.append(_Tok("p", c, start, i, depth, newline))
        newline = False
    return toks


@dataclass
class _Module:
    id: str  # path relative to the served folder, posix
    path: Path
    source: str
    code: str = ""


def _js_string(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


class _Rewriter:
    """Rewrites one module's top-level import and export statements (see the module docstring).

    Line breaks are kept, so every line keeps its number; `export` keywords become spaces, so
    columns stay right everywhere but on import lines."""

    def __init__(self, module: _Module, resolve: Callable[[str, _Tok], str]) -> None:
        self.m = module
        self.src = module.source
        self.toks = _tokenize(self.src)
        self.resolve = resolve
        self.edits: list[tuple[int, int, str]] = []
        #: exported name -> JS expression (inside the getter)
        self.exports: dict[str, str] = {}
        self.reexport_deps: list[str] = []
        self.stars: list[str] = []

    def error(self, tok: _Tok, message: str) -> ScriptError:
        line = self.src.count("\n", 0, tok.start) + 1
        column = tok.start - (self.src.rfind("\n", 0, tok.start) + 1) + 1
        return ScriptError(f"{self.m.path}:{line}:{column}: {message}")

    def tok(self, i: int) -> _Tok:
        if i >= len(self.toks):
            last = self.toks[-1] if self.toks else _Tok("p", "", 0, 0, 0, False)
            raise self.error(last, "SyntaxError: unexpected end of input")
        return self.toks[i]

    def expect(self, i: int, value: str) -> int:
        tok = self.tok(i)
        if tok.value != value:
            raise self.error(tok, f"SyntaxError: expected {value!r}, got {tok.value!r}")
        return i + 1

    def replace(self, start: int, end: int, text: str) -> None:
        self.edits.append((start, end, text + "\n" * self.src.count("\n", start, end)))

    def statement_end(self, i: int) -> int:
        """Index after an optional `;`."""
        if i < len(self.toks) and self.toks[i].value == ";":
            return i + 1
        return i

    def specifier(self, i: int) -> tuple[str, str]:
        """(resolved module id, specifier as written) of the string token at i."""
        tok = self.tok(i)
        if tok.kind != "str":
            raise self.error(tok, "SyntaxError: expected a module specifier string")
        spec = tok.value[1:-1]
        after = self.toks[i + 1] if i + 1 < len(self.toks) else None
        if after is not None and after.value in ("with", "assert") and not after.newline:
            raise self.error(after, "SyntaxError: import attributes are not supported")
        return self.resolve(spec, tok), spec

    def run(self) -> str:
        toks = self.toks
        i = 0
        while i < len(toks):
            tok = toks[i]
            if tok.depth == 0 and tok.kind == "id" and tok.value in ("import", "export") and not (
                    i > 0 and toks[i - 1].value in (".", "?.")):
                nxt = toks[i + 1] if i + 1 < len(toks) else None
                if tok.value == "import" and nxt is not None and nxt.value in ("(", "."):
                    i += 1  # import() / import.meta: fail at run time in the engine
                    continue
                i = self.import_(i) if tok.value == "import" else self.export(i)
                continue
            i += 1
        code = self.src
        for start, end, text in sorted(self.edits, reverse=True):
            code = code[:start] + text + code[end:]
        getters = ", ".join(f"get {_js_string(name)}() {{ return {expr}; }}" for name, expr in self.exports.items())
        trailer = (f"\n;__diesel_export__({_js_string(self.m.id)}, (__diesel_deps__) => ({{{getters}}}), "
                   f"{json.dumps(self.reexport_deps)}, {json.dumps(self.stars)});\n")
        return code + trailer

    # -- import ----------------------------------------------------------------------------------

    def import_(self, i: int) -> int:
        """`import ... from "spec"` -> `const {...} = __diesel_import__(id, spec, [names])`."""
        start = self.toks[i].start
        j = i + 1
        if self.tok(j).kind == "str":  # import "./x.js";
            dep, spec = self.specifier(j)
            end = self.statement_end(j + 1)
            self.replace(start, self.toks[end - 1].end,
                         f"__diesel_import__({_js_string(dep)}, {_js_string(spec)}, []);")
            return end
        default = namespace = None
        named: list[tuple[str, str]] = []  # (imported, local)
        tok = self.tok(j)
        if tok.kind == "id" and self.tok(j + 1).value in (",", "from"):
            default = tok.value
            j += 2 if self.tok(j + 1).value == "," else 1
        tok = self.tok(j)
        if tok.value == "*":
            j = self.expect(j + 1, "as")
            namespace = self.tok(j).value
            j += 1
        elif tok.value == "{":
            pairs, j = self.braces(j + 1)
            named = [(imported.value[1:-1] if imported.kind == "str" else imported.value, local)
                     for imported, local in pairs]
        j = self.expect(j, "from")
        dep, spec = self.specifier(j)
        end = self.statement_end(j + 1)
        needed = [name for name, _ in named] + (["default"] if default else [])
        call = f"__diesel_import__({_js_string(dep)}, {_js_string(spec)}, {json.dumps(needed)})"
        parts = [f"{_js_string(name)}: {local}" for name, local in named]
        if default:
            parts.insert(0, f"default: {default}")
        if namespace and parts:
            code = f"const {namespace} = {call}, {{{', '.join(parts)}}} = {namespace};"
        elif namespace:
            code = f"const {namespace} = {call};"
        else:
            code = f"const {{{', '.join(parts)}}} = {call};"
        self.replace(start, self.toks[end - 1].end, code)
        return end

    def braces(self, j: int) -> tuple[list[tuple[_Tok, str]], int]:
        """The `a, b as c, ...}` of an import or export list, from the token after `{`: (first
        token, the name after `as` or else the first's) pairs, and the index after `}`."""
        pairs: list[tuple[_Tok, str]] = []
        while self.tok(j).value != "}":
            first = self.tok(j)
            j += 1
            second = first.value
            if self.tok(j).value == "as":
                second = self.tok(j + 1).value
                j += 2
            pairs.append((first, second))
            if self.tok(j).value == ",":
                j += 1
        return pairs, j + 1

    # -- export ----------------------------------------------------------------------------------

    def blank(self, tok: _Tok) -> None:
        self.edits.append((tok.start, tok.end, " " * (tok.end - tok.start)))

    def export(self, i: int) -> int:
        export = self.toks[i]
        j = i + 1
        tok = self.tok(j)
        if tok.value == "default":
            return self.export_default(i)
        if tok.value in ("function", "class") or (tok.value == "async" and self.tok(j + 1).value == "function"):
            self.blank(export)
            k = j + (2 if tok.value == "async" else 1)
            if self.tok(k).value == "*":
                k += 1
            name = self.tok(k)
            if name.kind != "id":
                raise self.error(name, "SyntaxError: an exported declaration needs a name")
            self.exports[name.value] = name.value
            return k + 1
        if tok.value in ("const", "let", "var"):
            self.blank(export)
            return self.declarators(j + 1)
        if tok.value == "{":
            listed, k = self.braces(j + 1)
            pairs = [(local.value, exported[1:-1] if exported[0] in "\"'" else exported) for local, exported in listed]
            if k < len(self.toks) and self.toks[k].value == "from":
                dep, _ = self.specifier(k + 1)
                index = len(self.reexport_deps)
                self.reexport_deps.append(dep)
                for local, exported in pairs:
                    name = local[1:-1] if local[0] in "\"'" else local
                    self.exports[exported] = f"__diesel_deps__[{index}][{_js_string(name)}]"
                k += 2
            else:
                for local, exported in pairs:
                    self.exports[exported] = local
            end = self.statement_end(k)
            self.replace(export.start, self.toks[end - 1].end, "")
            return end
        if tok.value == "*":
            k = j + 1
            alias = None
            if self.tok(k).value == "as":
                alias = self.tok(k + 1).value
                k += 2
            k = self.expect(k, "from")
            dep, _ = self.specifier(k)
            if alias is None:
                self.stars.append(dep)
            else:
                index = len(self.reexport_deps)
                self.reexport_deps.append(dep)
                self.exports[alias.strip("\"'")] = f"__diesel_deps__[{index}]"
            end = self.statement_end(k + 1)
            self.replace(export.start, self.toks[end - 1].end, "")
            return end
        raise self.error(tok, f"SyntaxError: unexpected token after export: {tok.value!r}")

    def export_default(self, i: int) -> int:
        export, default = self.toks[i], self.toks[i + 1]
        j = i + 2
        tok = self.tok(j)
        k = j + (1 if tok.value == "async" and self.tok(j + 1).value == "function" else 0)
        if self.tok(k).value in ("function", "class"):
            name_at = k + 1
            if self.tok(name_at).value == "*":
                name_at += 1
            name = self.tok(name_at)
            if name.kind == "id" and name.value not in ("extends",):
                self.edits.append((export.start, default.end, " " * (default.end - export.start)))
                self.exports["default"] = name.value
                return name_at + 1
            # An anonymous declaration: an expression; end it where its body's brace closes.
            b = name_at
            while self.tok(b).value != "{" or self.tok(b).depth != 0:
                b += 1
            close = b + 1
            while not (self.tok(close).value == "}" and self.tok(close).depth == 0):
                close += 1
            self.edits.append((export.start, default.end, "const $dflt$ ="))
            self.edits.append((self.toks[close].end, self.toks[close].end, ";"))
            self.exports["default"] = "$dflt$"
            return close + 1
        self.edits.append((export.start, default.end, "const $dflt$ ="))
        self.exports["default"] = "$dflt$"
        return j

    def declarators(self, j: int) -> int:
        """Names bound by `const|let|var a = 1, {b, c: d} = e, [f] = g`; returns the index after."""
        toks = self.toks
        while True:
            j = self.binding(j)
            # Skip the initializer up to a `,` or the end of the statement at depth 0.
            while j < len(toks):
                tok = toks[j]
                if tok.depth == 0 and tok.value == ";":
                    return j + 1
                if tok.depth == 0 and tok.value == ",":
                    j += 1
                    break
                prev = toks[j - 1]
                if tok.depth == 0 and tok.newline and tok.kind in ("id", "str", "tpl") and (
                        prev.kind in ("id", "str", "tpl", "re") or prev.value in (")", "]", "}")) and (
                        prev.kind != "id" or prev.value not in _REGEX_AFTER_WORDS):
                    return j
                j += 1
            else:
                return j

    def binding(self, j: int) -> int:
        tok = self.tok(j)
        if tok.kind == "id":
            self.exports[tok.value] = tok.value
            return j + 1
        if tok.value in ("{", "["):
            return self.pattern(j)
        raise self.error(tok, f"SyntaxError: unexpected token in an export: {tok.value!r}")

    def pattern(self, j: int) -> int:
        """A destructuring pattern at j (`{` or `[`); records its names."""
        open_tok = self.toks[j]
        depth = open_tok.depth + 1
        closer = "}" if open_tok.value == "{" else "]"
        j += 1
        while True:
            tok = self.tok(j)
            if tok.value == closer and tok.depth == depth - 1:
                return j + 1
            if tok.value == ",":
                j += 1
                continue
            if tok.value == "." and self.tok(j + 1).value == "." and self.tok(j + 2).value == ".":
                j += 3
                continue
            if open_tok.value == "{":
                # key [: target] [= default]
                after = self.tok(j + 1)
                if after.value == ":":
                    j = self.binding(j + 2)
                elif tok.value == "[":  # computed key
                    while not (self.tok(j).value == "]" and self.tok(j).depth == depth):
                        j += 1
                    j = self.binding(self.expect(j + 1, ":"))
                else:
                    self.exports[tok.value] = tok.value
                    j += 1
            else:
                j = self.binding(j)
            if self.tok(j).value == "=":
                j += 1
                while not (self.tok(j).depth == depth and self.tok(j).value in (",", closer)) \
                        and not (self.tok(j).depth == depth - 1 and self.tok(j).value == closer):
                    j += 1


def _load_modules(path: Path, name: str) -> list[_Module]:
    """Read and rewrite the script and the helpers it imports; dependencies come first."""
    root = path.resolve().parents[len(Path(name).parts) - 1]
    order: list[_Module] = []
    seen: dict[str, _Module | None] = {}  # None while being loaded (cycle detection)

    def module_id(file: Path) -> str:
        return file.relative_to(root).as_posix()

    def load(file: Path) -> _Module:
        mid = module_id(file)
        try:
            source = file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ScriptError(f"{file}: cannot be read: {exc}") from None
        module = _Module(mid, file, source.replace("\r\n", "\n"))
        seen[mid] = None

        def resolve(spec: str, tok: _Tok) -> str:
            if not spec.startswith(("./", "../")):
                raise rewriter.error(tok, f"import {_js_string(spec)} is not allowed: a script may only import "
                                          "helper modules by a relative path (\"./_util.js\"); the sandbox has no "
                                          "file system, network or environment modules")
            target = (file.parent / spec).resolve()
            if target.suffix != ".js" and not target.is_file():
                target = target.with_name(target.name + ".js")
            try:
                target.relative_to(root)
            except ValueError:
                raise rewriter.error(tok, f"import {_js_string(spec)} is not allowed: it is outside the served "
                                          f"folder {root}") from None
            if target.suffix != ".js":
                raise rewriter.error(tok, f"import {_js_string(spec)}: only .js modules can be imported")
            if not target.is_file():
                raise rewriter.error(tok, f"import {_js_string(spec)}: no such module ({target})")
            dep = module_id(target)
            if dep in seen:
                if seen[dep] is None:
                    raise rewriter.error(tok, f"import {_js_string(spec)}: circular imports are not supported")
            else:
                load(target)
            return dep

        rewriter = _Rewriter(module, resolve)
        module.code = rewriter.run()
        seen[mid] = module
        order.append(module)
        return module

    load(path.resolve())
    return order


# ---- room counts: one listener per hub, fanned out to its scripts --------------------------------

class _HubLink:
    """The last known member count of every room, and the JS scripts to tell about changes."""

    def __init__(self, hub: Hub) -> None:
        #: Not redundant with the hub: rooms with members only on other nodes are known here
        #: alone (the Bus protocol cannot list them), and a script loaded later needs their counts.
        self.counts: dict[str, int] = {}
        self.scripts: list[JsScript] = []
        hub.count_listeners.append(self.changed)

    def changed(self, room: str, members: int) -> None:
        if members:
            self.counts[room] = members
        else:
            self.counts.pop(room, None)
        for script in self.scripts:
            dirty = script._dirty
            dirty[room] = members
            script._entry.stale = True
            if len(dirty) == _MAX_DIRTY:
                # A script that gets no calls while rooms churn elsewhere: push the counts now
                # rather than let them pile up.
                script._loop.call_soon(script._push_counts)


_links: weakref.WeakKeyDictionary[Any, _HubLink] = weakref.WeakKeyDictionary()


def _link(hub: Hub) -> _HubLink:
    link = _links.get(hub)
    if link is None:
        link = _links[hub] = _HubLink(hub)
    return link


def _size(n: int) -> str:
    return f"{n >> 20} MiB" if n >= 1 << 20 and not n % (1 << 20) else f"{n} bytes"


def _fix_text(text: str) -> str:
    """Lone surrogates (JSON can carry them out of the engine) become U+FFFD, as browsers do."""
    return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


# ---- the CPU-time limit without a clock() per call -------------------------------------------------
#
# quickjs-ng's `set_time_limit` reads the process CPU clock at every entry into the engine: a
# system call of about 0.5 us, a third of a short handler call. Instead, when the engine's C API is
# reachable, each script installs a permanent interrupt handler (`JS_SetInterruptHandler`), which
# the engine calls every 10,000 or so operations, also across calls. It compares the loop thread's
# CPU time with what it was when it first saw the current entry (`JsScript._entry.entries` counts them):
# the same budget per call, give or take those 10,000 operations, at no cost per call.
#
# The binding does not expose the JSRuntime pointer; it is the first field after the object header
# of its Context, which is checked with JS_GetRuntimeOpaque (the binding stores the Context there).
# If anything does not match, the script falls back to `set_time_limit`.

_INTERRUPT_HANDLER = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p)
try:
    import _quickjs

    _engine = ctypes.CDLL(_quickjs.__file__)
    _engine.JS_GetRuntimeOpaque.restype = ctypes.c_void_p
    _engine.JS_GetRuntimeOpaque.argtypes = [ctypes.c_void_p]
    _engine.JS_SetInterruptHandler.restype = None
    _engine.JS_SetInterruptHandler.argtypes = [ctypes.c_void_p, _INTERRUPT_HANDLER, ctypes.c_void_p]
except (ImportError, OSError, AttributeError):  # pragma: no cover - another build of the binding
    _engine = None

_watched: dict[int, weakref.ref[JsScript]] = {}
_watch_keys = itertools.count(1)


@_INTERRUPT_HANDLER
def _on_interrupt(rt: int, opaque: int) -> int:
    """Runs on the loop thread inside the engine (ctypes takes the GIL back for it)."""
    ref = _watched.get(opaque)
    script = ref() if ref is not None else None
    if script is None:
        return 0
    now = time.thread_time()
    if script._entry.entries != script._seen_entry:
        script._seen_entry = script._entry.entries
        script._entry_cpu = now
        return 0
    return 1 if now - script._entry_cpu >= script._timeout else 0


def _runtime_of(ctx: Any) -> int | None:
    """The JSRuntime* of a quickjs.Context, verified; None if it cannot be found safely."""
    if _engine is None:
        return None
    try:
        rt = ctypes.c_void_p.from_address(id(ctx) + object.__basicsize__).value
        if rt and _engine.JS_GetRuntimeOpaque(rt) == id(ctx):
            return rt
    except Exception:  # pragma: no cover - defensive
        pass
    return None


# ---- the script --------------------------------------------------------------------------------

class JsScript:
    """One JavaScript handler script in its own quickjs-ng context."""

    def __init__(self, path: Path, name: str, hub: Hub) -> None:
        self.path = path
        self.name = name
        self.hub = hub
        self._loop = hub.loop
        self._log = logging.getLogger("dieselengine.script." + name)
        self._lines = _LineMap()
        self._live: dict[int, Session] = {}
        self._next_handle = 0
        self._room_names: list[str] = []
        self._timers: dict[int, asyncio.TimerHandle] = {}
        self._promises: dict[int, asyncio.Future[None]] = {}
        self._dirty: dict[str, int] = {}
        self._closed: list[int] = []
        #: The entry the wire calls for this script's messages itself (`_wire.Entry`); its `stale`
        #: is set while the engine must hear of changes first, and `entries` counts every entry into
        #: the engine (see _on_interrupt).
        self._entry = Entry(K_SEND)
        self._unloaded = False
        self._jobs_scheduled = False
        self._tick_jobs = True
        self._wants_headers = True
        self._wants_params = True
        self._link: _HubLink | None = None
        #: What the interrupt handler last saw of the entries into the engine (see _on_interrupt).
        self._seen_entry = -1
        self._entry_cpu = 0.0
        self._watch_key = 0
        self._runtime: int | None = None
        self._ctx: Any = None
        self._api: Any = None
        self._message: Any = None
        self._message_binary: Any = None
        self._open: Any = None
        self._known: Any = None
        self._close: Any = None
        settings = hub.settings
        self._timeout = settings.script_timeout
        self._memory = settings.script_memory
        self._stack = settings.script_stack

    # -- loading ---------------------------------------------------------------------------------

    @classmethod
    def load(cls, path: Path, name: str, hub: Hub) -> JsScript:
        modules = _load_modules(path, name)
        script = cls(path, name, hub)
        try:
            script._start(modules)
        except BaseException:
            script.unload()
            raise
        return script

    def _start(self, modules: list[_Module]) -> None:
        ctx = self._ctx = quickjs.Context()
        ctx.set_memory_limit(self._memory)
        ctx.set_max_stack_size(self._stack)
        rt = _runtime_of(ctx)
        if rt is not None:
            self._runtime = rt
            self._watch_key = next(_watch_keys)
            _watched[self._watch_key] = weakref.ref(self)
            _engine.JS_SetInterruptHandler(rt, _on_interrupt, self._watch_key)
        else:
            ctx.set_time_limit(self._timeout)  # reads the CPU clock at every entry
        api = ctx.eval(_PRELUDE)
        self._api = api
        self._new_session = api("newSession")
        self._export_attrs = api("exportAttrs")
        self._drain = api("drain")
        self._fire_fn = api("fire")
        self._reset = api("reset")
        self._refetch = api("refetch")
        link = self._link = _link(self.hub)
        counts = dict(link.counts)
        for room in self.hub.rooms:
            counts[room] = self.hub.members(room)
        api("init")(json.dumps([counts, []]))
        link.scripts.append(self)

        # Scripts that never mention async code need no promise-job pass once per loop iteration,
        # and the handshake's headers and parameters are copied into the context only for scripts
        # that read them (or could, through eval): an idle session costs less that way.
        sources = [m.source for m in modules]
        self._tick_jobs = any(re.search(r"\b(async|await|eval|Function|Promise|then)\b", s) for s in sources)
        dynamic = any(re.search(r"\b(eval|Function)\b", s) for s in sources)
        self._wants_headers = dynamic or any("getHeader" in s for s in sources)
        self._wants_params = dynamic or any("getParameter" in s for s in sources)
        settled = api("settled")
        offset = _PRELUDE_LINES + 10
        for module in modules:
            lines = module.code.count("\n") + 1
            self._lines.ranges.append((offset, lines, module.id))
            self._entry.entries += 1
            try:
                promise = ctx.module("\n" * offset + module.code)
            except quickjs.JSException as exc:
                raise ScriptError(self._load_error(str(exc), module)) from None
            probe = settled(promise)
            self._run_jobs()
            state = probe()
            if state != "ok":
                self._flush_after_error(None, None)  # what it logged before failing
                if state == "pending":
                    raise ScriptError(f"{module.path}: top-level await did not settle while loading")
                raise ScriptError(self._load_error(state, module))
            offset += lines + 10
        try:
            mask = api("bindHooks")(modules[-1].id)
        except quickjs.JSException as exc:
            raise ScriptError(f"{self.path}: {str(exc).splitlines()[0]}") from None
        self._flush(self._drain(None, 0), None, None)
        self._open = api("openSession")
        self._known = api("known")
        self._message = api("callMessage") if mask & 2 else None
        if not self._tick_jobs:  # a script with async code needs a promise-job pass after each call
            self._entry.function = self._message
        self._message_binary = api("callMessageBinary") if mask & 2 else None
        self._close = api("callClose")

    def _load_error(self, text: str, module: _Module) -> str:
        """`file:line:column: SyntaxError: ...` (and the stack, for an error thrown while loading)."""
        first = text.strip().split("\n")[0]
        where = self._lines.first_location(text)
        if where is None:
            return f"{module.path}: {first}"
        stack = "\n".join(self._lines.locate(text).split("\n")[1:])
        located = f"{self._full_path(where)}: {first}"
        if stack and not first.startswith("SyntaxError"):
            located += "\n" + stack
        return located

    def _full_path(self, where: str) -> str:
        """`name:line:col` with the module's path as the user gave it to `diesel`."""
        file, line, column = where.rsplit(":", 2)
        root = self.path.parents[len(Path(self.name).parts) - 1]
        return f"{root / file}:{line}:{column}"

    # -- hooks -----------------------------------------------------------------------------------

    def call(self, hook: Hook, session: Session, message: Message | None) -> Awaitable[object] | None:
        if hook == "message":
            state = session.runtime_state
            if self._message is None or state is None:
                return None
            sync, count = self._sync() if self._entry.stale else _NO_SYNC
            self._entry.entries += 1
            try:
                if type(message) is str:
                    result = self._message(state, message, sync, count)
                else:
                    result = self._message_binary(state, base64.b64encode(message).decode("ascii"), sync, count)
            except quickjs.JSException as exc:
                raise self._failed(exc, session, message) from None
            return self._message_result(result, session, message)  # type: ignore[arg-type]
        if hook == "open":
            return self._call_open(session)
        return self._call_close(session)

    def finish(self, session: Session, message: Message, result: Any, failed: bool) -> Awaitable[object] | None:
        """The rest of a message the wire handed to this script's entry itself: `result` is what
        the engine returned, or the error it raised when `failed`."""
        if failed:
            raise self._failed(result, session, message)
        return self._message_result(result, session, message)

    def _message_result(self, result: Any, session: Session, message: Message) -> Awaitable[object] | None:
        # The common results first: nothing, one broadcast/send of the message, one op with a text.
        if result is None:
            pass
        elif type(result) is int:
            if result & 3 == K_SEND:
                session.send(message)
            else:
                self.hub.broadcast(self._room_names[result >> 2], message,
                                   session if result & 3 == K_EXCEPT else None)
        elif result[0] != "[":
            self._short(result, session)  # one send or broadcast of a new text, a join or a leave
        else:
            return self._result(result, session, message)
        if self._tick_jobs:  # spares scripts without async code a call on the hottest path
            self._maybe_tick()
        return None

    def _call_open(self, session: Session) -> Awaitable[object] | None:
        """The session's object in the context and its onOpen, in one entry into the engine."""
        handle = self._next_handle = self._next_handle + 1
        session.runtime_state = handle
        self._live[handle] = session
        session.conn.direct(self._entry, handle)
        text, query, headers = self._handshake_data(session)
        entry = self._entry
        sync, count = self._sync() if entry.stale else _NO_SYNC
        entry.entries += 1
        try:
            result = self._open(handle, text, query, headers, sync, count)
        except quickjs.JSException as exc:
            error = self._failed(exc, session, None)
            self._entry.entries += 1
            try:
                made = self._known(handle)
            except quickjs.JSException:
                made = False
            if not made:  # it failed before onOpen (out of memory): the session has no object
                self._live.pop(handle, None)
                session.runtime_state = None
                session.conn.direct(None, None)
            raise error from None
        if result is None:
            if self._tick_jobs:
                self._maybe_tick()
            return None
        return self._result(result, session, None)

    def _handshake_data(self, session: Session) -> tuple[str, str | None, str]:
        """What a session's object is built from: "id\0addr\0path" (the prelude's `requestOf`),
        then the query (JSON) and the headers, for scripts that read them."""
        request = session.request
        text = f"{session.id}\0{request.remote_addr}\0{request.path}"
        query = None
        if request.query and self._wants_params:
            query = json.dumps({k: v[0] for k, v in parse_qs(request.query, keep_blank_values=True).items()})
        headers = "\n".join(f"{k}\0{v}" for k, v in request.headers.items()) if self._wants_headers else ""
        return text, query, headers

    def _call_close(self, session: Session) -> Awaitable[object] | None:
        handle = session.runtime_state
        if handle is None:
            return None
        closed = self._closed
        if closed and closed[-1] == handle:
            # onClose marks its own session closed: no need to send the handle along.
            closed.pop()
            if not closed and not self._dirty:
                self._entry.stale = False
        sync, count = self._sync() if self._entry.stale else _NO_SYNC
        self._entry.entries += 1
        try:
            result = self._close(handle, sync, count)
        except quickjs.JSException as exc:
            raise self._failed(exc, session, None) from None
        if result is None:
            self._maybe_tick()
            return None
        return self._result(result, session, None)

    def _result(self, result: Any, session: Session, message: Message | None) -> Awaitable[object] | None:
        """A hook's result other than None or an int: a short string (one op) or JSON."""
        if type(result) is not str or result[:1] != "[":
            if type(result) is str:
                self._short(result, session)
            self._maybe_tick()
            return None
        status, pid, ops = json.loads(result)
        future = None
        if status & S_PROMISE:
            future = self._loop.create_future()
            self._promises[pid] = future
        if ops:
            self._apply(ops, session, message)
        if status & S_JOBS:
            self._run_jobs()
        else:
            self._maybe_tick()
        if future is None:
            return None
        if future.done():
            exc = future.exception()
            if exc is not None:
                raise exc
            return None
        return future

    def _short(self, result: str, session: Session) -> None:
        """One op of the calling session: "code * 2**32 + length:text", a send or broadcast of a new
        text, or a join or leave of the room the text names."""
        head, _, text = result.partition(":")
        value = int(head)
        if len(text) != value & 0xFFFFFFFF:
            text = self._full_text(text, value & 0xFFFFFFFF)
        code = value >> 32
        kind = code & 3
        if kind == K_SEND:
            session.send(text)
        elif kind:
            self.hub.broadcast(self._room_names[code >> 2], text, session if kind == K_EXCEPT else None)
        elif code & M_LEAVE:
            self.hub.leave(session, text)
        else:
            self.hub.join(session, text)

    def _full_text(self, text: str, length: int) -> str:
        """The engine counts UTF-16 units, Python code points; when they differ by more than the
        astral characters the text had a U+0000 and was cut short: fetch it again, as JSON."""
        if len(text.encode("utf-16-le")) >> 1 == length:
            return text
        return _fix_text(json.loads(self._refetch()))

    def _failed(self, exc: quickjs.JSException, session: Session | None, message: Message | None) -> JsError:
        """A call threw: run what it queued before the error, return the located error."""
        error = JsError(self._describe(str(exc)))
        self._flush_after_error(session, message)
        return error

    def _flush_after_error(self, session: Session | None, message: Message | None) -> None:
        self._entry.entries += 1
        try:
            queued = self._drain(None, 0)
        except quickjs.JSException:
            self._reset()  # out of memory even for that: drop what was queued
            return
        self._flush(queued, session, message)

    def _flush(self, queued: str | None, session: Session | None, message: Message | None) -> None:
        if queued is None:
            return
        status, _, ops = json.loads(queued)
        if ops:
            self._apply(ops, session, message)
        if status & S_JOBS:
            self._run_jobs()

    # -- the outbox ------------------------------------------------------------------------------

    def _apply(self, ops: list[Any], session: Session | None, message: Message | None) -> None:
        """Execute queued host operations in order. A bad operation is logged and skipped."""
        live = self._live
        hub = self.hub
        i, n = 0, len(ops)
        while i < n:
            op = ops[i]
            arity = _ARITY.get(op)
            if arity is None:
                self._log.error("internal: unknown outbox operation %r", op)
                return
            args = ops[i + 1:i + 1 + arity]
            i += 1 + arity
            try:
                if op == OP_BCAST or op == OP_BCAST_BIN or op == OP_BCAST_MSG:
                    target = live.get(args[0])
                    payload: Message
                    if op == OP_BCAST:
                        payload = args[2]
                    elif op == OP_BCAST_BIN:
                        payload = base64.b64decode(args[2])
                    else:
                        payload = message  # type: ignore[assignment]
                    skip = target if args[-1] else None
                    try:
                        hub.broadcast(args[1], payload, skip)
                    except UnicodeEncodeError:
                        hub.broadcast(args[1], _fix_text(payload), skip)  # type: ignore[arg-type]
                elif op == OP_SEND or op == OP_SEND_BIN or op == OP_SEND_MSG:
                    target = live.get(args[0])
                    if target is None:
                        continue
                    if op == OP_SEND:
                        try:
                            target.send(args[1])
                        except UnicodeEncodeError:
                            target.send(_fix_text(args[1]))
                    elif op == OP_SEND_BIN:
                        target.send(base64.b64decode(args[1]))
                    else:
                        target.send(message)  # type: ignore[arg-type]
                elif op == OP_JOIN:
                    target = live.get(args[0])
                    if target is not None:
                        hub.join(target, args[1])
                elif op == OP_LEAVE:
                    target = live.get(args[0])
                    if target is not None:
                        hub.leave(target, args[1])
                elif op == OP_LOG:
                    self._log.log(args[0], "%s", self._lines.locate(args[1]) if "<input>:" in args[1] else args[1])
                elif op == OP_TIMER:
                    timer_id, ms = args
                    old = self._timers.pop(timer_id, None)
                    if old is not None:
                        old.cancel()
                    if not self._unloaded:
                        self._timers[timer_id] = self._loop.call_later(ms / 1000, self._fire, timer_id)
                elif op == OP_CLEAR:
                    old = self._timers.pop(args[0], None)
                    if old is not None:
                        old.cancel()
                elif op == OP_CLOSE:
                    target = live.get(args[0])
                    if target is not None:
                        # The wire cuts the reason to 123 bytes on a character boundary.
                        target.close(int(args[1]), str(args[2]))
                elif op == OP_SETTLE:
                    future = self._promises.pop(args[0], None)
                    if future is not None and not future.done():
                        if args[1]:
                            future.set_result(None)
                        else:
                            future.set_exception(JsError(self._describe(args[2])))
                elif op == OP_ROOM_ID:
                    room_id, room = args
                    names = self._room_names
                    if room_id == len(names):
                        names.append(room)
                    elif room_id < len(names):
                        names[room_id] = room
            except Exception:
                self._log.exception("internal: outbox operation %r failed", op)

    def _sync(self) -> tuple[str, int]:
        """What changed since the last call: room counts and sessions that started closing. The
        common case, one room's count, goes as (room, count), the rest as (JSON, -1)."""
        self._entry.stale = False
        dirty = self._dirty
        self._dirty = {}
        if len(dirty) == 1 and not self._closed:
            ((room, members),) = dirty.items()
            if room.isascii():  # the binding cannot pass a lone surrogate, which JSON can
                return room, members
        text = json.dumps([dirty, self._closed])
        self._closed = []
        return text, -1

    def _push_counts(self) -> None:
        if self._unloaded or not self._entry.stale:
            return
        self._entry.entries += 1
        try:
            queued = self._drain(*self._sync())
        except quickjs.JSException as exc:
            self._log.error("internal: room counts could not be updated: %s", str(exc).splitlines()[0])
            return
        self._flush(queued, None, None)

    # -- promise jobs and timers -----------------------------------------------------------------

    def _maybe_tick(self) -> None:
        """After a call: scripts that may use promises get a promise-job pass this iteration."""
        if self._tick_jobs and not self._jobs_scheduled:
            self._schedule_jobs()

    def _schedule_jobs(self) -> None:
        self._jobs_scheduled = True
        self._loop.call_soon(self._tick)

    def _tick(self) -> None:
        self._jobs_scheduled = False
        if not self._unloaded:
            self._run_jobs()

    def _run_jobs(self) -> None:
        """Run pending promise jobs (each under the time limit), then what they queued."""
        ctx = self._ctx
        ran = 0
        if self._entry.stale:
            self._flush(self._drain(*self._sync()), None, None)
        while True:
            self._entry.entries += 1
            try:
                if not ctx.execute_pending_job():
                    break
            except quickjs.JSException as exc:
                self.hub.stats.handler_errors += 1
                self._log.error("uncaught error in a promise job\n%s", self._describe(str(exc)))
            ran += 1
            if ran >= _MAX_JOBS:
                # A promise loop that never ends must not stall the server: come back next iteration.
                if not self._jobs_scheduled:
                    self._schedule_jobs()
                break
        if ran:
            try:
                queued = self._drain(None, 0)
            except quickjs.JSException:
                self._reset()
                return
            self._flush(queued, None, None)

    def _fire(self, timer_id: int) -> None:
        if self._unloaded:
            return
        self._timers.pop(timer_id, None)
        sync, count = self._sync() if self._entry.stale else _NO_SYNC
        self._entry.entries += 1
        try:
            queued = self._fire_fn(timer_id, sync, count)
        except quickjs.JSException as exc:
            self.hub.stats.handler_errors += 1
            self._log.error("uncaught error in a timer callback\n%s", self._describe(str(exc)))
            self._flush_after_error(None, None)
            return
        self._flush(queued, None, None)
        self._maybe_tick()

    # -- errors ----------------------------------------------------------------------------------

    def _describe(self, text: str) -> str:
        text = self._lines.locate(text)
        if text.strip() == "null":
            # The engine could not even allocate the error object: the memory limit was hit
            # (possibly while it was throwing another error, e.g. the time limit's).
            text = "InternalError: out of memory"
        first, _, rest = text.partition("\n")
        if first.startswith("InternalError: interrupted"):
            first += f" (the call used more than its {self._timeout:g} s of CPU time: --script-timeout)"
        elif first.startswith("InternalError: out of memory"):
            first += f" (the script reached its memory limit of {_size(self._memory)}: --script-memory)"
        elif first.startswith("RangeError: Maximum call stack size exceeded"):
            first += f" (stack limit {_size(self._stack)})"
            frames = rest.split("\n")
            if len(frames) > 6:
                rest = "\n".join(frames[:6] + ["    ..."])
        return first + ("\n" + rest if rest else "")

    def describe_error(self, exc: BaseException) -> str:
        if isinstance(exc, JsError):
            return str(exc)
        if isinstance(exc, quickjs.JSException):
            return self._describe(str(exc))
        import traceback

        return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)).rstrip()

    # -- lifecycle -------------------------------------------------------------------------------

    def closing(self, session: Session) -> None:
        """Called once, when the session stops being open (server close, client close, lost
        connection): from the next call into the context its isOpen() reads false, including in
        an onMessage the dispatcher already had queued, and in timers."""
        handle = session.runtime_state
        if handle is not None and handle in self._live:
            self._closed.append(handle)
            self._entry.stale = True

    def release(self, session: Session) -> None:
        handle = session.runtime_state
        if handle is not None:
            self._live.pop(handle, None)
            session.runtime_state = None

    def adopt(self, old: Script, sessions: Iterable[Session]) -> None:
        """Reload: recreate each live session in this context with its attributes (as JSON) and
        rooms (which live in the hub and are untouched)."""
        for session in sessions:
            old_handle = session.runtime_state
            attrs = None
            if isinstance(old, JsScript) and old_handle is not None and old._ctx is not None:
                try:
                    attrs = old._export_attrs(old_handle)
                    old._flush(old._drain(None, 0), None, None)
                except quickjs.JSException as exc:
                    self._log.warning("reload: the attributes of session %s are lost: %s", session.id,
                                      str(exc).splitlines()[0])
            handle = self._next_handle = self._next_handle + 1
            rooms = json.dumps(sorted(room.name for room in session.rooms))
            text, query, headers = self._handshake_data(session)
            self._entry.entries += 1
            try:
                self._new_session(handle, text, query, headers, attrs, rooms, session.is_open())
            except quickjs.JSException as exc:
                self._log.error("reload: session %s cannot be carried over: %s", session.id, self._describe(str(exc)))
                session.runtime_state = None
                session.conn.direct(None, None)
                continue
            session.runtime_state = handle
            self._live[handle] = session
            session.conn.direct(self._entry, handle)

    def unload(self) -> None:
        """Stop its timers, abandon its pending async hooks, forget the context."""
        if self._unloaded:
            return
        self._unloaded = True
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        for future in self._promises.values():
            future.cancel()
        self._promises.clear()
        if self._link is not None and self in self._link.scripts:
            self._link.scripts.remove(self)
        if self._watch_key:
            _watched.pop(self._watch_key, None)
            if self._runtime is not None and self._ctx is not None:
                _engine.JS_SetInterruptHandler(self._runtime, _INTERRUPT_HANDLER(), None)
        self._live.clear()
        self._ctx = None
        self._api = self._new_session = self._export_attrs = self._drain = self._fire_fn = self._known = None
        self._open = self._message = self._message_binary = self._close = None
        self._entry.function = None
