"""Microring weight bank: offline/online, plain/SAT, on the device, on another device, under drift.

Two 8x8 banks (stations/microring.yaml) with an electronic nonlinearity between them and a digital
readout (labsat.multilayer.DeepClassifier), digits (8 PCA features, 10 classes). Both banks are
calibrated through the instruments (random heater settings x random inputs; global fit of the twin
with its crosstalk matrix); the calibration budget sets how imprecise the twin is.

    .venv/bin/python benchmarks/microring_bench.py [--seeds 2] [--out runs/bench/microring]

Writes ``results.json`` and ``table.md`` into ``--out`` and prints the table.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from labsat.calibration import measure
from labsat.calibration.fit import residual_summary
from labsat.config import load_config
from labsat.data import load_digits
from labsat.kinds import KINDS
from labsat.multilayer import DeepClassifier
from labsat.physical import PhysicalLayer
from labsat.station import Station
from labsat.train import TrainConfig, accuracy, train
from labsat.calibration.microring import fit_microring

REPO = Path(__file__).resolve().parents[1]


def calibrate(station, layer: str, settings: int, inputs: int, seed: int):
    hw = station.layer(layer)
    data = measure(hw, settings, inputs, seed=seed)
    fit_set, held = data.split(0.2, seed=seed)
    twin = KINDS["microring_bank"].make_twin(station.config, layer)
    fit_microring(twin, fit_set)
    return twin, residual_summary(twin, held)


def build(station, twins: dict, seed: int, hardware: bool = True) -> DeepClassifier:
    layers = [PhysicalLayer(twins[name], station.layer(name) if hardware else None, seed=seed + k)
              for k, name in enumerate(twins)]
    return DeepClassifier(layers, 10, seed=seed)


def device_accuracy(model, station, data, kelvin: float = 0.0) -> float:
    scenes = [station.lab.scenes[name] for name in station.layer_names]
    for s in scenes:
        s.extra_kelvin = kelvin
    try:
        model.physical.hardware.forget_controls()
        return accuracy(model, data.x_test, data.y_test, on_hardware=True)
    finally:
        for s in scenes:
            s.extra_kelvin = 0.0


def moved(model, station, twins, seed) -> DeepClassifier:
    """The same trained parameters, on another station's hardware."""
    other = build(station, twins, seed)
    other.load_state_dict(model.state_dict())
    return other


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--station", default=str(REPO / "stations" / "microring.yaml"))
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--chip", type=int, default=1)
    ap.add_argument("--other-chip", type=int, default=2)
    ap.add_argument("--cal-settings", type=int, default=48)
    ap.add_argument("--cal-inputs", type=int, default=16)
    ap.add_argument("--offline-epochs", type=int, default=15)
    ap.add_argument("--online-epochs", type=int, default=3)
    ap.add_argument("--rho", type=float, default=0.05)
    ap.add_argument("--sat", default="sam", choices=("sam", "asam"), help="the sharpness-aware optimizer")
    ap.add_argument("--drift", type=float, nargs="+", default=[0.5, 1.0])
    ap.add_argument("--out", default=str(REPO / "runs" / "bench" / "microring"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cfg = load_config(args.station)
    data = load_digits(8, seed=0)
    rows: dict[str, dict[str, list]] = {}
    cal_report = []
    t0 = time.time()
    for seed in range(args.seeds):
        with Station(cfg, chip_seed=args.chip) as st_a, Station(cfg, chip_seed=args.other_chip) as st_b:
            twins, res = {}, {}
            for name in st_a.layer_names:
                twins[name], res[name] = calibrate(st_a, name, args.cal_settings, args.cal_inputs, seed)
            cal_report.append({name: r["rmse"] for name, r in res.items()})
            models = {}
            plain = build(st_a, twins, seed)
            train(plain, data, TrainConfig(mode="offline", optimizer="adam", epochs=args.offline_epochs,
                                           lr=0.03, seed=seed))
            models["offline plain"] = plain
            sat = build(st_a, twins, seed)
            train(sat, data, TrainConfig(mode="offline", optimizer=args.sat, rho=args.rho, perturb="controls",
                                         epochs=args.offline_epochs, lr=0.03, seed=seed))
            models["offline SAT"] = sat
            for label, start, opt in (("online plain", plain, "adam"), ("online SAT", sat, args.sat)):
                m = moved(start, st_a, twins, seed)  # fine-tune a copy on the hardware
                train(m, data, TrainConfig(mode="online", optimizer=opt, rho=args.rho, perturb="controls",
                                           epochs=args.online_epochs, lr=0.01, seed=seed))
                models[label] = m
            for label, m in models.items():
                r = rows.setdefault(label, {})
                r.setdefault("twin", []).append(accuracy(m, data.x_test, data.y_test, on_hardware=False))
                r.setdefault("device", []).append(device_accuracy(m, st_a, data))
                r.setdefault("other device", []).append(device_accuracy(moved(m, st_b, twins, seed), st_b, data))
                for k in args.drift:
                    r.setdefault(f"drift {k:+g} K", []).append(device_accuracy(m, st_a, data, kelvin=k))
            print(f"seed {seed}: {time.time() - t0:.0f} s", flush=True)
    cols = list(next(iter(rows.values())).keys())
    lines = ["| microring (2 banks 8x8, digits) | " + " | ".join(cols) + " |",
             "|---|" + "---|" * len(cols)]
    for label, r in rows.items():
        lines.append(f"| {label} | " + " | ".join(f"{100 * np.mean(v):.1f} ± {100 * np.std(v):.1f}"
                                                 for v in r.values()) + " |")
    table = "\n".join(lines)
    meta = {"args": vars(args), "calibration_holdout_rmse": cal_report, "seconds": time.time() - t0,
            "drift_pm_per_kelvin": 80.0, "hwhm_pm": cfg.layers[next(iter(cfg.layers))].hwhm_pm}
    (out / "results.json").write_text(json.dumps({"rows": rows, "meta": meta}, indent=1))
    (out / "table.md").write_text(table + "\n")
    print(table)
    print(json.dumps(meta))


if __name__ == "__main__":
    main()
