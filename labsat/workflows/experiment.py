"""Experiment: one of the SAT paper's claims measured on the virtual lab; recorded as a run."""
from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from labsat.workflows.hooks import QUIET, Hooks
from labsat.workflows.record import recorded


def experiment(name: str, setup, run_experiment, hooks: Hooks = QUIET) -> dict:
    """``run_experiment(name, setup, log=...)`` (:func:`labsat.experiments.run_experiment`, passed in by the
    front door: the experiments sit above this layer) recorded as an ``experiment`` run in the run database
    of ``setup.station``: its settings, then its output folder and table."""
    from labsat.config import load_config

    config = load_config(setup.station)
    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(setup).items()}
    with recorded(None, "experiment", {"experiment": name, "setup": settings}, hooks, station_config=config) as rec:
        result = run_experiment(name, setup, log=hooks.say)
        rec.db.finish(rec.run, "completed", result={"experiment": name, "directory": str(result["directory"]),
                                                    "seconds": result["seconds"], "table": result["table"]})
    result["run"] = rec.run
    return result
