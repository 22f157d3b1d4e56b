"""Python handler modules: `on_upgrade`, `on_open`, `on_message`, `on_close`, each optional, `def` or `async def`."""

from __future__ import annotations

import importlib.util
import inspect
import logging
import sys
import traceback
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from .runtime import HOOK_NAMES, Hook, Script, ScriptError, misnamed_hooks

if TYPE_CHECKING:
    from .hub import Hub
    from .session import Message, Session
    from .upgrade import UpgradeRequest

_PACKAGE_DIR = str(Path(__file__).parent)
_HOOKS: dict[Hook, str] = {hook: names[1] for hook, names in HOOK_NAMES.items()}
log = logging.getLogger("dieselengine")


class PythonScript:
    """A Python module run in the server's process: trusted code, no sandbox (use JavaScript for
    untrusted scripts). Its folder is on `sys.path` so it can import its `_helpers`."""

    def __init__(self, path: Path, name: str, module: ModuleType, imported: set[Path] | None = None) -> None:
        self.path = path
        self.name = name
        self._module = module
        self._sources = {path.resolve(), *(imported or ())}
        self._hooks: dict[Hook, Callable[..., Any] | None] = {
            hook: getattr(module, attr, None) for hook, attr in _HOOKS.items()
        }
        self._upgrade: Callable[[UpgradeRequest], Any] | None = getattr(module, "on_upgrade", None)
        self.upgrades = self._upgrade is not None

    @classmethod
    def load(cls, path: Path, name: str, hub: Hub | None = None) -> PythonScript:
        folder = path.parent.resolve()
        _forget_helpers(folder if hub is None else _served_folder(hub.settings.path))
        if str(folder) in sys.path:
            sys.path.remove(str(folder))
        sys.path.insert(0, str(folder))
        module_name = "diesel_script_" + name.replace("/", "__").replace(".", "_")
        spec = importlib.util.spec_from_file_location(module_name, path)
        if spec is None or spec.loader is None:
            raise ScriptError(f"{path}: cannot be loaded as a Python module")
        module = importlib.util.module_from_spec(spec)
        before = set(sys.modules)
        try:
            spec.loader.exec_module(module)
        except SyntaxError as exc:
            where = _relative(exc.filename, path, name)
            raise ScriptError(f"{where}:{exc.lineno}:{exc.offset}: {type(exc).__name__}: {exc.msg}") from None
        except Exception as exc:
            raise ScriptError(f"{name}: failed to load\n{_format(exc)}") from None
        for attr in (*_HOOKS.values(), "on_upgrade"):
            value = getattr(module, attr, None)
            if value is not None and not callable(value):
                raise ScriptError(f"{name}: {attr} must be a function, not {type(value).__name__}")
        for warning in misnamed_hooks(name, vars(module), python=True):
            log.warning("%s", warning)
        served = folder if hub is None else _served_folder(hub.settings.path)
        imported = {Path(file).resolve() for key in set(sys.modules) - before
                    if (file := getattr(sys.modules[key], "__file__", None))
                    and Path(file).resolve().is_relative_to(served)}
        return cls(path, name, module, imported)

    def call(self, hook: Hook, session: Session, message: Message | None) -> Awaitable[object] | None:
        function = self._hooks[hook]
        if function is None:
            return None
        result = function(session) if message is None else function(session, message)
        if result is None or not inspect.isawaitable(result):
            return None
        return result

    def upgrade(self, request: UpgradeRequest) -> Awaitable[object] | None:
        assert self._upgrade is not None
        result = self._upgrade(request)
        return result if result is not None and inspect.isawaitable(result) else None

    def describe_error(self, exc: BaseException) -> str:
        return _format(exc)

    def closing(self, session: Session) -> None:
        """`session.is_open()` reads the session itself; nothing to mirror."""

    def release(self, session: Session) -> None:
        """Attributes live on the session itself; nothing to drop."""

    def adopt(self, old: Script, sessions: Iterable[Session]) -> None:
        """Attributes and rooms live on the sessions, so they carry over as they are."""

    def unload(self) -> None:
        sys.modules.pop(self._module.__name__, None)

    def attributes(self, session: Session) -> dict[str, object]:
        return dict(session.attributes or {})

    def sources(self) -> set[Path]:
        """Itself and the modules of the served folder it imported while loading."""
        return self._sources


def _relative(filename: str | None, path: Path, name: str) -> str:
    """A file as the served folder names it (`games/chess.py`, like JavaScript's locations): the
    script's own route name, a helper's path below the served folder, else the path as it is."""
    if filename is None or Path(filename).resolve() == path.resolve():
        return name
    root = path.resolve().parents[len(Path(name).parts) - 1]
    try:
        return Path(filename).resolve().relative_to(root).as_posix()
    except ValueError:
        return filename


def _served_folder(served: Path) -> Path:
    served = served.resolve()
    return served if served.is_dir() else served.parent


def _forget_helpers(served: Path) -> None:
    """Drop already imported helper modules (`_name`) of the served folder, so that each script imports
    its own folder's helpers (two folders may both have a `_util.py`) and a reload sees a changed
    helper. Each script thus has its own copy of a helper's module state, as in JavaScript."""
    for name, module in list(sys.modules.items()):
        file = getattr(module, "__file__", None)
        if file and name.startswith("_") and Path(file).resolve().is_relative_to(served):
            del sys.modules[name]


def _format(exc: BaseException) -> str:
    """The traceback without the server's own frames in front of the script's."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename.startswith(_PACKAGE_DIR):
        tb = tb.tb_next
    return "".join(traceback.format_exception(type(exc), exc, tb)).rstrip()
