"""Pulse shaper + SHG + spectrometer: learned twin, then offline/online, plain/SAT; transfer; drift.

One physical layer (stations/pulse.yaml: 8 input macro-pixels, 40 parameter macro-pixels, 20
spectrometer pixels) with a digital linear readout; vowels (synthetic, sampled around Peterson & Barney
1952's published means, labsat.vowels; 8 features, split by speaker) or digits. The physics is treated
as unknown: the twin is an MLP learned from measured (input, parameters, output) triples
(labsat.twins.pulse_learned). Online training is physics-aware training (hardware forward,
learned-twin backward) with the twin refreshed on data measured near the current parameters before
each online epoch.

    .venv/bin/python benchmarks/pulse_bench.py [--data vowels|digits] [--out runs/bench/pulse-vowels]
"""
from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path

import numpy as np
import torch

from labsat.calibration import measure
from labsat.calibration.pulse import TwinRefresher, fit_learned, prediction_error
from labsat.config import load_config
from labsat.data import load_digits
from labsat.kinds import KINDS
from labsat.physical import HybridClassifier, PhysicalLayer
from labsat.station import Station
from labsat.train import TrainConfig, accuracy, train
from labsat.vowels import load_vowels

REPO = Path(__file__).resolve().parents[1]


def device_accuracy(model, station, data, kelvin: float = 0.0) -> float:
    scene = station.lab.scenes[station.layer_names[0]]
    scene.extra_kelvin = kelvin
    try:
        return accuracy(model, data.x_test, data.y_test, on_hardware=True)
    finally:
        scene.extra_kelvin = 0.0


def on(model, station, twin) -> HybridClassifier:
    """The same trained parameters, on ``station``'s hardware, with ``twin``."""
    m = HybridClassifier(PhysicalLayer(twin, station.layer()), model.readout.out_features)
    m.load_state_dict(model.state_dict())
    return m


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--station", default=str(REPO / "stations" / "pulse.yaml"))
    ap.add_argument("--data", default="vowels", choices=("vowels", "digits"))
    ap.add_argument("--seeds", type=int, default=1)
    ap.add_argument("--chip", type=int, default=1)
    ap.add_argument("--other-chip", type=int, default=2)
    ap.add_argument("--cal-settings", type=int, default=1000)
    ap.add_argument("--cal-inputs", type=int, default=4)
    ap.add_argument("--twin-epochs", type=int, default=150)
    ap.add_argument("--offline-epochs", type=int, default=30)
    ap.add_argument("--online-epochs", type=int, default=2)
    ap.add_argument("--refresh-settings", type=int, default=24)
    ap.add_argument("--refresh-inputs", type=int, default=16)
    ap.add_argument("--rho", type=float, default=0.1)
    ap.add_argument("--drift", type=float, nargs="+", default=[1.0, 2.0])
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    torch.set_num_threads(1)
    out = Path(args.out or REPO / "runs" / "bench" / f"pulse-{args.data}")
    out.mkdir(parents=True, exist_ok=True)
    cfg = load_config(args.station)
    lname = next(iter(cfg.layers))
    n_in = cfg.layers[lname].n_inputs
    data = load_vowels(n_in, seed=0) if args.data == "vowels" else load_digits(n_in, seed=0)
    rows: dict[str, dict[str, list]] = {}
    twin_report = []
    t0 = time.time()
    for seed in range(args.seeds):
        with Station(cfg, chip_seed=args.chip) as st_a, Station(cfg, chip_seed=args.other_chip) as st_b:
            hw = st_a.layer()
            cal = measure(hw, args.cal_settings, args.cal_inputs, seed=seed)
            fit_set, held = cal.split(0.2, seed=seed)
            twin = KINDS["pulse_shg"].make_twin(cfg, lname)
            fit_learned(twin, fit_set, epochs=args.twin_epochs)
            report = {"held_out": prediction_error(twin, held), "samples": int(cal.x.shape[0] * cal.x.shape[1])}
            t_cal = time.time() - t0
            models, hw_samples = {}, {}
            for label, opt in (("offline plain", "adam"), ("offline SAT", "sam")):
                m = HybridClassifier(PhysicalLayer(copy.deepcopy(twin), None, seed=seed), data.n_classes, seed=seed)
                train(m, data, TrainConfig(mode="offline", optimizer=opt, rho=args.rho, perturb="controls",
                                           epochs=args.offline_epochs, lr=0.03, seed=seed))
                models[label] = m
            for label, start, opt in (("online plain (PAT)", "offline plain", "adam"),
                                      ("online SAT (PAT+SAT)", "offline SAT", "sam")):
                own = copy.deepcopy(twin)  # each online run refreshes its own copy of the twin
                m = on(models[start], st_a, own)
                refresher = TwinRefresher(own, m.physical.hardware, calibration=fit_set,
                                          settings=args.refresh_settings, inputs=args.refresh_inputs,
                                          seed=seed)
                x_pool = data.x_train.numpy()
                before = [refresher.refresh(m.physical.controls().detach().numpy(), x_pool)]
                def refresh(rec, m=m, refresher=refresher, x_pool=x_pool, before=before):
                    if rec.epoch < args.online_epochs:
                        before.append(refresher.refresh(m.physical.controls().detach().numpy(), x_pool))
                train(m, data, TrainConfig(mode="online", optimizer=opt, rho=args.rho, perturb="controls",
                                           epochs=args.online_epochs, lr=0.01, seed=seed), on_epoch=refresh)
                m.physical.hardware = None
                models[label] = m
                hw_samples[label] = {"training": None, "twin_refresh": refresher.samples,
                                     "twin_error_before_refresh_std_units": before}
            twin_report.append({**report, "calibration_seconds": t_cal, "online": hw_samples})
            for label, m in models.items():
                r = rows.setdefault(label, {})
                r.setdefault("twin", []).append(accuracy(m, data.x_test, data.y_test, on_hardware=False))
                ma = on(m, st_a, m.physical.twin)
                r.setdefault("device", []).append(device_accuracy(ma, st_a, data))
                r.setdefault("other device", []).append(device_accuracy(on(m, st_b, m.physical.twin), st_b, data))
                for k in args.drift:
                    r.setdefault(f"drift {k:+g} K", []).append(device_accuracy(ma, st_a, data, kelvin=k))
            print(f"seed {seed}: {time.time() - t0:.0f} s", flush=True)
    cols = list(next(iter(rows.values())).keys())
    lines = [f"| pulse + SHG ({args.data}) | " + " | ".join(cols) + " |", "|---|" + "---|" * len(cols)]
    for label, r in rows.items():
        lines.append(f"| {label} | " + " | ".join(f"{100 * np.mean(v):.1f} ± {100 * np.std(v):.1f}"
                                                 for v in r.values()) + " |")
    table = "\n".join(lines)
    meta = {"args": vars(args), "twin": twin_report, "seconds": time.time() - t0}
    (out / "results.json").write_text(json.dumps({"rows": rows, "meta": meta}, indent=1))
    (out / "table.md").write_text(table + "\n")
    print(table)
    print(json.dumps(meta, indent=1))


if __name__ == "__main__":
    main()
