"""Where the CPU-time limit stopped a call: the error's stack names the loop that ran.

The engine builds an error's stack from each frame's saved program counter, looking up the
position of the instruction before it (a call saves the counter past itself). A backward jump
consults the interrupt handler without saving it: when the handler stops the call there, the
frame saves the jump's target just before the stack is built, so the stack named the instruction
before the loop's first one, i.e. the code before the loop (`while (true) n++` at the top of a
function was logged at the function's line 1). And a call stopped as it starts, before its frame
exists, has no frame of its own in the stack: an async function resumed by the job queue
(`for (;;) await null`) was mostly stopped there, with no position at all.

So, when the handler stops a call (`interrupting`), it declines when no frame is running yet, at
most MAX_DECLINED times in a row: the next check comes 10,000 checks later, and the job runner
makes one more entry into the engine after the job (`JsScript._run_jobs`), so that a loop of jobs
whose checks come in a period dividing 10,000 has its next one land elsewhere, inside the
function. Otherwise it copies the running frame's first words, and puts the prelude's `limitHook`
where the engine keeps Error.stackTraceLimit, which it converts to a number at the start of every
stack it builds, after the frame saved its counter: the hook's valueOf calls `settle`, which puts
the script's own limit back and, if exactly one word of that frame changed since the copy (the
counter, which the handler had not seen saved), moves that counter past the jump's target. The
stack then names the loop's first instruction, as the engine's own line table has it (an empty
loop body has no position of its own: the code before it is named). Nothing is written to a frame
unless all of this holds and the frame is found among the live ones, and nothing of this runs
unless a call is stopped: it costs an ordinary call nothing.

The engine's structures are reached through two fields found at run time, on a throwaway context
(`layout`): the runtime's current frame is the word before its interrupt handler (found next to the
handler installed; it reads 0 outside calls and names a frame during one), and the context's
stack trace limit is where a value set from JavaScript shows up. Without them, errors are located
as the engine says.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .script import JsScript

_WORD = ctypes.sizeof(ctypes.c_void_p)
#: The words of a frame that are compared (a JSStackFrame has 10 in quickjs-ng 0.16).
_FRAME_WORDS = 8
#: How many checks in a row are let go because no frame is running yet.
MAX_DECLINED = 16
#: A saved counter moves within its function's bytecode.
_NEAR = 1 << 20
#: A JSValue: its payload and its tag (quickjs-ng on 64-bit platforms).
_JSVALUE = ctypes.c_size_t * 2
_TAG_INT = 0


@dataclass(frozen=True)
class Layout:
    """Offsets of the engine's fields: the current frame in a JSRuntime, the stack trace limit (a
    JSValue) in a JSContext."""

    frame: int
    limit: int


def _words(address: int, count: int) -> list[int]:
    return list((ctypes.c_size_t * count).from_address(address))


@lru_cache(maxsize=1)
def layout(handler_address: int) -> Layout | None:
    """The fields, found and checked on a throwaway context; None if either is not found."""
    import quickjs

    from . import bytecode, cpu_limit

    ctx = quickjs.Context()
    rt, cp = cpu_limit.runtime_of(ctx), bytecode._context_of(ctx)
    if rt is None or not cp:
        return None
    key = 0x7EED5EED5EED5EED  # no script's (they count from 1)
    cpu_limit._engine.JS_SetInterruptHandler(rt, cpu_limit._on_interrupt, key)
    try:
        frame = next((i * _WORD for i in range(1, 511) if _words(rt + i * _WORD, 2) == [handler_address, key]), None)
        if frame is None:
            return None
        frame -= _WORD
        depths: list[int] = []

        def probe() -> None:
            live, depth = ctypes.c_void_p.from_address(rt + frame).value or 0, 0
            while live and depth < 8:  # a short chain of frames, ending in NULL
                live, depth = ctypes.c_void_p.from_address(live).value or 0, depth + 1
            depths.append(0 if live else depth)

        ctx.add_callable("probe", probe)
        before = ctypes.c_void_p.from_address(rt + frame).value
        ctx.eval("(function f() { probe(); })()")
        if before or not depths or not depths[0] or ctypes.c_void_p.from_address(rt + frame).value:
            return None

        def holds(offset: int, value: int) -> bool:
            payload, tag = _words(cp + offset, 2)
            return payload & 0xFFFFFFFF == value and tag == _TAG_INT

        ctx.eval("Error.stackTraceLimit = 388817")
        limit = next((i * _WORD for i in range(510) if holds(i * _WORD, 388817)), None)
        ctx.eval("Error.stackTraceLimit = 388818")
        return Layout(frame, limit) if limit is not None and holds(limit, 388818) else None
    finally:
        cpu_limit._engine.JS_SetInterruptHandler(rt, cpu_limit._INTERRUPT_HANDLER(), None)


def hook_of(ctx: Any, name: str) -> tuple[int, int] | None:
    """The prelude's `limitHook`, left at globalThis[name] (removed here), as a JSValue the script
    holds a reference to until `release`."""
    from . import bytecode

    engine, cp = bytecode._engine, bytecode._context_of(ctx)
    if engine is None or not cp:
        return None
    world = engine.JS_GetGlobalObject(cp)
    value = engine.JS_GetPropertyStr(cp, world, name.encode())
    engine.JS_FreeValue(cp, world)
    ctx.eval(f"delete globalThis.{name}")
    if value.tag != -1:  # not an object
        engine.JS_FreeValue(cp, value)
        return None
    return value.ptr, value.tag & ((1 << 64) - 1)  # as the words of a JSValue read


def release(script: JsScript) -> None:
    """Before the context goes: its limit as the script left it, and the hook's reference."""
    from . import bytecode
    from .modules import _JSValue

    disarm(script)
    hook, script._limit_hook = script._limit_hook, None
    if hook is not None and script._context:
        bytecode._engine.JS_FreeValue(script._context, _JSValue(*hook))


def interrupting(script: JsScript, rt: int) -> int:
    """The handler's answer when the script's call is over its CPU time: 1 to stop it now, 0 to
    let it run to its next check (see the module's docstring)."""
    fields = script._fields
    if fields is None:
        return 1
    frame = ctypes.c_void_p.from_address(rt + fields.frame).value
    if not frame and script._declined < MAX_DECLINED:
        script._declined += 1
        script._nudge = True
        return 0
    script._declined = 0
    if frame and script._limit_hook is not None and script._trap is None:
        limit = _JSVALUE.from_address(script._context + fields.limit)
        script._trap = (script._entry.entries, frame, _words(frame, _FRAME_WORDS), tuple(limit))
        limit[0], limit[1] = script._limit_hook
    return 1


def disarm(script: JsScript) -> tuple[int, int, list[int]] | None:
    """Put the script's stack trace limit back if the hook is in its place; the trap it was set for."""
    trap, script._trap = script._trap, None
    if trap is None:
        return None
    limit = _JSVALUE.from_address(script._context + script._fields.limit)  # type: ignore[union-attr]
    limit[0], limit[1] = trap[3]
    return trap[0], trap[1], trap[2]


def settle(script: JsScript, rt: int) -> None:
    """Called by the hook as the engine starts the stack of the error that stopped a call."""
    trap = disarm(script)
    fields = script._fields
    if trap is None or fields is None or not rt or trap[0] != script._entry.entries:
        return
    _, frame, before = trap
    live = ctypes.c_void_p.from_address(rt + fields.frame).value or 0
    for _ in range(4):  # this call's frames, then the stopped one
        if live == frame or not live:
            break
        live = ctypes.c_void_p.from_address(live).value or 0
    if live != frame:
        return
    after = _words(frame, _FRAME_WORDS)
    changed = [i for i in range(_FRAME_WORDS) if after[i] != before[i]]
    if len(changed) != 1:
        return
    i = changed[0]
    saved, was = after[i], before[i]
    if not saved or (was and abs(saved - was) > _NEAR):
        return
    ctypes.c_size_t.from_address(frame + i * _WORD).value = saved + 1
