"""Calls into the engine through our own extension (js/_direct.c): the same results, errors and
callbacks into Python as the binding's own calls, which stay in use wherever it does not apply."""

from __future__ import annotations

import threading

import pytest
import quickjs

from dieselengine.js import direct

pytestmark = pytest.mark.skipif(direct._direct is None, reason="the _direct extension is not built here")

RESULTS = r'''
(kind) => {
  switch (kind) {
    case 0: return undefined;
    case 1: return null;
    case 2: return 42;
    case 3: return -7.25;
    case 4: return true;
    case 5: return "héllo ✓ " + "rope ".repeat(3);
    case 6: return 2n ** 80n;
    case 7: return [1, "two", { three: 3 }];
    case 8: return "";
  }
}
'''


def both(source: str) -> tuple[quickjs.Context, object, object]:
    ctx = quickjs.Context()
    function = ctx.eval(source)
    fast = direct.fast(ctx, function)
    assert type(fast).__name__ == "Function", "the binding's structures did not check out"
    return ctx, function, fast


def test_results_are_converted_as_the_binding_converts_them():
    _, binding, fast = both(RESULTS)
    for kind in range(9):
        expected, got = binding(kind), fast(kind)
        if isinstance(expected, quickjs.Object):
            assert isinstance(got, quickjs.Object) and got.json() == expected.json()
        else:
            assert type(got) is type(expected) and got == expected, kind


def test_arguments_are_converted_as_the_binding_converts_them():
    _, binding, fast = both("(...a) => JSON.stringify(a.map((v) => [typeof v, String(v)]))")
    for args in ((0, -1, 2**31 - 1, 2**40, 1.5, True, False, None), ("", "ünïcode ✓", "a\0b")):
        assert fast(*args) == binding(*args)
    with pytest.raises(TypeError):
        fast(b"bytes")
    ctx, make, _ = both("() => ({ tag: 'mine' })")
    tag = direct.fast(ctx, ctx.eval("(o) => o.tag"))
    assert tag(make()) == "mine"  # an object of the same context passes through as itself


def test_errors_are_raised_as_the_binding_raises_them():
    _, binding, fast = both("(n) => { if (n === 0) throw new TypeError('no zero'); return 1 / n; }")
    with pytest.raises(quickjs.JSException) as by_binding:
        binding(0)
    with pytest.raises(quickjs.JSException) as by_fast:
        fast(0)
    assert str(by_fast.value) == str(by_binding.value)
    assert str(by_fast.value).startswith("TypeError: no zero\n")
    assert fast(4) == 0.25  # the engine goes on after an error

    _, _, recurse = both("function f(n) { return f(n + 1) + 1; } (n) => f(n)")
    with pytest.raises(quickjs.StackOverflow):
        recurse(0)


def test_a_call_can_call_back_into_python_and_into_the_engine_again():
    ctx = quickjs.Context()
    inner = direct.fast(ctx, ctx.eval("(s) => s.toUpperCase()"))
    seen: list[str] = []

    def host(text: str) -> str:
        seen.append(text)
        return inner(text) + "!"

    ctx.add_callable("host", host)
    outer = direct.fast(ctx, ctx.eval("(s) => host(s + ' there') + '?'"))
    assert outer("hi") == "HI THERE!?"
    assert seen == ["hi there"]


def test_the_gil_is_released_while_the_engine_runs():
    """As with the binding: the watchdog thread must run while a script spins."""
    _, _, spin = both("(ms) => { const end = Date.now() + ms; let n = 0; while (Date.now() < end) n++; return n; }")
    ticks = []
    stop = threading.Event()

    def count() -> None:
        while not stop.is_set():
            ticks.append(1)
            stop.wait(0.001)

    thread = threading.Thread(target=count)
    thread.start()
    try:
        before = len(ticks)
        spin(300)
        during = len(ticks) - before
    finally:
        stop.set()
        thread.join()
    assert during > 5


def test_what_is_not_the_bindings_function_stays_as_it_is():
    ctx = quickjs.Context()
    not_a_function = ctx.eval("({})")
    assert direct.fast(ctx, not_a_function) is not_a_function
    other = quickjs.Context()
    function = ctx.eval("() => 1")
    assert direct.fast(other, function) is function  # another context's function
    with pytest.raises(ValueError):
        direct._direct.Function(ctx, lambda: 1)
