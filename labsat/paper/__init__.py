"""The SAT paper's protocols on the virtual lab: ``labsat experiment paper-mzi | paper-transfer |
paper-microring | paper-freespace`` (each with a CI-size default and ``--full``).

One module per platform (:mod:`.mzi`, :mod:`.microring`, :mod:`.freespace`) and :mod:`.common` for the
discipline (declared tuning chips vs evaluation chips, seeds, tables). Every experiment is a list of
task dicts mapped by :func:`labsat.sweeps.run_sweep`, so results land in the run database as each task
ends and a re-run computes only what is missing. The front door (``labsat experiment paper-*``) calls
:func:`run` through :func:`labsat.workflows.paper_experiment`, which records it as an ``experiment`` run
(``labsat runs list``) with its options, folder, table and files.
"""
from __future__ import annotations

import time
from dataclasses import asdict, fields
from pathlib import Path
from typing import Callable, Optional

from . import common

EXPERIMENTS = ("paper-mzi", "paper-transfer", "paper-microring", "paper-freespace")


def _cast(default, text: str):
    if isinstance(default, bool):
        return text.lower() in ("1", "true", "yes", "on")
    if isinstance(default, (tuple, list)):
        return tuple(float(v) for v in text.split(",") if v)
    if default is None:
        return float(text)
    return type(default)(text)


def parse_settings(pairs: list[str] | None, defaults: dict) -> dict:
    """``["readout=scale", "epochs=5"]`` -> typed overrides of ``defaults``; a bad one raises ValueError
    naming it."""
    out = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or key not in defaults:
            raise ValueError(f"--set {pair!r}: expected KEY=VALUE with KEY one of {', '.join(sorted(defaults))}")
        try:
            out[key] = _cast(defaults[key], value.strip())
        except ValueError:
            raise ValueError(f"--set {pair!r}: {value!r} is not a valid {type(defaults[key]).__name__}") from None
    return out


def run(name: str, *, full: bool = False, seeds: Optional[int] = None, chips: Optional[int] = None,
        data: str = "digits", out: Path = Path("runs/experiments"), settings: list[str] | None = None,
        scheduler: Optional[str] = "serial", n_workers: Optional[int] = None, n_train: Optional[int] = None,
        n_test: Optional[int] = None, log: Callable[[str], None] = print) -> dict:
    """Run one paper-protocol experiment; write table.md, results.csv, results.json, plot.png into
    ``out / name[+overrides]`` and return ``{"table", "directory", "seconds", "rows"}``."""
    from . import freespace, microring, mzi

    if name not in EXPERIMENTS:
        raise ValueError(f"unknown experiment {name!r}; choose from {', '.join(EXPERIMENTS)}")
    n_seeds = seeds if seeds is not None else (3 if full else 1)
    n_chips = chips if chips is not None else (5 if full else 2)
    if n_seeds < 1 or n_chips < 1:
        raise ValueError("--seeds and --chips must be at least 1")
    if n_chips > len(common.EVAL_CHIPS):
        raise ValueError(f"--chips: at most {len(common.EVAL_CHIPS)} declared evaluation chips")
    protocol = common.Protocol(eval_chips=common.EVAL_CHIPS[:n_chips], seeds=tuple(range(n_seeds)), data=data,
                               n_train=n_train, n_test=n_test, full=full)
    out = Path(out)
    suffix = "".join(f"+{p}" for p in settings or [])
    directory = out / (name + suffix)
    t0 = time.perf_counter()
    tuned: list[dict] = []  # tuning runs (on the declared tuning chips), kept in the results beside the rest
    if name in ("paper-mzi", "paper-transfer"):
        base = asdict(mzi.Settings()) if full else asdict(mzi.Settings(epochs=5))
        base["methods"] = ",".join(mzi.METHODS)  # a subset or labsat's own: --set methods=bp,sat_insitu,bp_twin
        over = {**base, **parse_settings(settings, base)}
        methods = tuple(m.strip() for m in over.pop("methods").split(",") if m.strip())
        unknown = [m for m in methods if m not in mzi.ALL_METHODS]
        if unknown or not methods:
            raise ValueError(f"--set methods: one or more of {','.join(mzi.ALL_METHODS)}, got {unknown or 'none'}")
        s = mzi.Settings(**over)
        task_list = mzi.tasks(protocol, s, out, methods=methods, transfer=name == "paper-transfer")
        fn, report = mzi.run_task, mzi.report
    elif name == "paper-microring":
        base = asdict(microring.Settings()) if full else asdict(microring.Settings(epochs=3))
        base["offset_sigmas"] = (0.08, 0.0) if full else (0.08,)
        over = {**base, **parse_settings(settings, base)}
        sigmas = over.pop("offset_sigmas")
        s = microring.Settings(**over)
        if s.rho_grid:  # rho chosen on the declared tuning chips before any evaluation chip is run
            tuning = microring.tuning_tasks(protocol, s, offset_sigma=max(sigmas))
            log(f"{name}: tuning rho over {list(s.rho_grid)} for ΔT {min(s.drifts):g} K on tuning chips "
                f"{list(protocol.tuning_chips)}: {len(tuning)} runs")
            tuned = common.map_tasks(microring.run_task, tuning, name=name + suffix + "+tuning",
                                     store=out / "paper-sweeps.sqlite", scheduler=scheduler, n_workers=n_workers,
                                     log=log)
            s = microring.Settings(**{**s.__dict__, "rho": microring.choose_rho(tuned, min(s.drifts))})
            log(f"{name}: chose rho {s.rho:g} on the tuning chips")
        task_list = microring.tasks(protocol, s, offset_sigmas=sigmas)
        fn, report = microring.run_task, (lambda rows, s=s: microring.report(rows, s))
    else:
        base = dict(freespace.DEFAULTS, epochs=20 if full else 3, d2nn_train=500 if full else 200,
                    d2nn_test=200 if full else 100)
        over = {**base, **parse_settings(settings, base)}
        sizes = (over.pop("d2nn_train"), over.pop("d2nn_test"))
        protocol = common.Protocol(eval_chips=protocol.eval_chips, seeds=tuple(range(seeds if seeds is not None else
                                                                                       (5 if full else 1))),
                                   data=data, n_train=n_train, n_test=n_test)
        task_list = freespace.tasks(protocol, over, d2nn_sizes=sizes)
        fn, report = freespace.run_task, freespace.report
    log(f"{name}: {len(task_list)} runs; {protocol.describe()}")
    rows = tuned + common.map_tasks(fn, task_list, name=name + suffix, store=out / "paper-sweeps.sqlite",
                                    scheduler=scheduler, n_workers=n_workers, log=log)
    table, fig = report(rows)
    seconds = time.perf_counter() - t0
    meta = common.protocol_meta(protocol, experiment=name, overrides=settings or [], tasks=len(task_list),
                                wall_s=seconds)
    common.write_results(directory, rows, table, meta, fig)
    return {"table": table, "directory": directory, "seconds": seconds, "rows": rows}
