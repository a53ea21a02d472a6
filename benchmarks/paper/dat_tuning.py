"""DAT's one new hyper-parameter, the error predictor's Adam step (``dat_lr``), chosen on the declared tuning chips
101-102 only (seed 0, 10 epochs, labsat's error model at spread x1, N = 16: the set-up of the round-3 table), before
any evaluation chip was run with DAT. Every run is written to
benchmarks/paper/results/calibrated/dat_tuning.csv; the lr with the best mean own-chip accuracy is the default
``mzi.Settings.dat_lr``.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/paper/dat_tuning.py
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

GRID = (0.001, 0.01, 0.03, 0.1)
OUT = ROOT / "benchmarks" / "paper" / "results" / "calibrated" / "dat_tuning.csv"


def main() -> None:
    rows = []
    for lr in GRID:
        s = mzi.Settings(modes=16, epochs=10, error_model="labsat", sigma=1.0, dat_lr=lr)
        for chip in common.TUNING_CHIPS:
            task = {"method": "dat", "seed": 0, "chip": chip, "data": "digits", "n_train": None, "n_test": None,
                    "settings": asdict(s), "out": None}
            row = mzi.run_task(task)[0]
            rows.append({"dat_lr": lr, **row})
            print(f"dat_lr {lr:g} chip {chip}: own-chip accuracy {row['accuracy']:.3f}", flush=True)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    with open(OUT, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    means = {lr: np.mean([r["accuracy"] for r in rows if r["dat_lr"] == lr]) for lr in GRID}
    print("mean over tuning chips:", {k: round(100 * v, 1) for k, v in means.items()}, "-> dat_lr", max(means, key=means.get))


if __name__ == "__main__":
    main()
