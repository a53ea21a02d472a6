"""Run a job function on a QThread and report back to the GUI thread through Qt signals."""
from __future__ import annotations

import logging
import traceback

from PySide6.QtCore import QThread, Signal

from .bench import Aborted, Bench, RunControl

log = logging.getLogger(__name__)


class Job(QThread):
    """``fn(bench, params, control, emit)`` on a worker thread.

    Signals (delivered in the GUI thread): ``progress(kind, payload)`` while it runs, then exactly one
    of ``succeeded(result)``, ``aborted(reason)``, ``failed(message)``, then ``ended()``. On abort or
    failure every output is put in its safe state before the signal is sent.
    """

    progress = Signal(str, object)
    succeeded = Signal(object)
    aborted = Signal(str)
    failed = Signal(str)
    ended = Signal()

    def __init__(self, bench: Bench, fn, params, parent=None):
        super().__init__(parent)
        self.bench, self.fn, self.params = bench, fn, params
        self.control = RunControl()
        self.result = None
        self.error: str | None = None

    def run(self) -> None:  # worker thread
        self.bench.register(self.control)
        try:
            self.result = self.fn(self.bench, self.params, self.control, self.progress.emit)
        except Aborted as exc:
            self._safe()
            self.error = str(exc)
            self.aborted.emit(str(exc))
        except BaseException as exc:  # any failure leaves the outputs safe, and says why
            self._safe()
            log.error("job failed: %s", traceback.format_exc())
            self.error = f"{type(exc).__name__}: {exc}"
            self.failed.emit(self.error)
        else:
            self.succeeded.emit(self.result)
        finally:
            self.bench.unregister(self.control)
            self.ended.emit()

    def _safe(self) -> None:
        try:
            problems = self.bench.safe_state()
            if problems:
                log.critical("safe state problems: %s", problems)
        except Exception as exc:  # pragma: no cover - logged, the job still ends
            log.critical("safe state failed: %s", exc)
