"""The engine's hottest entries (a session's open, each message, its close) called through our own
extension (`_direct.c`) instead of the binding's `Object.__call__`: the same call, without about
1,600 instructions of per-call work (bench/RESULTS.md). Where the extension is not built or the
binding's structures do not check out, the binding's own object is used: same results, slower."""

from __future__ import annotations

from typing import Any

import _quickjs

try:
    from . import _direct

    _direct.load(_quickjs.__file__, _quickjs.Context, _quickjs.Object, _quickjs.JSException,
                 _quickjs.StackOverflow)
except (ImportError, OSError, AttributeError):  # not built here, or another build of the binding
    _direct = None  # type: ignore[assignment]


def fast(ctx: Any, function: Any) -> Any:
    """`function` (the binding's object for a function of `ctx`) as a faster callable if possible."""
    if _direct is None:
        return function
    try:
        return _direct.Function(ctx, function)
    except ValueError:
        return function
