"""How the command line prints: JSON for scripts, paths as a user types them, switches as switches.

- :func:`json_output`: ``--json`` mode: tables become one JSON document on standard output, and
  everything else the command prints (progress bars, notes) goes to standard error, so
  ``labsat runs list --json | python -m json.tool`` reads clean JSON.
- :func:`show_path`: a saved file as the user would type it: normalised (no ``stations/../``),
  relative to the working folder when inside it, else absolute.
- Typer 0.29 prints every boolean flag with a ``<bool>`` type (``--check <bool>``, ``--help <bool>``),
  which reads as if it took a value; :func:`switches_as_switches` shows flags with no type column.
"""
from __future__ import annotations

import contextlib
import json
import os
import sys
from pathlib import Path
from typing import Any, Iterator


def show_path(path: str | Path) -> str:
    p = Path(os.path.normpath(Path(path).expanduser().absolute()))
    try:
        return str(p.relative_to(Path.cwd()))
    except ValueError:
        return str(p)


def _plain(value: Any) -> Any:
    if isinstance(value, Path):
        return show_path(value)
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        try:
            return value.item()
        except (ValueError, TypeError):
            pass
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)


def dumps(obj: Any) -> str:
    return json.dumps(obj, indent=2, default=_plain)


@contextlib.contextmanager
def json_output(console, enabled: bool) -> Iterator[None]:
    """While enabled, ``console`` (a rich Console) prints to standard error; write the JSON result
    with :func:`emit_json` to standard output."""
    if not enabled:
        yield
        return
    old = getattr(console, "_file", None)  # None: rich follows whatever sys.stdout is
    console.file = sys.stderr
    try:
        yield
    finally:
        console.file = old


def emit_json(obj: Any) -> None:
    sys.stdout.write(dumps(obj) + "\n")
    sys.stdout.flush()


def switches_as_switches() -> None:
    """Show boolean flags without a ``<bool>`` type in ``--help`` (idempotent)."""
    try:
        from typer.core import TyperOption
    except ImportError:  # pragma: no cover - another typer
        return
    original = TyperOption.display_type_rich
    if getattr(original, "_labsat_switches", False):
        return

    def display_type_rich(self, ctx):
        if getattr(self, "is_flag", False) and self.metavar is None:
            return None
        return original(self, ctx)

    display_type_rich._labsat_switches = True
    TyperOption.display_type_rich = display_type_rich
