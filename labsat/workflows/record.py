"""One way every workflow records itself: a run row started, kept up to date, and ended in every case."""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Iterator

from labsat import runs
from labsat.workflows.hooks import Hooks, current_tags


@dataclass
class Recorded:
    db: "runs.RunDB"
    run: int


@contextlib.contextmanager
def recorded(station, kind: str, config: dict, hooks: Hooks, calibration: str | None = None,
             resume: int | None = None, *, station_config=None) -> Iterator[Recorded]:
    """Start (or, with ``resume``, reopen) a run of ``kind`` for ``station`` in its run database.

    The block ends the run ``completed`` (if it did not itself), ``failed`` on an error, ``interrupted``
    on Ctrl-C, SIGTERM or an operator's abort; ``hooks.note`` is told what was kept. The database is
    opened in this thread (sqlite connections are not shared between threads): that of the connected
    ``station``, or (``station=None``) of ``station_config`` alone.
    """
    with runs.RunDB.for_station(station.config if station is not None else station_config) as db:
        if resume is None and station is None:
            run = runs.start_config_run(db, kind, station_config, {**config, **current_tags()}, calibration=calibration)
        elif resume is None:
            run = runs.start_station_run(db, kind, station, {**config, **current_tags()}, calibration=calibration)
        else:
            db.reopen(resume)
            run = resume
        with runs.recording(db, run, note=hooks.note):
            yield Recorded(db, run)
            if db.run(run)["status"] == "running":
                db.finish(run, "completed")
