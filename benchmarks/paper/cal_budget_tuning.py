"""The under-measured twin's calibration budget (``cal_settings``, heater settings per control band), chosen on
the declared tuning chips 101-102 only (seed 0, 10 epochs, labsat's error model at spread x1, N = 16): the largest
of 2, 3, 4 at which BP on the twin loses accuracy on them. Every run is written to
benchmarks/paper/results/calibrated/cal_budget_tuning.csv.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/paper/cal_budget_tuning.py
"""
from __future__ import annotations

import csv
import sys
from dataclasses import asdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from labsat.paper import common, mzi  # noqa: E402

GRID = (2, 3, 4)
OUT = ROOT / "benchmarks" / "paper" / "results" / "calibrated" / "cal_budget_tuning.csv"


def main() -> None:
    rows = []
    for k in GRID:
        s = mzi.Settings(modes=16, epochs=10, error_model="labsat", sigma=1.0, cal_settings=k)
        for chip in common.TUNING_CHIPS:
            for method in ("bp_twin", "sat_twin"):
                task = {"method": method, "seed": 0, "chip": chip, "data": "digits", "n_train": None, "n_test": None,
                        "settings": asdict(s), "out": None}
                row = mzi.run_task(task)[0]
                rows.append({"cal_settings": k, **row})
                print(f"cal_settings {k} chip {chip} {method}: own chip {row['accuracy']:.3f}, held-out / floor "
                      f"{row['cal_ratio']:.2f}", flush=True)
    with open(OUT, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(dict.fromkeys(k for r in rows for k in r)))
        w.writeheader()
        w.writerows(rows)


if __name__ == "__main__":
    main()
