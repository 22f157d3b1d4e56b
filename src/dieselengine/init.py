"""`diesel init DIR`: a ready project that `diesel check`s clean, serves, and passes its own test."""

from __future__ import annotations

import shutil
from pathlib import Path

from .startup import StartupError

TEMPLATE = Path(__file__).parent / "template"


def create(folder: Path) -> int:
    """Copy the template into `folder` (new or empty) and say what to do next."""
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise StartupError(f"{folder}: already exists and is not an empty folder; "
                           "`diesel init` only creates new projects")
    files = sorted(path.relative_to(TEMPLATE) for path in TEMPLATE.rglob("*")
                   if path.is_file() and "__pycache__" not in path.parts)
    for relative in files:
        target = folder / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(TEMPLATE / relative, target)
    print(f"created {folder}: {', '.join(path.as_posix() for path in files)}")
    print("next:")
    print(f"  cd {folder}")
    print("  diesel serve --reload     # then open http://127.0.0.1:8080/ (Ctrl-C stops it)")
    print("  python -m pytest          # runs test_chat.py")
    return 0
