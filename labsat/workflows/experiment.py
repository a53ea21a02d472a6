"""Experiment: one of the SAT paper's claims measured on the virtual lab; recorded as a run."""
from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Callable

from labsat.workflows.hooks import QUIET, Hooks
from labsat.workflows.record import recorded


def _plain(settings: dict) -> dict:
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in settings.items()}


def _recorded(name: str, station: Path | str, settings: dict, call: Callable[[], dict], hooks: Hooks) -> dict:
    """Run ``call()`` as an ``experiment`` run in the run database of ``station``: its settings first, then
    its output folder, wall time, table and the files it wrote."""
    from labsat.config import load_config

    config = load_config(station)
    with recorded(None, "experiment", {"experiment": name, "setup": _plain(settings)}, hooks,
                  station_config=config) as rec:
        result = call()
        directory = Path(result["directory"])
        files = sorted(str(p) for p in directory.glob("*") if p.is_file()) if directory.is_dir() else []
        done = {"experiment": name, "directory": str(directory), "seconds": result["seconds"],
                "table": result["table"], "files": files}
        if "rows" in result:
            done["n_rows"] = len(result["rows"])
        rec.db.finish(rec.run, "completed", result=done)
    result["run"] = rec.run
    return result


def experiment(name: str, setup, run_experiment, hooks: Hooks = QUIET) -> dict:
    """``run_experiment(name, setup, log=...)`` (:func:`labsat.experiments.run_experiment`, passed in by the
    front door: the experiments sit above this layer) recorded as an ``experiment`` run in the run database
    of ``setup.station``: its settings, then its output folder and table."""
    return _recorded(name, setup.station, asdict(setup), lambda: run_experiment(name, setup, log=hooks.say), hooks)


def paper_experiment(name: str, station: Path | str, run_paper, hooks: Hooks = QUIET, **options) -> dict:
    """``run_paper(name, log=..., **options)`` (:func:`labsat.paper.run`: ``paper-mzi | paper-transfer |
    paper-microring | paper-freespace``, passed in by the front door) recorded as an ``experiment`` run in
    the run database of ``station`` (``labsat runs list``): its options, then its output folder, table and
    files (table.md, results.csv, results.json, plot.png)."""
    return _recorded(name, station, {"protocol": "paper", **options},
                     lambda: run_paper(name, log=hooks.say, **options), hooks)
