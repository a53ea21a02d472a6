"""One job at a time on the bench: starts :class:`~labsat.gui.worker.Job` threads and tracks them."""
from __future__ import annotations

from PySide6.QtCore import QObject, Signal

from .bench import Bench
from .worker import Job


class JobRunner(QObject):
    busy_changed = Signal(bool)
    message = Signal(str)

    def __init__(self, bench: Bench, parent=None):
        super().__init__(parent)
        self.bench = bench
        self.job: Job | None = None

    @property
    def busy(self) -> bool:
        return self.job is not None

    def start(self, fn, params, name: str, wire=None) -> Job | None:
        """Start ``fn`` on a worker thread; ``wire(job)`` connects the panel's slots before it runs."""
        if self.job is not None:
            self.message.emit(f"busy: wait for the running job to end (or abort it) before starting {name}")
            return None
        if not self.bench.connected:
            self.message.emit(f"{name}: connect the station first")
            return None
        job = Job(self.bench, fn, params, parent=self)
        job.setObjectName(name)
        if wire is not None:
            wire(job)
        job.ended.connect(self._ended)
        self.job = job
        self.busy_changed.emit(True)
        job.start()
        self.message.emit(f"{name} started")
        return job

    def _ended(self) -> None:
        job, self.job = self.job, None
        if job is not None:
            job.wait(5000)
            self.message.emit(f"{job.objectName()} ended" + (f": {job.error}" if job.error else ""))
        self.busy_changed.emit(False)

    def abort(self, reason: str = "aborted by the operator") -> None:
        if self.job is not None:
            self.job.control.abort(reason)

    def shutdown(self, timeout_ms: int = 20000) -> None:
        """Window closing: abort the running job and wait for it (it makes the outputs safe)."""
        job = self.job
        if job is not None:
            job.control.abort("window closed")
            job.wait(timeout_ms)
