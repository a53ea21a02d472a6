"""Which learned twin for the pulse shaper + SHG kind at 40 parameter pixels: architecture and sampling.

Measures, on virtual device 1 (stations/pulse.yaml: 8 input and ``--n-controls`` parameter macro-pixels,
20 spectrometer pixels), two query sets:

- **global**: 3000 random parameter settings (uniform in [0, 1]) x 4 random inputs; settings 2500-2999
  are held out;
- **near**: 1500 settings ``u0 + N(0, 0.05)`` around one random ``u0`` x 4 random inputs (active sampling
  near the parameters in use); settings 1200-1499 are held out.

and fits: the concatenating MLP (3 x 128), the PAT authors' split input/parameter network (a parameter
network predicting a 2-layer, 32-unit main network), and an ensemble of 3 MLPs, on global or near data,
reporting held-out R² (pooled over outputs) and fit time. Outputs are in 10^4 counts; the detector noise
at these signal levels (about 600 counts: shot noise 25 counts, read noise 15) is about 0.003, so the
near set's R² cannot exceed about 0.96.

    .venv/bin/python benchmarks/pulse_twin.py [--n-controls 40] [--out runs/bench/pulse-twin]
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

VARIANTS = [  # (name, training set, settings used, epochs, members, arch, sizes)
    ("MLP 3x128, global", "global", 2500, 60, 1, "mlp", {}),
    ("split net, global", "global", 2500, 60, 1, "split", {}),
    ("MLP 3x128, near", "near", 1200, 100, 1, "mlp", {}),
    ("MLP 3x256, near", "near", 1200, 100, 1, "mlp", {"hidden": 256}),
    ("ensemble of 3 MLPs, near", "near", 1200, 100, 3, "mlp", {}),
    ("split net, near", "near", 1200, 60, 1, "split", {}),
    ("MLP 3x128, near, 1/4 of the queries", "near", 300, 150, 1, "mlp", {}),
]


def collect(n_controls: int, out: Path) -> dict[str, np.ndarray]:
    path = out / f"queries-{n_controls}.npz"
    if path.exists():
        return dict(np.load(path))
    d = yaml.safe_load((REPO / "stations" / "pulse.yaml").read_text())
    d["layers"]["shg"]["n_controls"] = n_controls
    d["station"]["calibration_dir"] = str(out / "cal")
    d["station"]["runs_dir"] = str(out / "runs")
    with Station(parse_config(d), chip_seed=1) as st:
        hw = st.layer()
        g = measure(hw, 3000, 4, seed=0)
        u0 = np.random.default_rng(5).uniform(0, 1, n_controls)
        rng = np.random.default_rng(57)
        us = np.clip(u0 + 0.05 * rng.standard_normal((1500, n_controls)), 0, 1)
        xs = rng.uniform(0, 1, (1500, 4, 8))
        ps = np.stack([hw.forward(xs[k], us[k]) for k in range(1500)])
    data = {"u": g.u, "x": g.x, "p": g.p, "nu": us, "nx": xs, "np": ps}
    np.savez(path, **data)
    return data


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n-controls", type=int, default=40)
    ap.add_argument("--out", default=str(REPO / "runs" / "bench" / "pulse-twin"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    d = collect(args.n_controls, out)
    sets = {"global": Measurements(d["u"], d["x"], d["p"]), "near": Measurements(d["nu"], d["nx"], d["np"])}
    held = {"global": Measurements(d["u"][2500:], d["x"][2500:], d["p"][2500:]),
            "near": Measurements(d["nu"][1200:], d["nx"][1200:], d["np"][1200:])}
    rows = []
    for name, which, n, epochs, members, arch, sizes in VARIANTS:
        s = sets[which]
        train = Measurements(s.u[:n], s.x[:n], s.p[:n])
        n_out = train.p.shape[-1]
        twin = (make_ensemble(8, args.n_controls, n_out, members, arch, **sizes) if members > 1
                else make_member(8, args.n_controls, n_out, arch, **sizes))
        t0 = time.time()
        fit_learned(twin, train, epochs=epochs)
        row = {"twin": name, "queries": n * 4, "fit_s": time.time() - t0,
               "r2_global": prediction_error(twin, held["global"])["r2"],
               "r2_near": prediction_error(twin, held["near"])["r2"]}
        rows.append(row)
        print(row, flush=True)
    lines = [f"| twin ({args.n_controls} parameter pixels) | training queries | held-out R², global | "
             "held-out R², near u0 | fit time (s) |", "|---|---|---|---|---|"]
    lines += [f"| {r['twin']} | {r['queries']} | {r['r2_global']:.2f} | {r['r2_near']:.2f} | {r['fit_s']:.0f} |"
              for r in rows]
    (out / "results.json").write_text(json.dumps(rows, indent=1))
    (out / "table.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
