"""Which learned twin for the pulse shaper + SHG kind at 40+ parameter pixels: architecture and sampling.

Measures through the whole stack (stations/pulse.yaml on virtual device ``--device``: 8 interleaved input
and ``--n-controls`` parameter macro-pixels, 20 spectrometer pixels) two query sets:

- **global**: ``--settings`` random parameter settings (uniform in [0, 1]) x 4 random inputs; the last
  300 settings are held out;
- **near**: 600 settings ``u0 + N(0, 0.05)`` around one random ``u0`` x 4 random inputs (active sampling
  near the parameters in use); the last 120 are held out;

plus the first 100 held-out global settings measured a second time: half the mean squared difference of
the repeats is the detector noise, so ``1 - noise / variance`` is the best R² any twin can reach on the
held-out data (the noise ceiling). Fits, on global or near training data: the kind's twin (an ensemble
of 3 :class:`~labsat.twins.pulse_learned.ShgTwin`), one ShgTwin with fewer queries, and the black-box
concatenating MLP (3 x 128); reports held-out R² (pooled over outputs) and fit time.

    .venv/bin/python benchmarks/pulse_twin.py --n-controls 40 [--out runs/bench/pulse-twin]
    .venv/bin/python benchmarks/pulse_twin.py --n-controls 100 --variants shg-3 shg-1 --settings 800
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
import yaml

from labsat.calibration import measure
from labsat.calibration.measure import Measurements
from labsat.config import parse_config
from labsat.station import Station
from labsat.twins.pulse_learned import fit_learned, make_ensemble, make_member, prediction_error

REPO = Path(__file__).resolve().parents[1]

VARIANTS = {  # name: (label, training set, settings used (None: all but the held-out), epochs, members, arch)
    "shg-3": ("ShgTwin ensemble of 3 (the kind's twin)", "global", None, 6, 3, "shg"),
    "shg-1": ("ShgTwin, 1 member", "global", None, 6, 1, "shg"),
    "shg-1-150": ("ShgTwin, 1 member, 150 settings", "global", 150, 6, 1, "shg"),
    "shg-near": ("ShgTwin, 1 member, near u0 only", "near", 480, 6, 1, "shg"),
    "mlp": ("MLP 3x128 (black box)", "global", None, 60, 1, "mlp"),
    "mlp-near": ("MLP 3x128 (black box), near u0 only", "near", 480, 100, 1, "mlp"),
}


def collect(n_controls: int, settings: int, device: int, out: Path) -> dict[str, np.ndarray]:
    path = out / f"queries-{n_controls}-{settings}-d{device}.npz"
    if path.exists():
        return dict(np.load(path))
    d = yaml.safe_load((REPO / "stations" / "pulse.yaml").read_text())
    d["layers"]["shg"]["n_controls"] = n_controls
    d["station"]["calibration_dir"] = str(out / "cal")
    d["station"]["runs_dir"] = str(out / "runs")
    with Station(parse_config(d), chip_seed=device) as st:
        hw = st.layer()
        t0 = time.time()
        g = measure(hw, settings, 4, seed=0)
        rep = np.stack([hw.forward(g.x[k], g.u[k]) for k in range(settings - 300, settings - 200)])
        u0 = np.random.default_rng(5).uniform(0, 1, n_controls)
        rng = np.random.default_rng(57)
        us = np.clip(u0 + 0.05 * rng.standard_normal((600, n_controls)), 0, 1)
        xs = rng.uniform(0, 1, (600, 4, hw.modes))
        ps = np.stack([hw.forward(xs[k], us[k]) for k in range(600)])
        wall = time.time() - t0
    data = {"u": g.u, "x": g.x, "p": g.p, "rep": rep, "nu": us, "nx": xs, "np": ps, "wall": np.array(wall)}
    np.savez(path, **data)
    return data


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n-controls", type=int, default=40)
    ap.add_argument("--settings", type=int, default=800, help="global settings measured (the last 300 held out)")
    ap.add_argument("--device", type=int, default=1)
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    ap.add_argument("--out", default=str(REPO / "runs" / "bench" / "pulse-twin"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    d = collect(args.n_controls, args.settings, args.device, out)
    n_g = len(d["u"]) - 300
    n_in = d["x"].shape[-1]
    sets = {"global": Measurements(d["u"], d["x"], d["p"]), "near": Measurements(d["nu"], d["nx"], d["np"])}
    held = {"global": Measurements(d["u"][n_g:], d["x"][n_g:], d["p"][n_g:]),
            "near": Measurements(d["nu"][480:], d["nx"][480:], d["np"][480:])}
    first = d["p"][n_g:n_g + 100]
    noise = 0.5 * ((first - d["rep"]) ** 2).sum()
    ceiling = float(1 - noise / ((first - first.reshape(-1, first.shape[-1]).mean(0)) ** 2).sum())
    cfg = yaml.safe_load((REPO / "stations" / "pulse.yaml").read_text())["layers"]["shg"]
    shg_sizes = {"pixel_bins": cfg["pixel_bins"], "layout": cfg["input_layout"]}
    rows = []
    for key in args.variants:
        name, which, n, epochs, members, arch = VARIANTS[key]
        n = n_g if n is None else n
        s = sets[which]
        train = Measurements(s.u[:n], s.x[:n], s.p[:n])
        n_out = train.p.shape[-1]
        sizes = shg_sizes if arch == "shg" else {}
        twin = (make_ensemble(n_in, args.n_controls, n_out, members, arch, **sizes) if members > 1
                else make_member(n_in, args.n_controls, n_out, arch, **sizes))
        t0 = time.time()
        fit_learned(twin, train, epochs=epochs)
        row = {"twin": name, "queries": n * 4, "fit_s": time.time() - t0,
               "r2_global": prediction_error(twin, held["global"])["r2"],
               "r2_near": prediction_error(twin, held["near"])["r2"]}
        rows.append(row)
        print(row, flush=True)
        (out / f"results-{args.n_controls}.json").write_text(json.dumps(
            {"n_controls": args.n_controls, "device": args.device, "noise_ceiling_r2": ceiling,
             "collect_wall_s": float(d["wall"]), "rows": rows}, indent=1))
    lines = [f"{args.n_controls} parameter pixels, device {args.device}; noise ceiling of the held-out R² "
             f"{ceiling:.3f}; {len(d['u'])} + 100 + 600 settings x 4 queries measured in {float(d['wall']):.0f} s", "",
             "| twin | training queries | held-out R², global | held-out R², near u0 | fit time (s) |",
             "|---|---|---|---|---|"]
    lines += [f"| {r['twin']} | {r['queries']} | {r['r2_global']:.3f} | {r['r2_near']:.3f} | {r['fit_s']:.0f} |"
              for r in rows]
    (out / f"table-{args.n_controls}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
