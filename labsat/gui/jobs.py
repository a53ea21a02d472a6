"""The long pieces of work the workstation runs off the GUI thread: adapters over :mod:`labsat.workflows`.

Each takes the :class:`~labsat.gui.bench.Bench`, its parameters, a
:class:`~labsat.gui.bench.RunControl` (pause / resume / abort) and ``emit(kind, payload)`` for live
progress, and calls the same workflow as the CLI: the run is recorded in the station's run database
(``labsat runs list``), an aborted training can be continued with ``labsat train --resume RUN``, and the
defaults are :mod:`labsat.defaults`.
"""
from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from labsat import defaults, workflows
from labsat.workflows import CalibrationParams, CalibrationResult, TrainingResult  # noqa: F401 (the panels' types)

from .bench import Bench, RunControl

Emit = Callable[[str, object], None]
SOURCE = "labsat gui"


def _stamp() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")


def _hooks(control: RunControl, emit: Emit, every_fit_step: int = 5) -> workflows.Hooks:
    """The workflow's events as the panels' signals (fit steps thinned out), Abort/Pause as its check."""

    def progress(event, payload):
        if event == "fit":
            i, total, _ = payload
            if i % every_fit_step and i != total:
                return
        emit(event, payload)

    return workflows.Hooks(progress=progress, check=control.check)


# --- calibration ---
def run_calibration(bench: Bench, p: CalibrationParams, control: RunControl, emit: Emit) -> CalibrationResult:
    """Measure and fit (recorded as a calibrate run); the operator then accepts and saves the fit."""
    p.validate()
    station = bench.require_station()
    bench.arm_outputs()
    return workflows.calibrate(station, p, _hooks(control, emit), layer=bench.layer, hardware=bench.hardware(control),
                               save_file=False, source=SOURCE)


def save_calibration_result(bench: Bench, result: CalibrationResult) -> Path:
    """Save an accepted fit; its calibrate run then names the file."""
    return workflows.save(bench.config, result)


# --- training ---
@dataclass
class TrainingParams:
    mode: str = "offline"
    optimizer: str = defaults.OPTIMIZER
    rho: float = defaults.RHO
    lr: float | None = None  # None: the layer's default (workflows.default_lr, by mesh size)
    epochs: int = defaults.EPOCHS
    batch_size: int = defaults.BATCH_SIZE
    seed: int = 0
    perturb: str = defaults.PERTURB
    perturbed_pass: str = defaults.PERTURBED_PASS
    calibration: str | None = None  # a calibration file; None: the latest for the chip; "nominal": none
    out: str | None = None  # model file; default runs_dir/gui-<mode>-<optimizer>-<stamp>.pt
    threads: int | None = None
    data: str = "digits"  # a --data spec (labsat.data.load_dataset): digits, mnist:DIR, npz:FILE, csv:FILE
    extra: dict = field(default_factory=dict)  # more TrainConfig fields (sigma, lam, ...)


def run_training(bench: Bench, p: TrainingParams, control: RunControl, emit: Emit) -> TrainingResult:
    """The train workflow on the panels' layer, test accuracy after every epoch for the curves."""
    from labsat.train import TrainConfig

    cfg = TrainConfig(mode=p.mode, optimizer=p.optimizer, rho=p.rho, lr=p.lr, epochs=p.epochs,
                      batch_size=p.batch_size, seed=p.seed, perturb=p.perturb,
                      twin_perturbed=p.perturbed_pass == "twin", **p.extra)
    station = bench.require_station()
    hw = None
    if cfg.mode == "online":
        bench.arm_outputs()
        hw = bench.hardware(control)
    out = p.out or str(bench.runs_dir() / f"gui-{cfg.mode}-{cfg.optimizer}-{_stamp()}.pt")
    request = workflows.TrainingRequest(cfg, calibration=p.calibration, out=out, threads=p.threads,
                                        evaluate_each_epoch=True, data=p.data)
    with workflows.run_tags(source=SOURCE):
        return workflows.train(station, request, _hooks(control, emit), layer=bench.layer, hardware=hw)


# --- robustness ---
@dataclass
class RobustnessParams:
    models: list
    drift_max_k: float = 2.0
    drift_points: int = 9
    landscape_radius: float = 0.5
    landscape_points: int = 21
    landscape_2d: bool = True
    grid_points: int = 11
    landscape_on: str = "twin"  # twin | hardware
    transfer_seed: int | None = None  # sim: also test on another virtual chip
    seed: int = 0


def random_directions(n: int, seed: int, count: int = 2) -> list[torch.Tensor]:
    """Orthonormal random directions in control space (unit L2 norm)."""
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(n, count, generator=g, dtype=torch.float64))
    return [q[:, i].clone() for i in range(count)]


@torch.no_grad()
def _loss(model, x, y, on_hardware: bool) -> float:
    physical = model.physical
    previous = physical.use_hardware
    physical.use_hardware = on_hardware
    try:
        return float(torch.nn.functional.cross_entropy(model(x), y))
    finally:
        physical.use_hardware = previous


def run_robustness(bench: Bench, p: RobustnessParams, control: RunControl, emit: Emit) -> dict:
    """Drift, transfer and loss-landscape sweeps of saved models, recorded as an evaluate run."""
    from dataclasses import asdict

    from labsat.workflows.record import recorded

    if not p.models:
        raise ValueError("choose at least one saved model")
    if p.drift_points < 2 or p.landscape_points < 3:
        raise ValueError("at least 2 drift points and 3 landscape points are needed")
    station = bench.require_station()
    settings = {"robustness": {k: (list(map(str, v)) if k == "models" else v) for k, v in asdict(p).items()},
                "models": [str(Path(m).resolve()) for m in p.models], "layer": bench.layer, "source": SOURCE}
    with recorded(station, "evaluate", settings, workflows.Hooks()) as rec:
        results = _robustness(bench, p, control, emit)
        keep = ("accuracy", "drift_accuracy", "transfer_accuracy", "transfer_device")
        rec.db.finish(rec.run, "completed", result={
            "drift_k": results["drift_k"],
            "models": {k: {f: v.get(f) for f in keep} for k, v in results["models"].items()}})
    results["run"] = rec.run
    return results


def _robustness(bench: Bench, p: RobustnessParams, control: RunControl, emit: Emit) -> dict:
    from labsat.station import Station
    from labsat.train import accuracy

    station = bench.require_station()
    scene = bench.scene()
    if scene is not None and not hasattr(scene, "extra_kelvin"):
        scene = None  # this kind's virtual physics has no environment temperature
    bench.arm_outputs()
    hw = bench.hardware(control)
    alphas = np.linspace(-p.landscape_radius, p.landscape_radius, p.landscape_points)
    grid = np.linspace(-p.landscape_radius, p.landscape_radius, p.grid_points)
    drifts = np.linspace(0.0, p.drift_max_k, p.drift_points)
    on_hw = p.landscape_on == "hardware"
    results: dict = {"drift_k": drifts.tolist(), "alphas": alphas.tolist(), "grid": grid.tolist(), "models": {}}
    for path in p.models:
        hw.forget_controls()
        loaded = workflows.load_model(bench.config, bench.layer, Path(path), hardware=hw, with_calibration=True)
        model, data, label = loaded.model, loaded.data, loaded.label
        opt = loaded.meta.get("history", {}).get("config", {}).get("optimizer")
        res = {"path": str(path), "optimizer": opt}
        results["models"][label] = res
        # accuracy vs drift (the virtual lab's environment temperature)
        if scene is not None:
            base = scene.extra_kelvin
            accs = []
            try:
                for dk in drifts:
                    control.check()
                    scene.extra_kelvin = base + float(dk)
                    accs.append(accuracy(model, data.x_test, data.y_test, on_hardware=True))
                    emit("drift", (label, float(dk), accs[-1]))
            finally:
                scene.extra_kelvin = base
            res["drift_accuracy"] = accs
        else:
            res["drift_accuracy"] = None
            res["accuracy"] = accuracy(model, data.x_test, data.y_test, on_hardware=True)
        # transfer to another device
        if p.transfer_seed is not None and station.simulated:
            other = Station(station.config, chip_seed=p.transfer_seed).connect()
            try:
                model.physical.hardware = other.layer(bench.layer)
                res["transfer_accuracy"] = accuracy(model, data.x_test, data.y_test, on_hardware=True)
                res["transfer_device"] = other.device_id(bench.layer)
            finally:
                other.close()
                model.physical.hardware = hw
            emit("transfer", (label, res["transfer_accuracy"]))
        # loss landscape around the trained controls, along fixed random directions
        u0 = model.physical.u.detach().clone()
        d1, d2 = random_directions(len(u0), p.seed)
        x, y = data.x_test, data.y_test
        line = []
        try:
            for a in alphas:
                control.check()
                model.physical.u.data = u0 + float(a) * d1
                line.append(_loss(model, x, y, on_hw))
                emit("slice", (label, float(a), line[-1]))
            res["slice"] = line
            if p.landscape_2d:
                surf = np.empty((len(grid), len(grid)))
                for i, a in enumerate(grid):
                    control.check()
                    for j, b in enumerate(grid):
                        model.physical.u.data = u0 + float(a) * d1 + float(b) * d2
                        surf[i, j] = _loss(model, x, y, on_hw)
                    emit("surface_row", (label, i, len(grid)))
                res["surface"] = surf.tolist()
        finally:
            model.physical.u.data = u0
    return results
