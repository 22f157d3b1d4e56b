"""What a script runtime provides to the core, and how a script file picks its runtime."""

from __future__ import annotations

from collections.abc import Awaitable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol

if TYPE_CHECKING:
    from .hub import Hub
    from .session import Message, Session
    from .upgrade import UpgradeRequest

Hook = Literal["open", "message", "close"]


#: Each hook's name in JavaScript and in Python.
HOOK_NAMES: dict[Hook, tuple[str, str]] = {
    "open": ("onOpen", "on_open"), "message": ("onMessage", "on_message"), "close": ("onClose", "on_close"),
}


def misnamed_hooks(script: str, defined: Iterable[str], python: bool) -> list[str]:
    """Warnings for hooks named in the other language's style (`def onMessage` in a .py file, `export
    function on_message` in a .js one): the server never calls them, and nothing else would say so."""
    names = set(defined)
    warnings = []
    for js, py in HOOK_NAMES.values():
        wrong, right = (js, py) if python else (py, js)
        if wrong in names and right not in names:
            language = "Python" if python else "JavaScript"
            warnings.append(f"{script}: {wrong} is never called: a {language} handler's hook is named {right}")
    return warnings


class ScriptError(Exception):
    """A script could not be loaded; the message says where (file:line:column) and why."""


class Script(Protocol):
    """One loaded handler script. Its module-level state lives as long as this object."""

    #: Route-relative name used to tag its logs, e.g. `games/chess.js`.
    name: str
    path: Path
    #: Whether the script has an upgrade hook (`on_upgrade` / `onUpgrade`).
    upgrades: bool

    def upgrade(self, request: UpgradeRequest) -> Awaitable[object] | None:
        """Run the upgrade hook on the request (which records what it decided); an awaitable when
        the hook is still running (async); raises what the hook raised."""

    def call(self, hook: Hook, session: Session, message: Message | None) -> Awaitable[object] | None:
        """Run a hook if the script defines it. Returns an awaitable when the hook is still running
        (an async handler); raises what the handler raised."""

    def describe_error(self, exc: BaseException) -> str:
        """The error as a log record: message and stack trace with the script's file:line."""

    def closing(self, session: Session) -> None:
        """The session stopped being open (a close started, or the connection dropped)."""

    def release(self, session: Session) -> None:
        """The session is gone (after `on_close`): drop any per-session state."""

    def adopt(self, old: Script, sessions: Iterable[Session]) -> None:
        """Reload: take over the live sessions of the script this one replaces."""

    def unload(self) -> None:
        """The script is no longer used: free its engine."""

    def attributes(self, session: Session) -> dict[str, object]:
        """A session's attributes as JSON can carry them (for the inspector); {} if it has none."""

    def sources(self) -> set[Path]:
        """The files its code was loaded from: itself and what it imports (resolved paths), so that
        --reload reloads a script when one of them changes, and no other."""


def load_script(path: Path, name: str, hub: Hub) -> Script:
    """Load a `.py` or `.js` handler script; raises ScriptError with a located message."""
    if path.suffix == ".py":
        from .python_runtime import PythonScript

        return PythonScript.load(path, name, hub)
    if path.suffix == ".js":
        from .js import JsScript

        return JsScript.load(path, name, hub)
    raise ScriptError(f"{path}: not a handler script (expected .py or .js)")
