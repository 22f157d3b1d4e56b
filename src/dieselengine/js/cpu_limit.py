"""The CPU-time limit of a script's calls, without a clock() per call."""

from __future__ import annotations

import ctypes
import itertools
import time
import weakref
from typing import TYPE_CHECKING, Any

from . import stopped_frame

if TYPE_CHECKING:
    from .script import JsScript

# quickjs-ng's `set_time_limit` reads the process CPU clock at every entry into the engine: a
# system call of about 0.5 us, a third of a short handler call. Instead, when the engine's C API is
# reachable, each script installs a permanent interrupt handler (`JS_SetInterruptHandler`), which
# the engine calls every 10,000 or so operations, also across calls. It compares the loop thread's
# CPU time with what it was when it first saw the current entry (`JsScript._entry.entries` counts them):
# the same budget per call, give or take those 10,000 operations, at no cost per call.
#
# The binding does not expose the JSRuntime pointer; it is the first field after the object header
# of its Context, which is checked with JS_GetRuntimeOpaque (the binding stores the Context there).
# If anything does not match, the script falls back to `set_time_limit`. Where a call is stopped
# is the handler's to say too (stopped_frame.py).

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
    return stopped_frame.interrupting(script, rt) if now - script._entry_cpu >= script._timeout else 0


def runtime_of(ctx: Any) -> int | None:
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


def watch(script: JsScript, ctx: Any) -> tuple[int, int] | None:
    """Install the interrupt handler for a script's context: (runtime, key) to `unwatch` it with,
    or None when the engine's C API is not reachable (use `set_time_limit` then)."""
    rt = runtime_of(ctx)
    if rt is None:
        return None
    script._fields = stopped_frame.layout(ctypes.cast(_on_interrupt, ctypes.c_void_p).value)
    key = next(_watch_keys)
    _watched[key] = weakref.ref(script)
    _engine.JS_SetInterruptHandler(rt, _on_interrupt, key)
    return rt, key


def unwatch(runtime: int | None, key: int) -> None:
    """Forget a script; with its runtime still alive, remove its handler too."""
    _watched.pop(key, None)
    if runtime is not None:
        _engine.JS_SetInterruptHandler(runtime, _INTERRUPT_HANDLER(), None)
