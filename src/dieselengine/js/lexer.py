"""A small JavaScript lexer: enough to find a module's import and export statements, the
`require("...")` calls of a CommonJS file and its exports, and where a specifier is written.
Strings, template literals (with nested `${}`), comments and regular expressions are skipped
whole; brackets give each token its nesting depth."""

from __future__ import annotations

import re
from dataclasses import dataclass

_IDENT = re.compile(r"[\w$\u0080-\uffff]+")
_REGEX_AFTER_WORDS = frozenset(
    "return typeof instanceof in of new delete void throw case do else yield await".split())


@dataclass
class Tok:
    kind: str  # "id", "str", "tpl", "re", "p" (punctuator)
    value: str
    start: int
    end: int
    depth: int
    newline: bool  # a line break comes before it


def tokenize(src: str) -> list[Tok]:
    """Tokens of a JavaScript source, good enough to find its top-level import/export statements:
    strings, template literals (with nested `${}`), comments and regular expressions are skipped
    whole, brackets give each token its nesting depth."""
    toks: list[Tok] = []
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
            toks.append(Tok("re", src[start:i], start, i, depth, newline))
        elif c in "\"'":
            j = i + 1
            while j < n and src[j] != c and src[j] != "\n":
                j += 2 if src[j] == "\\" else 1
            i = j + 1
            toks.append(Tok("str", src[start:i], start, i, depth, newline))
        elif c == "`":
            i = template(i + 1)
            toks.append(Tok("tpl", src[start:i], start, i, depth, newline))
        elif c == "}" and stack and stack[-1] == "${":
            stack.pop()
            i = template(i + 1)
            toks.append(Tok("tpl", src[start:i], start, i, len(stack), newline))
        elif c in "{([":
            toks.append(Tok("p", c, start, i + 1, depth, newline))
            stack.append(c)
            i += 1
        elif c in "})]":
            if stack:
                stack.pop()
            toks.append(Tok("p", c, start, i + 1, len(stack), newline))
            i += 1
        else:
            match = _IDENT.match(src, i)
            if match:
                i = match.end()
                toks.append(Tok("id", match.group(), start, i, depth, newline))
            else:
                i += 1
                toks.append(Tok("p", c, start, i, depth, newline))
        newline = False
    return toks
