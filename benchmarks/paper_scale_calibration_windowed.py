"""The windowed fit in depth (calibration/windowed.py) as a start for large meshes, scored against the chip's
hidden truth (issue 12, round 5).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/paper_scale_calibration_windowed.py --modes 32 48 --band-steps 200
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/paper_scale_calibration_windowed.py --modes 16 --passes 2 [--free downstream|couplers]
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/paper_scale_calibration_windowed.py --modes 16 32 --free all --accumulate --band-steps 100
    .venv/bin/python benchmarks/paper_scale_calibration_windowed.py --transparency

Tuning chip 1 (``--chip``), the virtual chip driven directly (``calibration.simchip.DirectHardware``, detector range
as in ``paper_scale_calibration.py``). Start: the self-configuring start (``selfconfig.self_configure``, θ passes
``--sc-passes``; ``--sc-passes 0``: the datasheet twin), then ``windowed_fit`` (``--width`` columns, ``--settings``
settings × N inputs per window, ``--passes`` sweeps). After the start and after every windowed pass it prints
the θ bar-point error (the chip's θ at the twin's bar controls, minus π) and the loop-phase error (φ minus the
previous column's φ on row i+1, the chip's against the twin's at the bar controls), median / p90 in rad
(reads the hidden truth: a report, never used by the fit). ``--band-steps S``: then the progressive plan's
first band (32 settings centred on the twin's bar state, ``u`` within 0.12 of it, N²/8 inputs) fitted S Adam
steps (lr 0.02), its train RMSE / noise floor every 50 steps. One JSON line per event to
benchmarks/results/paper_scale_calibration_windowed/<model>_<N>_<tag>.jsonl.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from labsat.calibration.fit import _loss, fitting  # noqa: E402
from labsat.calibration.measure import measure  # noqa: E402
from labsat.calibration.selfconfig import bar_controls, loop_phases, self_configure  # noqa: E402
from labsat.calibration.simchip import DirectHardware  # noqa: E402
from labsat.calibration.windowed import windowed_fit  # noqa: E402
from labsat.twins.mzi import MZIMeshTwin  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "paper_scale_calibration_windowed"


def phase_errors(hw: DirectHardware, twin: MZIMeshTwin) -> tuple[np.ndarray, np.ndarray]:
    """(θ bar-point error, loop-phase error) per MZI, rad, wrapped: the chip's phases at the twin's bar
    controls against the twin's (reads the hidden truth)."""
    u = bar_controls(twin)
    hw.chip.set_heaters(hw.v_max * np.sqrt(u))
    with torch.no_grad():
        predicted = twin.heater_phases(torch.as_tensor(u)).numpy()
    e = np.angle(np.exp(1j * (hw.chip.heater_phases() - predicted)))
    theta, loop = e[0::2], loop_phases(twin.layout, e[1::2])
    return theta, np.angle(np.exp(1j * loop))


def score(hw, twin) -> dict:
    theta, loop = phase_errors(hw, twin)
    a, b = np.abs(theta), np.abs(loop)
    return {"theta_median": float(np.median(a)), "theta_p90": float(np.quantile(a, 0.9)),
            "theta_over_0.1": float(np.mean(a > 0.1)), "loop_median": float(np.median(b)),
            "loop_p90": float(np.quantile(b, 0.9)), "loop_over_0.3": float(np.mean(b > 0.3))}


def first_band(hw, twin, n: int, steps: int, emit) -> None:
    data = measure(hw, 32, n * n // 8, seed=0, schedule=(0.12,), centre=bar_controls(twin))
    floor = hw.noise_floor(data)
    params = [getattr(twin, k) for k in twin.fit_parameters]
    loss_fn = _loss(twin, data, torch.float32)
    t0 = time.process_time()
    with fitting(params, 1):
        opt = torch.optim.Adam(params, lr=0.02)
        for i in range(steps):
            opt.zero_grad()
            loss = loss_fn()
            loss.backward()
            opt.step()
            if i % 50 == 0 or i == steps - 1:
                emit({"event": "band", "step": i, "ratio": math.sqrt(loss.item()) / floor,
                      "cpu_s": time.process_time() - t0})


def run(n: int, args, out: Path) -> None:
    hw = DirectHardware(seed=args.chip, modes=n, error_model=args.model, detector_range_w=1e-4 if n >= 64 else 5e-4)
    twin = MZIMeshTwin(n, hw.phase_per_u)
    lines = []

    def emit(row):
        row = {"modes": n, "chip": args.chip, **row}
        print(json.dumps(row), flush=True)
        lines.append(json.dumps(row))
        out.write_text("\n".join(lines) + "\n")

    emit({"event": "datasheet", **score(hw, twin)})
    t0 = time.process_time()
    if args.sc_passes:
        sc = self_configure(hw, twin, passes=args.sc_passes)
        emit({"event": "selfconfig", "readings": sc.readings, "settings": sc.settings,
              "cpu_s": time.process_time() - t0, **score(hw, twin)})
    for p in range(args.passes):
        t0 = time.process_time()
        res = windowed_fit(hw, twin, width=args.width, settings=args.settings, spread=args.spread, passes=1,
                           adam_steps=args.adam, lbfgs_steps=args.lbfgs, lr=args.lr, seed=p, free=args.free, accumulate=args.accumulate,
                           on_window=(lambda r: print(r, flush=True)) if args.verbose else None)
        emit({"event": f"windowed_pass{p}", "readings": res.readings, "settings": res.settings,
              "cpu_s": time.process_time() - t0,
              "last_window_rmse": res.windows[-1]["train_rmse"], **score(hw, twin)})
    if args.band_steps:
        first_band(hw, twin, n, args.band_steps, emit)


def transparency(models=("labsat", "paper"), modes=(16, 32, 48, 64), chip: int = 1) -> str:
    """How far the chip's mesh at its exact bar state (every θ = π by the hidden truth) is from passing the light
    straight through: the power each input keeps on its own row, mean and worst (the truth: a report)."""
    from labsat.geometry import mesh_matrix
    out = ["| model | N | power kept on its row at the exact bar state: mean | worst row |", "|---|---:|---:|---:|"]
    for model in models:
        for n in modes:
            t = DirectHardware(seed=chip, modes=n, error_model=model).chip.truth
            phases = t.offset.copy()
            phases[0::2] = np.pi
            u = mesh_matrix(phases[0::2], phases[1::2], MZIMeshTwin(n, 1.0).layout, split_error=t.coupler - np.pi / 4)
            kept = np.abs(np.diag(u)) ** 2
            out.append(f"| {model} | {n} | {kept.mean():.3f} | {kept.min():.3f} |")
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="labsat", choices=["labsat", "paper"])
    ap.add_argument("--modes", type=int, nargs="+", default=[32, 48])
    ap.add_argument("--chip", type=int, default=1, help="1: the tuning chip")
    ap.add_argument("--sc-passes", type=int, default=2, help="self-configuring start's θ passes (0: datasheet)")
    ap.add_argument("--passes", type=int, default=1)
    ap.add_argument("--width", type=int, default=2)
    ap.add_argument("--settings", type=int, default=16)
    ap.add_argument("--spread", type=float, default=math.pi / 2)
    ap.add_argument("--adam", type=int, default=60)
    ap.add_argument("--lbfgs", type=int, default=40)
    ap.add_argument("--lr", type=float, default=0.01)
    ap.add_argument("--free", choices=["window", "downstream", "couplers", "all"], default="window")
    ap.add_argument("--accumulate", action="store_true", help="each window's fit on every window read so far")
    ap.add_argument("--band-steps", type=int, default=0)
    ap.add_argument("--tag", default="")
    ap.add_argument("--verbose", action="store_true")
    ap.add_argument("--transparency", action="store_true", help="only print how transparent the bar state is")
    args = ap.parse_args()
    if args.transparency:
        print(transparency())
        return
    torch.set_num_threads(1)
    RESULTS.mkdir(parents=True, exist_ok=True)
    tag = args.tag or (f"sc{args.sc_passes}_w{args.width}_k{args.settings}_s{args.spread:.2f}_p{args.passes}"
                       f"_a{args.adam}l{args.lbfgs}_lr{args.lr:g}_{args.free}{'_acc' if args.accumulate else ''}")
    for n in args.modes:
        run(n, args, RESULTS / f"{args.model}_{n}_chip{args.chip}_{tag}.jsonl")


if __name__ == "__main__":
    main()
