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


def data_for(hw, n: int, args, twin=None) -> Measurements:
    if args.near_bar:
        return near_bar(hw, twin, args.settings, n * n // 8, spread=args.near_bar)
    if args.centred:  # the first band of the self-configuring plan: closed in on the start twin's bar state
        from labsat.calibration.selfconfig import bar_controls
        return measure(hw, args.settings, n * n // 8, seed=0, schedule=(args.u,), centre=bar_controls(twin))
    if args.inputs != "one-hot":
        return measure(hw, args.settings, n * n // 8, seed=0, schedule=(args.u,))
    rng = np.random.default_rng(0)
    us = rng.uniform(0.0, args.u, (args.settings, hw.n_controls))
    if args.lit:
        us[:] = 0.0
        for k in range(args.settings):
            pick = rng.choice(hw.n_controls // 2, args.lit, replace=False)
            us[k, 2 * pick] = rng.uniform(0.0, 1.0, args.lit)
    return read(hw, us, np.tile(np.eye(n), (args.settings, 1, 1)))


def read(hw, us: np.ndarray, xs: np.ndarray) -> Measurements:
    """The chip's readings at settings ``us`` (K, H) with inputs ``xs`` (K, B, N)."""
    return Measurements(us, xs, np.stack([hw.forward(xs[k], us[k]) for k in range(len(us))]))


def near_bar(hw, twin, settings: int, inputs: int, spread: float) -> Measurements:
    """``--near-bar``: readings around ``twin``'s bar state: every θ at its bar point ± ``spread`` rad
    (uniform), every φ control in [0, ``spread``] rad (the self-configured twin's φ offsets hold near φ
    controls 0), ``inputs`` random inputs per setting. Near the bar state light stays close to its row, so a
    fit from the self-configured twin finds the φ offsets without the mesh's depth compounding them."""
    from labsat.calibration.selfconfig import bar_controls
    rng = np.random.default_rng(0)
    w0, h, n = float(twin.phase_per_u), twin.layout.n_heaters, twin.modes
    us = np.tile(bar_controls(twin), (settings, 1))
    us[:, 0::2] += rng.uniform(-spread, spread, (settings, h // 2)) / w0
    us[:, 1::2] = rng.uniform(0.0, spread, (settings, h // 2)) / w0
    us = np.clip(us, 0.0, 1.0)
    return read(hw, us, rng.uniform(0.0, 1.0, (settings, inputs, n)))


def start_twin(twin, hw, hidden, args) -> dict:
    """The fit's start: the datasheet twin, the self-configuring start (calibration.selfconfig), or an
    oracle (``oracle-theta``: the θ offsets set to the hidden ones plus N(0, ``--oracle-sigma``), φ at the
    datasheet's 0; a report of which start the fit needs, never a calibration)."""
    if args.start == "oracle-theta":
        rng = np.random.default_rng(99)
        with torch.no_grad():
            twin.offset[0::2] = torch.as_tensor(hidden[0::2] + rng.normal(0, args.oracle_sigma, len(hidden) // 2))
            if args.oracle_phi_sigma is not None:
                twin.offset[1::2] = torch.as_tensor(hidden[1::2] + rng.normal(0, args.oracle_phi_sigma, len(hidden) // 2))
        return {"start": args.start, "oracle_sigma": args.oracle_sigma, "oracle_phi_sigma": args.oracle_phi_sigma}
    if args.start == "selfconfig":
        from labsat.calibration.selfconfig import self_configure
        t0 = time.process_time()
        info = self_configure(hw, twin, passes=args.passes)
        return {"start": args.start, "start_readings": info.readings, "start_cpu_s": time.process_time() - t0}
    return {"start": "datasheet"}


def run(n: int, args) -> list[dict]:
    hw = DirectHardware(seed=args.chip, modes=n, error_model=args.model,
                        detector_range_w=1e-4 if n >= 64 else 5e-4)
    twin = MZIMeshTwin(n, hw.phase_per_u)
    hidden = hw.truth()["offset"]
    start_info = start_twin(twin, hw, hidden, args)
    data = data_for(hw, n, args, twin)
    floor = hw.noise_floor(data)

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
    print(json.dumps({**start_info, "modes": n, "floor": floor, "nominal_rmse": rmse(twin, data), "settings": args.settings,
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
    ap.add_argument("--start", choices=["datasheet", "selfconfig", "oracle-theta"], default="datasheet")
    ap.add_argument("--centred", action="store_true",
                    help="data: the band [0, --u] closed in on the start twin's bar state (measure(centre=))")
    ap.add_argument("--near-bar", type=float, default=0.0,
                    help="data: θ at the start twin's bar points ± this many rad (uniform), φ uniform over 2π")
    ap.add_argument("--oracle-sigma", type=float, default=0.0)
    ap.add_argument("--oracle-phi-sigma", type=float, default=None,
                    help="oracle-theta: also set the φ offsets to the hidden ones plus N(0, this)")
    ap.add_argument("--passes", type=int, default=2, help="selfconfig: passes over the columns")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--summary", action="store_true", help="only print the table of the result files")
    args = ap.parse_args()
    if args.summary:
        print(summary())
        return
    torch.set_num_threads(1)
    params = "all" if set(args.params) == set(FIT_PARAMETERS) else "-".join(args.params)
    tag = f"{args.opt}{args.lr:g}_{args.inputs}{args.lit or ''}_u{args.u:g}_{params}"
    if args.near_bar:
        tag += f"_nearbar{args.near_bar:g}"
    if args.centred:
        tag += "_centred"
    if args.start != "datasheet":
        tag += f"_{args.start}" + (f"{args.oracle_sigma:g}" + ("" if args.oracle_phi_sigma is None else f"phi{args.oracle_phi_sigma:g}")
                                      if args.start == "oracle-theta" else f"{args.passes}")
    for n in args.modes:
        out = args.out or RESULTS / f"{args.model}_{n}_{tag}.jsonl"
        out.parent.mkdir(parents=True, exist_ok=True)
        rows = run(n, args)
        out.write_text("".join(json.dumps(r) + "\n" for r in rows))


if __name__ == "__main__":
    main()
