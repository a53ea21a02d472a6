"""Diagnosis of the labsat error model's large-mesh calibration: one band, one fit from the datasheet twin,
with the fitted offsets compared with the chip's hidden ones along the way (issue 12).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/paper_scale_calibration_diag.py --modes 32 48 64
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/paper_scale_calibration_diag.py --modes 48 --lr 0.005
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/paper_scale_calibration_diag.py --modes 48 --params offset
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/paper_scale_calibration_diag.py --modes 48 --opt lbfgs
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/paper_scale_calibration_diag.py --modes 64 --u 0.03 \
        --inputs one-hot --settings 64 --lr 0.01 --steps 200 --params offset coupler_error
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/paper_scale_calibration_diag.py --modes 64 --inputs one-hot \
        --lit 48 --settings 256 --lr 0.01 --steps 150 --params offset log_eff coupler_error

Chip 1 (the tuning chip), the virtual chip driven directly (``calibration.simchip.DirectHardware``), detector
range as in ``paper_scale_calibration.py``. Data: ``--settings`` heater settings uniform in [0, ``--u``] with
N²/8 random inputs each (the first band of ``calibration.progressive``'s plan), or ``--inputs one-hot`` (every
input port alone, N inputs per setting); ``--lit K``: every heater off except K random θ heaters per setting,
uniform over the whole control range (a sparse fringe per MZI). Fit: ``--params`` of the twin with Adam
(``--lr``) or L-BFGS, the mesh in float32 as in the banded fit. Every ``--every`` steps it prints the train
RMSE / noise floor and the RMS error of the fitted θ and φ offsets against the hidden ones (wrapped to
(-π, π]; a report reading the truth, never used by the fit). Writes one line of JSON per checkpoint to
``--out`` (default benchmarks/results/paper_scale_calibration_diag/<model>_<N>_<tag>.jsonl); ``--summary``
prints the table of every result file.
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

from labsat.calibration.fit import _loss, fitting, rmse  # noqa: E402
from labsat.calibration.measure import Measurements, measure  # noqa: E402
from labsat.calibration.simchip import DirectHardware  # noqa: E402
from labsat.twins.mzi import FIT_PARAMETERS, MZIMeshTwin  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "paper_scale_calibration_diag"


def data_for(hw, n: int, args) -> Measurements:
    if args.inputs != "one-hot":
        return measure(hw, args.settings, n * n // 8, seed=0, schedule=(args.u,))
    rng = np.random.default_rng(0)
    us = rng.uniform(0.0, args.u, (args.settings, hw.n_controls))
    if args.lit:
        us[:] = 0.0
        for k in range(args.settings):
            pick = rng.choice(hw.n_controls // 2, args.lit, replace=False)
            us[k, 2 * pick] = rng.uniform(0.0, 1.0, args.lit)
    xs = np.tile(np.eye(n), (args.settings, 1, 1))
    return Measurements(us, xs, np.stack([hw.forward(xs[k], us[k]) for k in range(args.settings)]))


def run(n: int, args) -> list[dict]:
    hw = DirectHardware(seed=args.chip, modes=n, error_model=args.model,
                        detector_range_w=1e-4 if n >= 64 else 5e-4)
    twin = MZIMeshTwin(n, hw.phase_per_u)
    data = data_for(hw, n, args)
    floor = hw.noise_floor(data)
    hidden = hw.truth()["offset"]

    def offset_error() -> tuple[float, float]:
        d = (twin.offset.detach().numpy() - hidden + np.pi) % (2 * np.pi) - np.pi
        return float(np.sqrt(np.mean(d[0::2] ** 2))), float(np.sqrt(np.mean(d[1::2] ** 2)))

    rows = []
    t0 = time.process_time()

    def record(step: int, loss: float) -> None:
        theta, phi = offset_error()
        row = {"modes": n, "step": step, "train_rmse": math.sqrt(loss), "ratio": math.sqrt(loss) / floor,
               "theta_offset_err": theta, "phi_offset_err": phi, "cpu_s": time.process_time() - t0}
        rows.append(row)
        print(json.dumps(row), flush=True)

    params = [getattr(twin, k) for k in args.params]
    loss_fn = _loss(twin, data, torch.float32)
    print(json.dumps({"modes": n, "floor": floor, "nominal_rmse": rmse(twin, data), "settings": args.settings,
                      "inputs": args.inputs, "u": args.u, "lit": args.lit}), flush=True)
    with fitting(params, 1):
        if args.opt == "adam":
            opt = torch.optim.Adam(params, lr=args.lr)
            for i in range(args.steps):
                opt.zero_grad()
                loss = loss_fn()
                loss.backward()
                opt.step()
                if i % args.every == 0 or i == args.steps - 1:
                    record(i, loss.item())
        else:
            opt = torch.optim.LBFGS(params, lr=1.0, max_iter=args.every, line_search_fn="strong_wolfe")

            def closure():
                opt.zero_grad()
                loss = loss_fn()
                loss.backward()
                return loss

            for i in range(args.steps // args.every):
                opt.step(closure)
                with torch.no_grad():
                    record((i + 1) * args.every, loss_fn().item())
    return rows


def summary() -> str:
    """Markdown: per result file, the checkpoints at steps 0, 100 and the last (ratio, θ / φ offset errors)."""
    out = ["| model | N | fit (file tag) | step | train RMSE / floor | θ offset error (rad) | φ offset error (rad) | CPU s |",
           "|---|---:|---|---:|---:|---:|---:|---:|"]
    for path in sorted(RESULTS.glob("*.jsonl"), key=lambda p: (p.name.split("_")[0], int(p.name.split("_")[1]), p.name)):
        model, n, tag = path.stem.split("_", 2)
        rows = [json.loads(line) for line in path.read_text().splitlines()]
        for r in rows:
            if r["step"] in (0, 100) or r is rows[-1]:
                out.append(f"| {model} | {n} | {tag} | {r['step']} | {r['ratio']:.2f} | {r['theta_offset_err']:.3f} | "
                           f"{r['phi_offset_err']:.3f} | {r['cpu_s']:.0f} |")
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="labsat", choices=["labsat", "paper"])
    ap.add_argument("--modes", type=int, nargs="+", default=[32, 48, 64])
    ap.add_argument("--chip", type=int, default=1, help="1: the tuning chip")
    ap.add_argument("--u", type=float, default=0.12, help="controls uniform in [0, u] (the first band)")
    ap.add_argument("--settings", type=int, default=32)
    ap.add_argument("--inputs", choices=["random", "one-hot"], default="random")
    ap.add_argument("--lit", type=int, default=0, help="one-hot only: K lit θ heaters per setting, the rest off")
    ap.add_argument("--opt", choices=["adam", "lbfgs"], default="adam")
    ap.add_argument("--lr", type=float, default=0.02)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--every", type=int, default=50)
    ap.add_argument("--params", nargs="+", default=list(FIT_PARAMETERS), choices=FIT_PARAMETERS)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--summary", action="store_true", help="only print the table of the result files")
    args = ap.parse_args()
    if args.summary:
        print(summary())
        return
    torch.set_num_threads(1)
    params = "all" if set(args.params) == set(FIT_PARAMETERS) else "-".join(args.params)
    tag = f"{args.opt}{args.lr:g}_{args.inputs}{args.lit or ''}_u{args.u:g}_{params}"
    for n in args.modes:
        out = args.out or RESULTS / f"{args.model}_{n}_{tag}.jsonl"
        out.parent.mkdir(parents=True, exist_ok=True)
        rows = run(n, args)
        out.write_text("".join(json.dumps(r) + "\n" for r in rows))


if __name__ == "__main__":
    main()
