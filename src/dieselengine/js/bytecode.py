"""The server's own JavaScript compiled once per process and loaded into each context as bytecode.

Every script context needs the web APIs (js/web/*.js) and the CommonJS runtime. Compiled from
source in each context, they cost about 4 ms and 270 KiB of engine memory per script, most of it
the source text and line tables the engine keeps for every function. Compiled once with
`JS_Eval(COMPILE_ONLY)`, written with `JS_WriteObject` without source and debug information, and
read into each context with `JS_ReadObject`, they cost a fraction of that (bench/micro/js_context.py).
Their frames have no line numbers, which costs nothing: the server's frames are dropped from the
errors scripts see (locations.py).
"""

from __future__ import annotations

import ctypes
from functools import lru_cache
from typing import Any

import quickjs

from . import cpu_limit
from .modules import _JSValue  # the engine's functions share one JSValue type (modules.py binds JS_Eval)

_EVAL_GLOBAL_COMPILE_ONLY = 1 << 5
_WRITE_BYTECODE_STRIPPED = (1 << 0) | (1 << 4) | (1 << 5)  # BYTECODE | STRIP_SOURCE | STRIP_DEBUG
_READ_BYTECODE = 1 << 0
_TAG_EXCEPTION = 6
_engine = cpu_limit._engine


if _engine is not None:
    _engine.JS_WriteObject.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_size_t), _JSValue, ctypes.c_int]
    _engine.JS_WriteObject.restype = ctypes.c_void_p
    _engine.JS_ReadObject.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t, ctypes.c_int]
    _engine.JS_ReadObject.restype = _JSValue
    _engine.JS_EvalFunction.argtypes = [ctypes.c_void_p, _JSValue]
    _engine.JS_EvalFunction.restype = _JSValue
    _engine.JS_GetGlobalObject.argtypes = [ctypes.c_void_p]
    _engine.JS_GetGlobalObject.restype = _JSValue
    _engine.JS_SetPropertyStr.argtypes = [ctypes.c_void_p, _JSValue, ctypes.c_char_p, _JSValue]
    _engine.JS_SetPropertyStr.restype = ctypes.c_int
    _engine.JS_GetPropertyStr.argtypes = [ctypes.c_void_p, _JSValue, ctypes.c_char_p]
    _engine.JS_GetPropertyStr.restype = _JSValue
    _engine.js_free.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
    _engine.js_free.restype = None


def _context_of(ctx: Any) -> int | None:
    """The JSContext* of a quickjs.Context: the field after its JSRuntime* (see cpu_limit)."""
    if cpu_limit.runtime_of(ctx) is None:
        return None
    return ctypes.c_void_p.from_address(id(ctx) + object.__basicsize__ + ctypes.sizeof(ctypes.c_void_p)).value


@lru_cache(maxsize=8)
def _compile(source: str) -> bytes | None:
    ctx = quickjs.Context()
    cp = _context_of(ctx)
    if cp is None:
        return None
    code = source.encode("utf-8")
    value = _engine.JS_Eval(cp, code, len(code), b"<input>", _EVAL_GLOBAL_COMPILE_ONLY)
    if value.tag == _TAG_EXCEPTION:
        ctx.eval(source)  # raises the error, with its message
        return None
    size = ctypes.c_size_t()
    buffer = _engine.JS_WriteObject(cp, ctypes.byref(size), value, _WRITE_BYTECODE_STRIPPED)
    _engine.JS_FreeValue(cp, value)
    if not buffer:
        return None
    data = ctypes.string_at(buffer, size.value)
    _engine.js_free(cp, buffer)
    return data


def evaluate(ctx: Any, source: str) -> Any:
    """The value of a script of ours in a context, as `ctx.eval(source)` gives it (from bytecode
    when the engine's C API is reachable)."""
    data = _compile(source)
    cp = _context_of(ctx)
    if data is None or cp is None:
        return ctx.eval(source)
    function = _engine.JS_ReadObject(cp, data, len(data), _READ_BYTECODE)
    if function.tag == _TAG_EXCEPTION:
        return ctx.eval(source)
    value = _engine.JS_EvalFunction(cp, function)  # takes the function's reference
    if value.tag == _TAG_EXCEPTION:
        return ctx.eval(source)  # the same error, raised with its message
    world = _engine.JS_GetGlobalObject(cp)
    _engine.JS_SetPropertyStr(cp, world, b"__diesel_value__", value)  # takes the value's reference
    _engine.JS_FreeValue(cp, world)
    result = ctx.get("__diesel_value__")
    ctx.eval("delete globalThis.__diesel_value__")
    return result
