"""The long pieces of work the workstation runs off the GUI thread, as plain functions.

Each takes the :class:`~labsat.gui.bench.Bench`, its parameters, a
:class:`~labsat.gui.bench.RunControl` (pause / resume / abort) and ``emit(kind, payload)`` for live
progress. They reuse the library: :func:`labsat.calibration.measure` / :func:`~labsat.calibration.fit_twin`,
:func:`labsat.train.train`, :func:`labsat.train.accuracy`, :func:`labsat.train.save_model`.
"""
from __future__ import annotations

import datetime as _dt
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from .bench import Aborted, Bench, RunControl

Emit = Callable[[str, object], None]


def _stamp() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")


# --- calibration ---
@dataclass
class CalibrationParams:
    settings: int = 64
    inputs: int = 32
    holdout: float = 0.2
    adam_steps: int = 300
    lbfgs_steps: int = 100
    seed: int = 0

    def validate(self) -> None:
        if self.settings < 2 or self.inputs < 1:
            raise ValueError("calibration needs at least 2 heater settings and 1 input per setting")
        if not 0 < self.holdout < 1:
            raise ValueError("holdout must be a fraction between 0 and 1")
        if self.adam_steps < 1 or self.lbfgs_steps < 0:
            raise ValueError("adam steps >= 1 and L-BFGS steps >= 0 are required")


@dataclass
class CalibrationResult:
    device: str
    twin_state: dict
    meta: dict
    data: object  # Measurements
    holdout_measured: np.ndarray
    holdout_nominal: np.ndarray
    holdout_fitted: np.ndarray
    fit_history: list


def run_calibration(bench: Bench, p: CalibrationParams, control: RunControl, emit: Emit) -> CalibrationResult:
    from labsat.calibration import fit_twin, measure, residual_summary
    from labsat.calibration.fit import predict

    p.validate()
    station = bench.require_station()
    bench.arm_outputs()
    hw = bench.mesh(control)
    last = {}

    def on_measure(k, n):
        emit("measure", (k, n))
        control.check()

    # measure() calls hardware.forward per setting; wrap it once more to see each setting's powers
    class _Watch:
        def __getattr__(self, name):
            return getattr(hw, name)

        def forward(self, x, u):
            y = hw.forward(x, u)
            last["p"] = y
            emit("powers", np.asarray(y).mean(0))
            return y

    data = measure(_Watch(), p.settings, p.inputs, seed=p.seed, progress=on_measure)
    train_set, held = data.split(p.holdout, seed=p.seed)
    twin = bench.make_twin()
    with torch.no_grad():
        nominal_pred = predict(twin, held).numpy()
    nominal = residual_summary(twin, held)

    def on_fit(i, total, loss):
        if i % 5 == 0 or i == total:
            emit("fit", (i, total, loss))
        control.check()

    kind_fit = bench.kind().fit_twin  # a kind may bring its own fit (with its own step counts)
    if kind_fit is None:
        history = fit_twin(twin, train_set, adam_steps=p.adam_steps, lbfgs_steps=p.lbfgs_steps, progress=on_fit)
    else:
        history = kind_fit(twin, train_set, progress=on_fit)
    with torch.no_grad():
        fitted_pred = predict(twin, held).numpy()
    meta = {"instruments": station.identities(), "station": station.config.station.name,
            "backend": station.config.station.backend, "settings": p.settings, "inputs_per_setting": p.inputs,
            "residuals": {"nominal_holdout": nominal, "fitted_holdout": residual_summary(twin, held),
                          "fitted_train": residual_summary(twin, train_set)},
            "fit_final_mse": history[-1], "layer_name": bench.layer, "source": "labsat gui"}
    return CalibrationResult(bench.device_id(), twin.fitted_state(), meta, data, held.p, nominal_pred,
                             fitted_pred, history)


def save_calibration_result(bench: Bench, result: CalibrationResult) -> Path:
    from labsat.calibration import save_calibration

    return save_calibration(bench.calibration_dir(), result.device, result.twin_state, result.meta, result.data)


# --- training ---
@dataclass
class TrainingParams:
    mode: str = "offline"
    optimizer: str = "sam"
    rho: float = 0.05
    lr: float = 0.03
    epochs: int = 10
    batch_size: int = 64
    seed: int = 0
    calibration: str | None = None  # a calibration file; None: the latest for the chip; "nominal": none
    out: str | None = None  # model file; default runs_dir/gui-<mode>-<optimizer>-<stamp>.pt
    data: str = "digits"  # a --data spec (labsat.data.load_dataset): digits, mnist:DIR, npz:FILE, csv:FILE


@dataclass
class TrainingResult:
    path: Path
    status: str  # completed | aborted
    epochs: list
    hardware_batches: int
    reason: str = ""


def _twin_state(bench: Bench, calibration: str | None):
    from labsat.calibration import latest_calibration, load_calibration

    if calibration == "nominal":
        return None, "nominal"
    path = Path(calibration) if calibration else latest_calibration(bench.calibration_dir(), bench.device_id())
    return load_calibration(path)["twin"], str(path)


def run_training(bench: Bench, p: TrainingParams, control: RunControl, emit: Emit) -> TrainingResult:
    from labsat.data import load_dataset
    from labsat.train import TrainConfig, model_for, save_model, train

    cfg = TrainConfig(mode=p.mode, optimizer=p.optimizer, rho=p.rho, lr=p.lr, epochs=p.epochs,
                      batch_size=p.batch_size, seed=p.seed)
    station = bench.require_station()
    layer = station.config.layers[bench.layer]
    twin_state, cal_name = _twin_state(bench, p.calibration)
    twin0 = bench.make_twin()
    # a kind may bring its own inputs (free-space: images on its grid); otherwise PCA'd digits
    data = twin0.load_data(seed=0) if hasattr(twin0, "load_data") else load_dataset(p.data, twin0.n_inputs, seed=0)
    hw = None
    if cfg.mode == "online":
        bench.arm_outputs()
        hw = bench.mesh(control)
        hw.forget_controls()
    model = model_for(station.config, bench.layer, data.n_classes, seed=cfg.seed, twin_state=twin_state,
                      hardware=hw)
    out = Path(p.out) if p.out else bench.runs_dir() / f"gui-{cfg.mode}-{cfg.optimizer}-{_stamp()}.pt"
    epochs: list = []
    state = {"epoch": 1}

    def on_step(step, steps):
        emit("step", (state["epoch"], step, steps, hw.batches if hw is not None else 0))
        control.check()

    def on_epoch(rec):
        epochs.append(rec)
        state["epoch"] = rec.epoch + 1
        emit("epoch", asdict(rec))

    status, reason = "completed", ""
    try:
        train(model, data, cfg, on_step=on_step, on_epoch=on_epoch, evaluate_each_epoch=True)
    except Aborted as exc:
        status, reason = "aborted", str(exc)
        bench.safe_state()  # after the job's last write
    except BaseException:
        bench.safe_state()
        raise
    meta = {"history": {"config": asdict(cfg), "epochs": [asdict(e) for e in epochs]},
            "device": bench.device_id(), "calibration": cal_name, "layer": layer.model_dump(),
            "layer_name": bench.layer, "kind": layer.kind, "n_classes": data.n_classes,
            "dataset": data.name, "data": getattr(data, "source", "") or data.name,
            "created_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(),
            "hardware_batches": hw.batches if hw is not None else 0, "status": status,
            "source": "labsat gui"}
    if reason:
        meta["abort_reason"] = reason
    save_model(out, model, data.encoder, meta)
    return TrainingResult(out, status, [asdict(e) for e in epochs], meta["hardware_batches"], reason)


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


def _load_for_eval(bench: Bench, path: Path, hardware):
    from labsat.calibration import load_calibration
    from labsat.data import Encoder, load_dataset
    from labsat.train import load_model_file, model_for

    blob = load_model_file(path)
    meta = blob["meta"]
    twin_state = None
    cal = meta.get("calibration")
    if cal and cal != "nominal" and Path(cal).exists():
        twin_state = load_calibration(cal)["twin"]
    model = model_for(bench.config, bench.layer, meta["n_classes"], twin_state=twin_state, hardware=hardware)
    try:
        result = model.load_state_dict(blob["state_dict"], strict=False)
    except RuntimeError as exc:  # size mismatch: trained for another layer
        raise ValueError(f"{path} does not fit layer '{bench.layer}' of this station") from exc
    if result.unexpected_keys or any(k.startswith(("physical.u", "readout")) for k in result.missing_keys):
        raise ValueError(f"{path} does not fit layer '{bench.layer}' of this station "
                         f"(unexpected {result.unexpected_keys}, missing {result.missing_keys})")
    twin = model.physical.twin
    data = (twin.load_data(seed=0, encoder_state=blob["encoder"]) if hasattr(twin, "load_data")
            else load_dataset(meta.get("data") or "digits", twin.n_inputs, seed=0,
                              encoder=Encoder.from_state(blob["encoder"])))
    label = Path(path).stem
    opt = meta.get("history", {}).get("config", {}).get("optimizer")
    return model, data, label, opt


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
    from labsat.station import Station
    from labsat.train import accuracy

    if not p.models:
        raise ValueError("choose at least one saved model")
    if p.drift_points < 2 or p.landscape_points < 3:
        raise ValueError("at least 2 drift points and 3 landscape points are needed")
    station = bench.require_station()
    scene = bench.scene()
    if scene is not None and not hasattr(scene, "extra_kelvin"):
        scene = None  # this kind's virtual physics has no environment temperature
    bench.arm_outputs()
    hw = bench.mesh(control)
    alphas = np.linspace(-p.landscape_radius, p.landscape_radius, p.landscape_points)
    grid = np.linspace(-p.landscape_radius, p.landscape_radius, p.grid_points)
    drifts = np.linspace(0.0, p.drift_max_k, p.drift_points)
    on_hw = p.landscape_on == "hardware"
    results: dict = {"drift_k": drifts.tolist(), "alphas": alphas.tolist(), "grid": grid.tolist(), "models": {}}
    for path in p.models:
        hw.forget_controls()
        model, data, label, opt = _load_for_eval(bench, Path(path), hw)
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
