"""The round-3 hyper-parameters chosen on the declared tuning chips 101-102 only (seed 0, 10 epochs, labsat's error
model at spread x1, N = 16: the set-up of the round-3 tables), before any evaluation chip ran with them; every run
written to benchmarks/paper/results/calibrated/<name>_tuning.csv.

- ``dat``: DAT's error-predictor Adam step ``dat_lr`` over 1e-3 (the authors'), 0.01, 0.03, 0.1; the best mean
  own-chip accuracy is the default ``mzi.Settings.dat_lr``.
- ``cal_budget``: the under-measured twin's ``cal_settings`` (heater settings per control band) over 2, 3, 4: the
  largest at which BP on the twin loses accuracy on the tuning chips (BP and SAT on the twin both run).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/paper/tuning.py dat cal_budget
"""
from __future__ import annotations

import csv
import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from labsat.paper import common, mzi  # noqa: E402

GRIDS = {"dat": ("dat_lr", (0.001, 0.01, 0.03, 0.1), ("dat",)),
         "cal_budget": ("cal_settings", (2, 3, 4), ("bp_twin", "sat_twin"))}


def tune(name: str) -> list[dict]:
    key, grid, methods = GRIDS[name]
    rows = []
    for value in grid:
        s = mzi.Settings(modes=16, epochs=10, error_model="labsat", sigma=1.0, **{key: value})
        for chip in common.TUNING_CHIPS:
            for method in methods:
                task = {"method": method, "seed": 0, "chip": chip, "data": "digits", "n_train": None, "n_test": None,
                        "settings": asdict(s), "out": None}
                row = {key: value, **mzi.run_task(task)[0]}
                rows.append(row)
                print(f"{key} {value:g} chip {chip} {method}: own chip {row['accuracy']:.3f}"
                      + (f", held-out / floor {row['cal_ratio']:.2f}" if "cal_ratio" in row else ""), flush=True)
    out = ROOT / "benchmarks" / "paper" / "results" / "calibrated" / f"{name}_tuning.csv"
    with open(out, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(dict.fromkeys(k for r in rows for k in r)))
        w.writeheader()
        w.writerows(rows)
    for method in methods:
        means = {v: np.mean([r["accuracy"] for r in rows if r[key] == v and r["method"] == method]) for v in grid}
        print(f"{name}: {method} mean over tuning chips", {v: round(100 * m, 1) for v, m in means.items()})
    return rows


if __name__ == "__main__":
    for name in sys.argv[1:] or list(GRIDS):
        tune(name)
