"""Module loading: quickjs-ng's Python binding has no module loader, so imports and exports are
rewritten before evaluation.

`import {a} from "./_util.js"` becomes a lookup of the already evaluated helper's namespace,
`export` declarations register getters. Only relative imports of `.js` files inside the served
folder are allowed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..runtime import ScriptError

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
class Module:
    id: str  # path relative to the served folder, posix
    path: Path
    source: str
    code: str = ""
    #: The names it exports (its own and re-exported ones).
    exports: tuple[str, ...] = ()


def _js_string(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


class _Rewriter:
    """Rewrites one module's top-level import and export statements (see the module docstring).

    Line breaks are kept, so every line keeps its number; `export` keywords become spaces, so
    columns stay right everywhere but on import lines."""

    def __init__(self, module: Module, resolve: Callable[[str, _Tok], str]) -> None:
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


def load_modules(path: Path, name: str) -> list[Module]:
    """Read and rewrite the script and the helpers it imports; dependencies come first."""
    root = path.resolve().parents[len(Path(name).parts) - 1]
    order: list[Module] = []
    seen: dict[str, Module | None] = {}  # None while being loaded (cycle detection)

    def module_id(file: Path) -> str:
        return file.relative_to(root).as_posix()

    def load(file: Path) -> Module:
        mid = module_id(file)
        try:
            source = file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ScriptError(f"{file}: cannot be read: {exc}") from None
        module = Module(mid, file, source.replace("\r\n", "\n"))
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
        module.exports = tuple(rewriter.exports)
        seen[mid] = module
        order.append(module)
        return module

    load(path.resolve())
    return order
