"""What network can reach >= 92 % on the pulse kind's digits, in silico on the NOISELESS twin (issue 17, round 4).

Capacity first: before any device noise, which of the paper-shaped networks (physical SHG layers with digital
layers between) can represent the task at all? Per station shape (input / parameter pixels), one device is
calibrated once (``benchmarks/pulse_pat.py``'s ``calibrate_device``, the grid's settings) and each network
variant is trained in silico on the device's twin (Adam, the same seed) and scored on the test set:

- on the noiseless twin (capacity: what the network + SHG layer can represent);
- on the twin with the detector's noise added to its outputs (``noisy_twin_accuracy``: what noise leaves), for
  each spectrometer averaging count in ``--noise-averages`` (noise / sqrt(count));
- on the device (in silico deployed as is; 449 test queries, plus none for training).

A variant is ``physical layers, hidden width, feature order, epochs``, e.g. ``2,0,index,15`` (round 3's
network) or ``3,64,bright,40``. Tuning device only (device 1, seed 0): the variants are chosen here, evaluated
on devices 2-6 x seeds 0-2 with ``benchmarks/pulse_pat.py``. Results are written after every run.

    .venv/bin/python benchmarks/pulse_capacity.py --shapes 8x40 12x40 --averages 1 --noise-averages 1 4 16 64 \\
        --variants 2,0,index,15 2,0,bright,15 --out runs/bench/pulse-capacity
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pulse_pat import DATASETS, REPO, bright_order, build, calibrate_device, noisy_twin_accuracy, station_config  # noqa: E402

from labsat.station import Station  # noqa: E402
from labsat.train import TrainConfig, accuracy, train  # noqa: E402


def parse_variant(text: str) -> dict:
    try:
        layers, hidden, order, epochs = text.split(",")
        v = {"physical": int(layers), "hidden": int(hidden), "order": order, "epochs": int(epochs)}
    except ValueError:
        raise SystemExit(f"--variants: {text!r} is not 'layers,hidden,order,epochs' (e.g. 2,0,index,15)") from None
    if v["physical"] < 1 or v["hidden"] < 0 or v["epochs"] < 1 or order not in ("index", "bright"):
        raise SystemExit(f"--variants: {text!r}: layers >= 1, hidden >= 0, order index|bright, epochs >= 1")
    return v


def fmt(by_count: dict) -> str:
    return ", ".join(f"{n}: {100 * a:.1f}" for n, a in by_count.items())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--station", default=str(REPO / "stations" / "pulse.yaml"))
    ap.add_argument("--shapes", nargs="+", default=["8x40"], help="input x parameter pixels per physical layer")
    ap.add_argument("--variants", nargs="+", default=["2,0,index,15"], help="layers,hidden,order,epochs")
    ap.add_argument("--data", default="digits", choices=tuple(DATASETS))
    ap.add_argument("--device", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cal-settings", type=int, default=600)
    ap.add_argument("--twin-epochs", type=int, default=6)
    ap.add_argument("--lr", type=float, default=0.02)
    ap.add_argument("--averages", type=int, default=None,
                    help="the spectrometer's averaging count during calibration (default: the station file's)")
    ap.add_argument("--noise-averages", type=int, nargs="+", default=[1],
                    help="averaging counts at which to score the twin with the detector's noise")
    ap.add_argument("--out", default=str(REPO / "runs" / "bench" / "pulse-capacity"))
    args = ap.parse_args()
    args.cal_near, args.init = 0.0, "flat"  # what calibrate_device reads (the grid's settings)
    variants = [parse_variant(v) for v in args.variants]
    torch.set_num_threads(1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    runs, devices = [], {}
    for shape in args.shapes:
        n_inputs, n_controls = (int(k) for k in shape.split("x"))
        cfg = station_config(Path(args.station), n_controls, out / shape, n_inputs, args.averages)
        lname = next(iter(cfg.layers))
        lc = cfg.layers[lname]
        plain = DATASETS[args.data](lc.n_inputs, seed=0)
        data_by_order = {"index": plain, "bright": bright_order(plain, lc.n_inputs, lc.n_controls, lc.input_layout)}
        with Station(cfg, chip_seed=args.device) as st:
            hw = st.layer()
            twin, devices[shape] = calibrate_device(hw, cfg, lname, args.device, args)
            for v in variants:
                data = data_by_order[v["order"]]
                t0 = time.time()
                model = build(twin, hw, args.seed, data.n_classes, "flat", v["physical"], v["hidden"])
                train(model, data, TrainConfig(mode="offline", optimizer="adam", epochs=v["epochs"], lr=args.lr,
                                               seed=args.seed, batch_size=64))
                model.recalibrate_norms(data.x_train, on_hardware=False)
                run = {"shape": shape, **v, "train_s": time.time() - t0,
                       "train_twin": accuracy(model, data.x_train, data.y_train, on_hardware=False),
                       "twin_test": accuracy(model, data.x_test, data.y_test, on_hardware=False),
                       "twin_noisy_test": {n: noisy_twin_accuracy(model, twin, data, args.seed, n)
                                           for n in args.noise_averages},
                       "device_test": accuracy(model, data.x_test, data.y_test, on_hardware=True)}
                runs.append(run)
                print(f"{shape} {v}: noiseless twin {100 * run['twin_test']:.1f} % (train "
                      f"{100 * run['train_twin']:.1f}), twin + noise (averages: %) {fmt(run['twin_noisy_test'])}, device "
                      f"{100 * run['device_test']:.1f} %, {run['train_s']:.0f} s", flush=True)
                (out / "results.json").write_text(json.dumps({"args": vars(args), "devices": devices, "runs": runs},
                                                             indent=1))
    lines = ["| shape (inputs x parameters) | physical layers | hidden | feature order | epochs | noiseless twin, "
             "train / test (%) | twin + detector noise, by averaging count (%) | device (%) | s |", "|---|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['shape']} | {r['physical']} | {r['hidden']} | {r['order']} | {r['epochs']} | "
              f"{100 * r['train_twin']:.1f} / {100 * r['twin_test']:.1f} | {fmt(r['twin_noisy_test'])} | "
              f"{100 * r['device_test']:.1f} | {r['train_s']:.0f} |" for r in runs]
    (out / "table.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
