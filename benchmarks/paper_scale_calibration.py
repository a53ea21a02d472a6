"""Calibration at N = 16, 32, 64: budget, held-out RMSE vs the detector-noise floor, fit time (issue 12).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/paper_scale_calibration.py --modes 16 32 \
        --models paper labsat --chips 2 3 4 5 6 --cal-seeds 0 1 2      # the evaluation table
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/paper_scale_calibration.py --summary   # table from the files

Chips: chip 1 is the **tuning chip** (the plan's band schedule and step counts were chosen on it, round 1);
chips 2–6 are the **evaluation chips** (never used for tuning). A run is (error model, N, chip seed,
calibration seed): the calibration seed draws the measured settings and inputs (and the detector noise
stream is the chip's). The virtual chip's physics driven directly (calibration.simchip.DirectHardware:
same physics, noise and ADC as the virtual lab, no protocol latency), detector range 5e-4 W at N ≤ 32
and 1e-4 W at N = 64 (as stations/paper-mzi.yaml). Calibration:
``calibration.progressive.calibrate_progressive`` with its default plan (4 bands × 32 settings × N²/8
inputs = 16 N² readings; the fit's mesh in float32). Held-out: 16 fresh settings uniform over the whole
control range × 16 inputs (seed 10000 + chip). The noise floor is the RMSE of the held-out readings
against the noiseless chip (reads the hidden truth: a report, not the product). ``--plain`` adds the
plain global fit (fit.fit_twin from the datasheet twin) on the same number of uniform readings.
Each run writes benchmarks/results/paper_scale_calibration/<model>_<N>_chip<c>_cal<s>.json as it ends
(a cut-off sweep keeps the finished runs; finished runs are skipped when the sweep is started again).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from labsat.calibration import fit as fit_module  # noqa: E402
from labsat.calibration.fit import fit_twin, rmse  # noqa: E402
from labsat.calibration.measure import measure  # noqa: E402
from labsat.calibration.progressive import ProgressivePlan, calibrate_progressive, self_configured_start  # noqa: E402
from labsat.calibration.simchip import DirectHardware  # noqa: E402
from labsat.twins.mzi import MZIMeshTwin  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "paper_scale_calibration"
TUNING_CHIPS = (1,)
EVALUATION_CHIPS = (2, 3, 4, 5, 6)
# the self-configured start's version: round 9 reads the bottom row's θ and keeps θ on the branch nearer the datasheet
# (selfconfig.nearer_branch); rounds 7-8's starts (cached without a suffix) and results (``_sc7``, ``_sc8``) stay
START_VERSION = 9


def self_configured(hw, twin, plan, model: str, n: int, chip: int) -> dict:
    """``progressive.self_configured_start`` on ``twin`` (in place), or its result for this chip read from
    benchmarks/results/paper_scale_calibration/starts/ (the start is the same for every calibration seed: the chip's
    noise stream is seeded by the chip). Returns the start's readings, heater settings and CPU seconds."""
    path = RESULTS / "starts" / f"{model}_{n}_chip{chip}_r{START_VERSION}.json"
    if path.exists():
        saved = json.loads(path.read_text())
        twin.load_fitted_state(saved.pop("twin"))
        return saved
    t0 = time.process_time()
    start = self_configured_start(hw, twin, plan)
    saved = {"start_readings": start.readings, "start_settings": start.settings, "start_cpu_s": time.process_time() - t0,
             "start_options": plan.start_options, "start_version": START_VERSION}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({**saved, "twin": twin.fitted_state()}))
    return saved


def run(model: str, n: int, chip: int, cal_seed: int, dtype: str = "float32", plain: bool = False,
        self_configure: bool = False, oracle: tuple[float, float] | None = None) -> dict:
    hw = DirectHardware(seed=chip, modes=n, error_model=model, detector_range_w=1e-4 if n >= 64 else 5e-4)
    held = measure(hw, 16, 16, seed=10_000 + chip, schedule=(1.0,))
    floor = hw.noise_floor(held)
    twin = MZIMeshTwin(n, hw.phase_per_u)
    row = {"model": model, "modes": n, "chip": chip, "cal_seed": cal_seed, "dtype": dtype,
           "role": "tuning" if chip in TUNING_CHIPS else "evaluation", "floor": floor,
           "nominal_rmse": rmse(twin, held), "refits": fit_module.REFITS}
    plan = ProgressivePlan.for_modes(n)
    plan.dtype = dtype
    row["self_configure"] = self_configure
    if self_configure:  # round 7: the MZI-by-MZI start, once per chip (its readings do not depend on the calibration
        plan.self_configure = True  # seed), then the bands on the same chip with a fresh noise stream (as without it)
        row.update(self_configured(hw, twin, plan, model, n, chip))
        hw = DirectHardware(seed=chip, modes=n, error_model=model, detector_range_w=1e-4 if n >= 64 else 5e-4)
        held = measure(hw, 16, 16, seed=10_000 + chip, schedule=(1.0,))
        plan = plan.after_start()
    if oracle is not None:  # a diagnosis, not a calibration: θ / φ offsets from the hidden truth plus noise
        rng = np.random.default_rng(99)
        hidden = hw.truth()["offset"]
        with torch.no_grad():
            twin.offset[0::2] = torch.as_tensor(hidden[0::2] + rng.normal(0, oracle[0], len(hidden) // 2))
            twin.offset[1::2] = torch.as_tensor(hidden[1::2] + rng.normal(0, oracle[1], len(hidden) // 2))
        row["oracle_start"] = list(oracle)
    t0, w0 = time.process_time(), time.perf_counter()
    res = calibrate_progressive(hw, twin, plan, seed=cal_seed, held=held,
                                on_stage=lambda r: print(model, n, chip, cal_seed, r, flush=True))
    row.update(readings=res.readings, settings=plan.settings * len(plan.u_max), inputs=plan.inputs,
               cpu_s=time.process_time() - t0, wall_s=time.perf_counter() - w0, measure_s=res.measure_s,
               stages=res.stages, heldout_rmse=rmse(twin, held))
    row["ratio"] = row["heldout_rmse"] / floor
    if plain:
        other = MZIMeshTwin(n, hw.phase_per_u)
        data = measure(hw, row["settings"], plan.inputs, seed=cal_seed, schedule=(1.0,))
        t0 = time.process_time()
        fit_twin(other, data, adam_steps=plan.adam_steps, lbfgs_steps=plan.lbfgs_steps)
        row.update(plain_rmse=rmse(other, held), plain_cpu_s=time.process_time() - t0)
    return row


def summary(rows: list[dict]) -> str:
    """Markdown: one line per (model, N) over the evaluation chips (mean ± std of fitted / floor), then
    every run."""
    out = ["| model | N | start | chips × cal. seeds | readings (bands) | fitted / floor (mean ± std) | worst | CPU s (mean) |",
           "|---|---:|---|---|---:|---:|---:|---:|"]
    groups: dict = {}
    for r in rows:
        if r["role"] == "evaluation" and not r.get("oracle_start"):
            key = (r["model"], r["modes"], bool(r.get("self_configure")), r.get("refits", 0),
                   r.get("start_version", 7) if r.get("self_configure") else 0)
            groups.setdefault(key, []).append(r)
    for (model, n, sc, refits, version), g in sorted(groups.items()):
        ratio = np.array([r["ratio"] for r in g])
        chips = sorted({r["chip"] for r in g})
        seeds = sorted({r["cal_seed"] for r in g})
        start = f"self-configured (+{np.mean([r['start_readings'] for r in g]) / n**2:.0f} N² readings)" if sc else "datasheet"
        start += f", ≤ {refits} refits" if refits else ""
        start += f", round {version} start" if version >= 9 else ""
        out.append(f"| {model} | {n} | {start} | {len(chips)} × {len(seeds)} ({len(g)} runs) | {g[0]['readings']} | "
                   f"{ratio.mean():.3f} ± {ratio.std(ddof=1) if len(g) > 1 else 0:.3f} | {ratio.max():.3f} | "
                   f"{np.mean([r['cpu_s'] for r in g]):.0f} |")
    out += ["", "| model | N | chip | cal. seed | role | start | nominal RMSE | floor | fitted RMSE | fitted / floor | CPU s |",
            "|---|---:|---:|---:|---|---|---:|---:|---:|---:|---:|"]
    for r in sorted(rows, key=lambda r: (r["model"], r["modes"], r["chip"], r["cal_seed"], r.get("self_configure", False))):
        start = f"self-configured ({r['start_readings']} readings)" if r.get("self_configure") else "datasheet"
        start += f", ≤ {r['refits']} refits" if r.get("refits") else ""
        start += f", round {r['start_version']} start" if r.get("start_version", 0) >= 9 else ""
        if r.get("oracle_start"):
            start = f"oracle (truth + N(0, {r['oracle_start'][0]:g}) θ, N(0, {r['oracle_start'][1]:g}) φ)"
        out.append(f"| {r['model']} | {r['modes']} | {r['chip']} | {r['cal_seed']} | {r['role']} | {start} | "
                   f"{r['nominal_rmse']:.3f} | {r['floor']:.4f} | {r['heldout_rmse']:.4f} | {r['ratio']:.3f} | "
                   f"{r['cpu_s']:.0f} |")
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--modes", type=int, nargs="+", default=[16, 32])
    ap.add_argument("--models", nargs="+", default=["paper", "labsat"])
    ap.add_argument("--chips", type=int, nargs="+", default=list(EVALUATION_CHIPS))
    ap.add_argument("--cal-seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--plain", action="store_true")
    ap.add_argument("--dtype", choices=["float32", "float64"], default="float32", help="precision of the fit's mesh")
    ap.add_argument("--self-configure", action="store_true",
                    help="the plan's MZI-by-MZI start (calibration/selfconfig.py); results in .../<model>_<N>_chip<c>_cal<s>_sc<START_VERSION>.json")
    ap.add_argument("--oracle-start", type=float, nargs=2, default=None, metavar=("SIGMA_THETA", "SIGMA_PHI"),
                    help="diagnosis: start from the hidden offsets plus N(0, σ) (results .../<...>_oracle<σθ>-<σφ>.json)")
    ap.add_argument("--summary", action="store_true", help="only print the tables from the result files")
    args = ap.parse_args()
    torch.set_num_threads(1)
    RESULTS.mkdir(parents=True, exist_ok=True)
    if not args.summary:
        for n in args.modes:
            for model in args.models:
                for chip in args.chips:
                    for cal_seed in args.cal_seeds:
                        tail = (f"_sc{START_VERSION}" if args.self_configure else "") + (
                            f"_oracle{args.oracle_start[0]:g}-{args.oracle_start[1]:g}" if args.oracle_start else "")
                        out = RESULTS / f"{model}_{n}_chip{chip}_cal{cal_seed}{tail}.json"
                        if out.exists():
                            continue
                        row = run(model, n, chip, cal_seed, args.dtype, args.plain, args.self_configure,
                                  None if args.oracle_start is None else tuple(args.oracle_start))
                        print(json.dumps({k: v for k, v in row.items() if k != "stages"}, default=float),
                              flush=True)
                        out.write_text(json.dumps(row, indent=1, default=float))
    rows = [json.loads(p.read_text()) for p in sorted(RESULTS.glob("*.json"))]
    print(summary(rows))


if __name__ == "__main__":
    main()
