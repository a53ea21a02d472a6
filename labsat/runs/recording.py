"""Recording a run: start it for a station, and end it failed or interrupted whatever stops the block."""
from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path
from typing import Iterator

from labsat.runs.db import RunDB, RunError

def start_station_run(db: RunDB, kind: str, station, config: dict, calibration: str | None = None) -> int:
    """Start a run of ``kind`` on a connected :class:`~labsat.station.Station` (snapshots its file)."""
    try:
        device = station.device_id()
    except (ValueError, KeyError):
        device = None
    return start_config_run(db, kind, station.config, config, calibration=calibration, device=device)


def start_config_run(db: RunDB, kind: str, station_config, config: dict, calibration: str | None = None,
                     device: str | None = None) -> int:
    """Start a run of ``kind`` for a station file's config (snapshots the file)."""
    source = getattr(station_config, "source", None)
    text = None
    if source is not None:
        with contextlib.suppress(OSError):
            text = Path(source).read_text()
    return db.start_run(kind, config, station_yaml=text, station_path=None if source is None else str(source),
                        calibration=calibration, device=device)


def _finish_quietly(db: RunDB, run: int, status: str, error: str) -> None:
    # the disk may be full: then the run stays 'running' and is shown as interrupted once its process is gone
    with contextlib.suppress(RunError, sqlite3.Error):
        db.finish(run, status, error=error)


@contextlib.contextmanager
def recording(db: RunDB, run: int, note=None) -> Iterator[None]:
    """Mark ``run`` failed (any exception) or interrupted (Ctrl-C, SIGTERM) if the block does not finish.

    ``note(text)`` is told what was kept and how to continue. Marking it completed is the caller's job.
    """
    try:
        yield
    except BaseException as exc:
        if isinstance(exc, (KeyboardInterrupt, SystemExit)):  # Ctrl-C, SIGTERM
            _finish_quietly(db, run, "interrupted", f"{type(exc).__name__}")
        elif getattr(exc, "run_status", None) == "interrupted":  # an operator's abort (workflows.Aborted)
            _finish_quietly(db, run, "interrupted", f"{type(exc).__name__}: {exc}")
        else:
            _finish_quietly(db, run, "failed", f"{type(exc).__name__}: {exc}")
        if note:
            note(kept(db, run))
        raise


def kept(db: RunDB, run: int) -> str:
    """What a run kept, and how to continue it (told to the user when a run stops)."""
    try:
        info = db.run(run)
        epochs = db.epochs(run)
    except (RunError, sqlite3.Error):
        return f"run {run}: the run database could not be read"
    if info["kind"] != "train":
        return f"run {run} ({info['kind']}) recorded as {info['status']} in {db.path}"
    kept = f"epochs 1..{epochs[-1]['epoch']}" if epochs else "no completed epoch"
    return (f"run {run} recorded as {info['status']}: {kept} kept in {db.path}; "
            f"continue with `labsat train --resume {run}`")


_kept = kept  # the old private name
