"""Calibration report on the virtual lab: the table of calibration/README.md.

    .venv/bin/python -m labsat.calibration.report [--seeds 1 2 3] [--budget 6144] [--direct] [--study ...] [--sat]

For each chip seed: parameter error vs the hidden truth (the report reads it; the calibration never
does) and held-out prediction RMSE of the nominal twin, the nominal-initialised global fit and the
sweep-initialised fit, at the same budget of detector readings. ``--study``: accuracy vs budget on the
first seed. ``--sat``: on the first seed, in one run, offline SAT on the calibrated twin vs online
plain training, both tested on the device. ``--plots DIR``: PNGs of the first seed's fit.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from labsat.calibration.fit import rmse
from labsat.calibration.measure import measure
from labsat.calibration.study import budget_study, calibrate_with_budget, parameter_errors
from labsat.twins.mzi import MZIMeshTwin

COLUMNS = ("offset_rad", "efficiency_pct", "crosstalk", "coupler_rad", "gain_pct")


def _station(config, seed):
    from labsat.station import Station

    return Station(config, chip_seed=seed, layers=["mesh"])


def _twin_factory(st):
    from labsat.kinds.mesh import twin_for

    layer = st.config.layers["mesh"]
    resistance = st.config.instruments[layer.heaters.instrument].limits.resistance_ohm
    return lambda: twin_for(layer, resistance)


def calibration_rows(config, seeds, budget: int, inputs: int = 16, held_settings: int = 32,
                     plots: Path | None = None, direct: bool = False, log=print) -> tuple[list[dict], dict]:
    """Rows of the table; ``direct``: drive the chip's physics without the loopback instruments."""
    import contextlib

    from labsat.calibration.simchip import DirectHardware

    rows, twins = [], {}
    for seed in seeds:
        with contextlib.ExitStack() as stack:
            if direct:
                layer = config.layers["mesh"]
                hw = DirectHardware(seed=seed, modes=layer.modes, v_max=layer.v_max, v2pi=layer.v2pi)
                chip = hw.chip
                make = lambda: MZIMeshTwin(layer.modes, hw.phase_per_u)  # noqa: E731
            else:
                st = stack.enter_context(_station(config, seed))
                hw, chip, make = st.mesh(), st.lab.chip, _twin_factory(st)
            held = measure(hw, held_settings, inputs, seed=10_000 + seed)
            err = lambda t: parameter_errors(t, chip.truth, chip.spec)  # noqa: E731
            nominal = make()
            rows.append({"seed": seed, "twin": "nominal (datasheet)", "readings": 0,
                         "heldout_rmse": rmse(nominal, held), **err(nominal)})
            log(rows[-1])
            for init in ("nominal", "sweeps"):
                twin, info = calibrate_with_budget(hw, make, budget, init, inputs, seed=seed)
                rows.append({"seed": seed, "twin": f"fit, {init} init", **info,
                             "heldout_rmse": rmse(twin, held), **err(twin)})
                log(rows[-1])
                twins[(seed, init)] = twin
            if plots is not None and seed == seeds[0]:
                from labsat.calibration.plots import plot_fit

                plot_fit(twins[(seed, "sweeps")], held, plots, title=f"vchip-{seed}", nominal=nominal)
    return rows, twins


def sat_vs_online(config, seed, budget=2048, epochs_offline=30, epochs_online=10, rho=0.05, lr=0.03,
                  log=print) -> dict:
    """In one run on one chip: calibrate through the instruments (nominal-init fit, ``budget``
    readings), train offline SAT and offline plain on that twin and online plain on the device;
    test accuracy on the device (and on the twin)."""
    from labsat.data import load_digits
    from labsat.train import TrainConfig, accuracy, build_model, train

    with _station(config, seed) as st:
        layer = st.config.layers["mesh"]
        resistance = st.config.instruments[layer.heaters.instrument].limits.resistance_ohm
        data = load_digits(layer.modes, seed=0)
        hw = st.mesh()
        held = measure(hw, 16, 16, seed=20_000 + seed)
        twin, info = calibrate_with_budget(hw, _twin_factory(st), budget, "nominal", seed=seed)
        out = {"rho": rho, "lr": lr, "epochs_offline": epochs_offline, "epochs_online": epochs_online,
               "calibration": {**info, "heldout_rmse": rmse(twin, held),
                               **parameter_errors(twin, st.lab.chip.truth, st.lab.chip.spec)}}
        log("calibration", out["calibration"])
        for label, mode, opt, epochs in (("offline SAT (calibrated twin)", "offline", "sam", epochs_offline),
                                         ("offline plain (calibrated twin)", "offline", "adam", epochs_offline),
                                         ("online plain", "online", "adam", epochs_online)):
            model = build_model(layer, resistance, data.n_classes, seed=0, twin_state=twin.fitted_state(),
                                hardware=hw)
            t0 = time.perf_counter()
            train(model, data, TrainConfig(mode=mode, optimizer=opt, rho=rho, lr=lr, epochs=epochs))
            out[label] = {"device_accuracy": accuracy(model, data.x_test, data.y_test, on_hardware=True),
                          "twin_accuracy": accuracy(model, data.x_test, data.y_test, on_hardware=False),
                          "seconds": time.perf_counter() - t0}
            log(label, out[label])
    return out


def _fmt(rows: list[dict]) -> str:
    head = "| chip seed | twin | readings | offset err (rad) | efficiency err (%) | crosstalk err | coupler err (rad) | gain err (%) | held-out RMSE |"
    lines = [head, "|" + "---|" * 9]
    for r in rows:
        lines.append(f"| {r['seed']} | {r['twin']} | {r['readings']} | {r['offset_rad']:.4f} | {r['efficiency_pct']:.2f} "
                     f"| {r['crosstalk']:.4f} | {r['coupler_rad']:.4f} | {r['gain_pct']:.2f} | {r['heldout_rmse']:.4f} |")
    return "\n".join(lines)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--station", default="instruments.yaml")
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--budget", type=int, default=6144, help="detector readings per calibration")
    ap.add_argument("--study", type=int, nargs="*", default=None, help="budgets for the accuracy-vs-budget study")
    ap.add_argument("--sat", action="store_true", help="offline SAT vs online plain on the first seed")
    ap.add_argument("--rho", type=float, default=0.05)
    ap.add_argument("--lr", type=float, default=0.03)
    ap.add_argument("--epochs", type=int, default=30, help="offline epochs (online: a third)")
    ap.add_argument("--plots", type=Path, default=None)
    ap.add_argument("--direct", action="store_true", help="table: drive the chip physics without the "
                    "loopback instruments (same readings model, no protocol latency)")
    ap.add_argument("--no-table", action="store_true", help="skip the per-seed calibration table")
    ap.add_argument("--sat-budget", type=int, default=2048, help="readings for the --sat calibration")
    ap.add_argument("--json", type=Path, default=None, help="write every figure here")
    args = ap.parse_args(argv)
    torch.set_num_threads(max(1, min(4, torch.get_num_threads())))
    from labsat.config import load_config

    config = load_config(args.station)
    result: dict = {"budget": args.budget, "seeds": args.seeds, "direct": args.direct}
    if not args.no_table:
        rows, _ = calibration_rows(config, args.seeds, args.budget, plots=args.plots, direct=args.direct)
        result["calibration"] = rows
        print(_fmt(rows), flush=True)
    if args.study is not None:
        seed = args.seeds[0]
        with _station(config, seed) as st:
            chip = st.lab.chip
            held = measure(st.mesh(), 32, 16, seed=10_000 + seed)
            study = budget_study(st.mesh(), _twin_factory(st), args.study or [1024, 4096, 8192, 16384], held,
                                 errors=lambda t: parameter_errors(t, chip.truth, chip.spec), progress=print)
        result["study"] = study
        print("| budget (readings) | init | readings used | held-out RMSE | offset err (rad) | efficiency err (%) | seconds |")
        print("|---|---|---|---|---|---|---|")
        for r in study:
            if "skipped" in r:
                print(f"| {r['budget']} | {r['init']} | - | (too few readings for sweeps) | | | |")
            else:
                print(f"| {r['budget']} | {r['init']} | {r['readings']} | {r['heldout_rmse']:.4f} | "
                      f"{r['offset_rad']:.4f} | {r['efficiency_pct']:.2f} | {r['seconds']:.0f} |")
    if args.sat:
        seed = args.seeds[0]
        result["sat"] = sat_vs_online(config, seed, args.sat_budget, epochs_offline=args.epochs,
                                      epochs_online=max(1, args.epochs // 3), rho=args.rho, lr=args.lr)
        s = result["sat"]
        print("| training | device accuracy | twin accuracy |")
        print("|---|---|---|")
        for k in ("offline SAT (calibrated twin)", "offline plain (calibrated twin)", "online plain"):
            print(f"| {k} | {100 * s[k]['device_accuracy']:.1f} % | {100 * s[k]['twin_accuracy']:.1f} % |")
        ok = s["offline SAT (calibrated twin)"]["device_accuracy"] >= s["online plain"]["device_accuracy"]
        print(f"offline SAT >= online plain on the device: {'yes' if ok else 'NO'}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1, default=float))


if __name__ == "__main__":
    main()
