"""Twin accuracy vs query budget on the virtual chip's physics driven directly (no protocol layer).

    .venv/bin/python benchmarks/calibration_budget.py [--modes 8] [--seed 1] [--budgets 2048 6144 12288]

Same physics, noise and quantisation as the virtual lab, without the loopback instruments (whose
per-query latency only changes the wall time, not the readings). Reads the hidden truth to score
parameter errors. Writes benchmarks/results/calibration_budget_<modes>.json and prints a table.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from _calibration_hw import DirectHardware  # noqa: E402

from labsat.calibration.measure import measure  # noqa: E402
from labsat.calibration.study import budget_study, parameter_errors  # noqa: E402
from labsat.twins.mzi import MZIMeshTwin  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--modes", type=int, default=8)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--budgets", type=int, nargs="+", default=[2048, 6144, 12288])
    ap.add_argument("--inputs", type=int, default=16)
    args = ap.parse_args()
    torch.set_num_threads(1)
    hw = DirectHardware(seed=args.seed, modes=args.modes)
    chip = hw.chip
    held = measure(hw, 32, 16, seed=10_000 + args.seed)
    rows = budget_study(hw, lambda: MZIMeshTwin(args.modes, hw.phase_per_u), args.budgets, held,
                        errors=lambda t: parameter_errors(t, chip.truth, chip.spec), inputs=args.inputs,
                        seed=args.seed, progress=lambda r: print(r, flush=True))
    out = ROOT / "benchmarks" / "results" / f"calibration_budget_{args.modes}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"modes": args.modes, "seed": args.seed, "rows": rows}, indent=1, default=float))
    print("| budget (readings) | init | readings used | held-out RMSE | offset err (rad) | efficiency err (%) | crosstalk err | fit s |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        if "skipped" in r:
            print(f"| {r['budget']} | {r['init']} | - | too few readings for sweeps | | | | |")
        else:
            print(f"| {r['budget']} | {r['init']} | {r['readings']} | {r['heldout_rmse']:.4f} | {r['offset_rad']:.4f} "
                  f"| {r['efficiency_pct']:.2f} | {r['crosstalk']:.4f} | {r['seconds']:.0f} |")


if __name__ == "__main__":
    main()
