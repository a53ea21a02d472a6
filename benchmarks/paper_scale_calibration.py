"""Calibration at N = 16, 32, 64: budget, held-out RMSE vs the detector-noise floor, fit time (issue 12).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/paper_scale_calibration.py --modes 16 32 64 \
        --models paper labsat [--seed 1] [--plain]

The virtual chip's physics driven directly (calibration.simchip.DirectHardware: same physics, noise and
ADC as the virtual lab, no protocol latency), detector range 5e-4 W at N ≤ 32 and 1e-4 W at N = 64 (as
stations/paper-mzi.yaml). Calibration: ``calibration.progressive.calibrate_progressive`` with its
default plan (4 bands × 32 settings × N²/8 inputs = 16 N² readings). Held-out: 16 fresh settings uniform
over the whole control range × 16 inputs. The noise floor is the RMSE of the held-out readings against
the noiseless chip (reads the hidden truth: a report, not the product). ``--plain`` adds the plain
global fit (fit.fit_twin from the datasheet twin) on the same number of uniform readings.
Writes benchmarks/results/paper_scale_calibration_<model>_<N>_s<seed>.json.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from labsat.calibration.fit import fit_twin, rmse  # noqa: E402
from labsat.calibration.measure import measure  # noqa: E402
from labsat.calibration.progressive import ProgressivePlan, calibrate_progressive  # noqa: E402
from labsat.calibration.simchip import DirectHardware  # noqa: E402
from labsat.twins.mzi import MZIMeshTwin  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--modes", type=int, nargs="+", default=[16, 32, 64])
    ap.add_argument("--models", nargs="+", default=["paper", "labsat"])
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--plain", action="store_true")
    ap.add_argument("--dtype", choices=["float32", "float64"], default="float32", help="precision of the fit's mesh")
    args = ap.parse_args()
    torch.set_num_threads(1)
    for model in args.models:
        for n in args.modes:
            hw = DirectHardware(seed=args.seed, modes=n, error_model=model,
                                detector_range_w=1e-4 if n >= 64 else 5e-4)
            held = measure(hw, 16, 16, seed=10_000 + args.seed, schedule=(1.0,))
            floor = hw.noise_floor(held)
            twin = MZIMeshTwin(n, hw.phase_per_u)
            row = {"model": model, "modes": n, "seed": args.seed, "dtype": args.dtype, "floor": floor, "nominal_rmse": rmse(twin, held)}
            plan = ProgressivePlan.for_modes(n)
            plan.dtype = args.dtype
            t0 = time.process_time()
            res = calibrate_progressive(hw, twin, plan, seed=args.seed, held=held,
                                        on_stage=lambda r: print(model, n, r, flush=True))
            row.update(readings=res.readings, settings=plan.settings * len(plan.u_max), inputs=plan.inputs,
                       fit_cpu_s=time.process_time() - t0 - 0.0, stages=res.stages,
                       heldout_rmse=rmse(twin, held))
            row["ratio"] = row["heldout_rmse"] / floor
            if args.plain:
                plain = MZIMeshTwin(n, hw.phase_per_u)
                data = measure(hw, row["settings"], plan.inputs, seed=args.seed, schedule=(1.0,))
                t0 = time.process_time()
                fit_twin(plain, data, adam_steps=plan.adam_steps, lbfgs_steps=plan.lbfgs_steps)
                row.update(plain_rmse=rmse(plain, held), plain_cpu_s=time.process_time() - t0)
            print(json.dumps(row, default=float), flush=True)
            out = ROOT / "benchmarks" / "results" / f"paper_scale_calibration_{model}_{n}_s{args.seed}.json"
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(row, indent=1, default=float))


if __name__ == "__main__":
    main()
