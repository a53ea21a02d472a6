"""Logging for the front doors: one level for labsat's messages, an optional instrument I/O trace.

``labsat --log-level info ...`` shows labsat's log records (station safe states, reconnects, fits) on
standard error; ``labsat --trace FILE ...`` writes every instrument message with a timestamp to FILE
(:mod:`labsat.drivers.trace`). The GUI's log pane subscribes to the same loggers.
"""
from __future__ import annotations

import logging
import sys
from pathlib import Path

LEVELS = ("debug", "info", "warning", "error", "critical")


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time (a test runner may swap it)."""

    def __init__(self):
        super().__init__(sys.stderr)

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value):
        pass
_handler: logging.Handler | None = None
_trace: logging.Handler | None = None


def setup_logging(level: str = "warning", trace: str | Path | None = None) -> None:
    """Configure the ``labsat`` loggers (idempotent: a second call replaces the first's handlers)."""
    global _handler, _trace
    name = str(level).lower()
    if name not in LEVELS:
        raise ValueError(f"--log-level: {level!r} is not one of {', '.join(LEVELS)}")
    root = logging.getLogger("labsat")
    if _handler is not None:
        root.removeHandler(_handler)
    _handler = _StderrHandler()
    _handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root.addHandler(_handler)
    root.setLevel(getattr(logging, name.upper()))
    from labsat.drivers.trace import start_trace, stop_trace

    if _trace is not None:
        stop_trace(_trace)
        _trace = None
    if trace is not None:
        _trace = start_trace(trace)
