"""Can the pulse kind see its input? Input vs parameter vs noise on the virtual SHG bench, per input layout.

Diagnosis for issue 17 (round 2). Through the whole stack (stations/pulse.yaml, WaveShaper over HTTP,
spectrometer over SCPI, hidden physics in drivers/sim/shg.py), per device and per ``input_layout``
(``first``: the 8 input pixels in a block at the band's edge; ``interleaved``: spread across the band):

- at ``--settings`` parameter settings (uniform in [0, 1]^40, and near the flat start ``0.5 + N(0, 0.02)``
  that PAT training uses), ``--inputs`` random inputs, each measured twice: the detector-noise variance
  (half the mean squared difference of the repeats), the variance the input causes at a fixed setting
  (of the repeat means, less their noise share) and the variance the parameters cause (of the
  per-setting means over inputs); ratios averaged over the 20 outputs;
- a logistic readout (scikit-learn, C = 10) trained on the 20 measured outputs for the vowels'
  1140 training tokens at one fixed setting, scored on the 380 test tokens: how much vowel information
  one layer keeps, before any training of its parameters;
- the data set's own ceiling: logistic regression and a 64x64 MLP on the 8 raw vowel features
  (test speakers unseen), vowel split seeds 0-2.

    .venv/bin/python benchmarks/pulse_visibility.py --devices 1 2 3 --out runs/bench/pulse-visibility
    .venv/bin/python benchmarks/pulse_visibility.py --devices 1 --layouts interleaved --n-inputs 12 --data digits \
        --no-ceiling --out runs/bench/pulse-visibility-12   # a wider input (12 pixels), digits readout
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import yaml

from labsat.config import parse_config
from labsat.data import load_digits
from labsat.station import Station
from labsat.vowels import load_vowels

REPO = Path(__file__).resolve().parents[1]


def station_config(layout: str, tmp: Path, n_inputs: int | None = None):
    d = yaml.safe_load((REPO / "stations" / "pulse.yaml").read_text())
    d["station"]["calibration_dir"] = str(tmp / "cal")
    d["station"]["runs_dir"] = str(tmp / "runs")
    layer = next(iter(d["layers"].values()))
    layer["input_layout"] = layout
    if n_inputs:
        layer["n_inputs"] = n_inputs
    return parse_config(d)


def variances(hw, us: np.ndarray, n_inputs: int, rng) -> dict[str, float]:
    means, sig_x, noise = [], [], []
    for u in us:
        x = rng.uniform(0, 1, (n_inputs, hw.modes))
        y1, y2 = hw.forward(x, u), hw.forward(x, u)
        nv = 0.5 * ((y1 - y2) ** 2).mean(0)  # per output
        ym = 0.5 * (y1 + y2)
        sig_x.append(np.maximum(ym.var(0) - nv / 2, 0.0))
        noise.append(nv)
        means.append(ym.mean(0))
    nv, sx = np.mean(noise, 0), np.mean(sig_x, 0)
    su = np.var(means, 0)
    return {"input_over_noise": float(sx.sum() / nv.sum()), "params_over_input": float(su.sum() / max(sx.sum(), 1e-30)),
            "noise_std": float(np.sqrt(nv).mean()), "level": float(np.mean(means))}


def readout(hw, u: np.ndarray, data) -> float:
    from sklearn.linear_model import LogisticRegression

    yt = hw.forward(data.x_train.numpy(), u)
    yv = hw.forward(data.x_test.numpy(), u)
    mu, sd = yt.mean(0), yt.std(0) + 1e-12
    clf = LogisticRegression(max_iter=5000, C=10.0).fit((yt - mu) / sd, data.y_train.numpy())
    return float(clf.score((yv - mu) / sd, data.y_test.numpy()))


def ceiling(seeds=(0, 1, 2)) -> dict[str, list[float]]:
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier

    out = {"logistic": [], "mlp 64x64": []}
    for s in seeds:
        d = load_vowels(8, seed=s)
        xt, yt, xv, yv = d.x_train.numpy(), d.y_train.numpy(), d.x_test.numpy(), d.y_test.numpy()
        out["logistic"].append(float(LogisticRegression(max_iter=5000, C=10.0).fit(xt, yt).score(xv, yv)))
        out["mlp 64x64"].append(float(MLPClassifier((64, 64), alpha=1e-3, max_iter=3000, random_state=s)
                                      .fit(xt, yt).score(xv, yv)))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--devices", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--layouts", nargs="+", default=["first", "interleaved"])
    ap.add_argument("--settings", type=int, default=8)
    ap.add_argument("--inputs", type=int, default=32)
    ap.add_argument("--n-inputs", type=int, default=None, help="override the station's input pixels (8)")
    ap.add_argument("--data", default="vowels", choices=("vowels", "digits"), help="data set of the readout")
    ap.add_argument("--no-ceiling", action="store_true", help="skip the vowels' ceiling (MLPs, a minute)")
    ap.add_argument("--out", default=str(REPO / "runs" / "bench" / "pulse-visibility"))
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    n_in = args.n_inputs or 8
    data = load_vowels(n_in, seed=0) if args.data == "vowels" else load_digits(n_in, seed=0)
    rows = []
    for dev in args.devices:
        for layout in args.layouts:
            t0 = time.time()
            with Station(station_config(layout, out, args.n_inputs), chip_seed=dev) as st:
                hw = st.layer()
                rng = np.random.default_rng(dev)
                n_c = hw.n_controls
                uni = rng.uniform(0, 1, (args.settings, n_c))
                flat = np.clip(0.5 + 0.02 * rng.standard_normal((args.settings, n_c)), 0, 1)
                row = {"device": dev, "layout": layout,
                       "random": variances(hw, uni, args.inputs, rng), "flat": variances(hw, flat, args.inputs, rng),
                       "readout_random": readout(hw, uni[0], data), "readout_flat": readout(hw, flat[0], data),
                       "queries": hw.samples}
            row["wall_s"] = time.time() - t0
            rows.append(row)
            print(json.dumps(row), flush=True)
            (out / "results.json").write_text(json.dumps({"runs": rows}, indent=1))
    ceil = {} if args.no_ceiling else ceiling()
    lines = ["| input layout | device | input / noise variance (random u; flat u) | parameter / input variance "
             f"(random u; flat u) | noise std (10^4 counts) | logistic readout on one layer's 20 outputs, {args.data} "
             "(random u; flat u) | queries | wall s |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        a, b = r["random"], r["flat"]
        lines.append(f"| {r['layout']} | {r['device']} | {a['input_over_noise']:.1f}; {b['input_over_noise']:.1f} | "
                     f"{a['params_over_input']:.1f}; {b['params_over_input']:.1f} | {a['noise_std']:.4f} | "
                     f"{100 * r['readout_random']:.1f}; {100 * r['readout_flat']:.1f} % | {r['queries']} | "
                     f"{r['wall_s']:.0f} |")
    lines.append("")
    if ceil:
        lines.append("Vowel data set's own ceiling (8 raw features, test speakers unseen, split seeds 0-2): "
                     + "; ".join(f"{k} {100 * np.mean(v):.1f} ± {100 * np.std(v):.1f} % "
                                 f"({', '.join(f'{100 * a:.1f}' for a in v)})" for k, v in ceil.items()))
    (out / "results.json").write_text(json.dumps({"runs": rows, "ceiling": ceil}, indent=1))
    (out / "table.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
