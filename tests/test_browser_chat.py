"""The examples' chat page in a real Chromium: two people chat, one leaves, the server restarts
and both pages reconnect by themselves (dieselengine's client)."""

from __future__ import annotations

from browser import browser  # noqa: F401  (the fixture)
from conftest import ROOT

TIMEOUT = 20_000  # ms: a shared machine


def join(browser, server, name):  # noqa: F811
    page = browser.new_context().new_page()
    page.set_default_timeout(TIMEOUT)
    page.goto(f"http://127.0.0.1:{server.port}/")
    page.fill("#name", name)
    page.click("#login button")
    page.wait_for_selector("#status.open")
    return page


def say(page, text):
    page.fill("#text", text)
    page.click("#say button")


def wait_text(page, selector, text):
    try:
        page.wait_for_function("([s, t]) => document.querySelector(s).textContent.includes(t)", arg=[selector, text])
    except Exception:
        raise AssertionError(f"{selector} never showed {text!r}; the page showed:\n{page.inner_text('body')}") from None


def test_two_pages_chat_leave_and_reconnect_after_a_restart(browser, serve):  # noqa: F811
    server = serve(ROOT / "examples")
    alice = join(browser, server, "alice")
    wait_text(alice, "#log", "You joined as alice.")
    wait_text(alice, "#online", "1")
    bob = join(browser, server, "bob")
    wait_text(alice, "#log", "bob joined")
    wait_text(alice, "#online", "2")
    wait_text(bob, "#online", "2")

    say(bob, "hello alice")
    wait_text(alice, "#log", "bob: hello alice")
    line = alice.locator("#log li", has_text="hello alice")
    assert line.locator("time").get_attribute("datetime")  # a message shows its time
    say(alice, "hi bob")
    wait_text(bob, "#log", "alice: hi bob")

    bob.close()
    wait_text(alice, "#log", "bob left")
    wait_text(alice, "#online", "1")

    carol = join(browser, server, "carol")
    wait_text(alice, "#online", "2")
    assert server.stop() == 0
    for page in (alice, carol):
        page.wait_for_selector("#status.reconnecting")
    serve(ROOT / "examples", port=server.port)
    for page in (alice, carol):
        page.wait_for_selector("#status.open")
        wait_text(page, "#log", "Reconnected as")
        wait_text(page, "#online", "2")
    say(alice, "anyone there?")
    wait_text(carol, "#log", "alice: anyone there?")
    say(carol, "back again")
    wait_text(alice, "#log", "carol: back again")
    wait_text(alice, "#online", "2")
