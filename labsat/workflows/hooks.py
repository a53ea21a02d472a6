"""How a front door watches and steers a workflow: progress events, an abort check, notes for the user."""
from __future__ import annotations

import contextlib
import contextvars
from dataclasses import dataclass
from typing import Callable, Iterator


class Aborted(Exception):
    """Raised by a workflow's ``check`` hook (the GUI's Abort or STOP): the run ends ``interrupted``."""

    run_status = "interrupted"  # what the run database records (as for Ctrl-C and SIGTERM)


@dataclass
class Hooks:
    """``progress(event, payload)`` while a workflow runs; ``check()`` between steps (raises
    :class:`Aborted` to stop, may block while paused); ``note(text)`` for lines the user should read.

    Events: ``measure`` (k, n) settings measured; ``powers`` mean detector powers of the latest setting;
    ``fit`` (i, total, loss); ``train_start`` {label, epochs, done}; ``step`` (epoch, step, steps,
    hardware batches so far); ``epoch`` (the epoch record as a dict).
    """

    progress: Callable[[str, object], None] | None = None
    check: Callable[[], None] | None = None
    note: Callable[[str], None] | None = None

    def emit(self, event: str, payload: object = None) -> None:
        if self.progress is not None:
            self.progress(event, payload)

    def tick(self) -> None:
        if self.check is not None:
            self.check()

    def say(self, text: str) -> None:
        if self.note is not None:
            self.note(text)


QUIET = Hooks()

_tags: contextvars.ContextVar[dict] = contextvars.ContextVar("labsat_run_tags", default={})


@contextlib.contextmanager
def run_tags(**tags) -> Iterator[None]:
    """Every run started inside carries ``tags`` in its stored config (e.g. the demo marks its runs)."""
    token = _tags.set({**_tags.get(), **tags})
    try:
        yield
    finally:
        _tags.reset(token)


def current_tags() -> dict:
    return dict(_tags.get())
