"""Calibrate: measure the layer at random settings, fit its twin, save the fit; recorded as a run."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from labsat import defaults
from labsat.workflows.hooks import QUIET, Hooks
from labsat.workflows.record import recorded


@dataclass
class CalibrationParams:
    # None: the layer's default budget (calibration.measure.budget_for: 64 × 32 up to 8 modes, 128 × N²/8
    # for larger Clements meshes), resolved against the hardware by `for_hardware`
    settings: int | None = None
    inputs: int | None = None
    holdout: float = defaults.CAL_HOLDOUT
    adam_steps: int | None = None  # None: the fit's own step counts
    lbfgs_steps: int | None = None
    seed: int = 0
    # meshes above 8 modes: the MZI-by-MZI start before the bands (calibration/selfconfig.py); off by default
    self_configure: bool = False

    def for_hardware(self, hardware) -> "CalibrationParams":
        """These parameters with the budget left open (None) filled in from ``hardware``'s size."""
        if self.settings is not None and self.inputs is not None:
            return self
        from dataclasses import replace

        from labsat.calibration.measure import budget_for

        settings, inputs = budget_for(hardware)
        return replace(self, settings=settings if self.settings is None else self.settings,
                       inputs=inputs if self.inputs is None else self.inputs)

    def validate(self) -> None:
        if self.settings is None or self.inputs is None:
            raise ValueError("calibration budget not resolved: call for_hardware(hardware) first")
        if self.settings < 2 or self.inputs < 1:
            raise ValueError("calibration needs at least 2 heater settings and 1 input per setting")
        if not 0 < self.holdout < 1:
            raise ValueError(f"holdout fraction must be between 0 and 1, got {self.holdout}")
        if (self.adam_steps is not None and self.adam_steps < 1) or (self.lbfgs_steps is not None
                                                                     and self.lbfgs_steps < 0):
            raise ValueError("adam steps >= 1 and L-BFGS steps >= 0 are required")

    def record(self) -> dict:
        return {"settings": self.settings, "inputs": self.inputs, "holdout": self.holdout, "seed": self.seed,
                **({"self_configure": True} if self.self_configure else {}),
                **{k: v for k, v in (("adam_steps", self.adam_steps), ("lbfgs_steps", self.lbfgs_steps))
                   if v is not None}}


@dataclass
class CalibrationResult:
    device: str
    layer: str
    twin_state: dict
    meta: dict
    data: object  # calibration.Measurements
    holdout_measured: np.ndarray
    holdout_nominal: np.ndarray
    holdout_fitted: np.ndarray
    fit_history: list
    run: int | None = None
    path: Path | None = None  # the calibration file, once saved
    extra: dict = field(default_factory=dict)


class _Watched:
    """The layer's hardware, telling ``powers`` after each measured setting."""

    def __init__(self, hw, hooks: Hooks):
        self._hw, self._hooks = hw, hooks

    def __getattr__(self, name):
        return getattr(self._hw, name)

    def forward(self, x, u):
        y = self._hw.forward(x, u)
        self._hooks.emit("powers", np.asarray(y).mean(0))
        return y


def measure_and_fit(station, p: CalibrationParams, hooks: Hooks = QUIET, *, layer: str | None = None,
                    hardware=None) -> CalibrationResult:
    """The calibration itself, unrecorded and unsaved: ``hardware`` defaults to the layer's own."""
    from labsat import calibration
    from labsat.calibration.measure import schedule_for
    from labsat.calibration.progressive import ProgressivePlan, calibrate_progressive
    from labsat.kinds import kind_of

    layer = layer or station.layer_names[0]
    hw = hardware if hardware is not None else station.layer(layer)
    p = p.for_hardware(hw)
    p.validate()

    def on_progress(event, payload):
        hooks.emit(event, payload)
        hooks.tick()

    def on_fit(i, total, loss):
        on_progress("fit", (i, total, loss))

    kind = kind_of(station.config, layer)
    twin = kind.make_twin(station.config, layer)
    steps = {k: v for k, v in (("adam_steps", p.adam_steps), ("lbfgs_steps", p.lbfgs_steps)) if v is not None}
    watched = _Watched(hw, hooks)
    if kind.fit_twin is None and len(schedule_for(hw)) > 1:
        # a Clements mesh above 8 modes: the banded calibration the benchmarks measure (one function for both)
        plan = ProgressivePlan.for_budget(p.settings, p.inputs, **steps)
        plan.self_configure = p.self_configure
        done = calibrate_progressive(watched, twin, plan, seed=p.seed, holdout=p.holdout,
                                     progress=lambda stage, k, n: on_progress(stage, (k, n)), fit_progress=on_fit)
        data, train_set, held, history = done.data, done.fitted, done.held_out, done.history
        nominal = _scored(kind.make_twin(station.config, layer), held)  # the datasheet twin's
        extra = {"plan": {"u_max": list(plan.u_max), "adam_steps": plan.adam_steps, "lbfgs_steps": plan.lbfgs_steps,
                          "refine_adam_steps": plan.refine_adam_steps, "self_configure": plan.self_configure},
                 "bands": done.stages,  # per band: readings fitted, fit seconds, train and held-out RMSE
                 **({"start_readings": done.start.readings} if done.start is not None else {})}
    else:
        data = calibration.measure(watched, p.settings, p.inputs, seed=p.seed,
                                   progress=lambda k, n: on_progress("measure", (k, n)))
        train_set, held = data.split(p.holdout, seed=p.seed)
        nominal, extra = _scored(twin, held), {}
        history = kind.fit(twin, train_set, progress=on_fit, **steps)  # a kind may bring its own fit (own steps)
    fitted = _scored(twin, held)
    meta = {"instruments": station.identities(), "station": station.config.station.name,
            "backend": station.config.station.backend, "settings": p.settings, "inputs_per_setting": p.inputs,
            "residuals": {"nominal_holdout": nominal[1], "fitted_holdout": fitted[1],
                          "fitted_train": calibration.residual_summary(twin, train_set)},
            "fit_final_mse": history[-1], "layer_name": layer, **extra}
    return CalibrationResult(station.device_id(layer), layer, twin.fitted_state(), meta, data, held.p,
                             nominal[0], fitted[0], history)


def _scored(twin, held):
    """``twin``'s predictions of the held-out readings and their residual summary."""
    import torch

    from labsat import calibration
    from labsat.calibration.fit import predict

    with torch.no_grad():
        return predict(twin, held).numpy(), calibration.residual_summary(twin, held)


def save(station_config, result: CalibrationResult) -> Path:
    """Write the calibration file (versioned JSON + NPZ) and name it in the result's run."""
    from labsat import runs
    from labsat.calibration import save_calibration
    from labsat.kinds import kind_of

    directory = station_config.resolve(station_config.station.calibration_dir)
    # filed under <calibration_dir>/<kind>/<device>/: 'latest' never picks another kind's fit (issue 14)
    result.path = save_calibration(directory, result.device, result.twin_state, result.meta, result.data,
                                   kind=kind_of(station_config, result.layer).name)
    if result.run is not None:
        with runs.RunDB.for_station(station_config) as db:
            db.set_result(result.run, calibration=str(result.path), result=_summary(result))
    return result.path


def _summary(result: CalibrationResult) -> dict:
    return {"calibration": None if result.path is None else str(result.path), "device": result.device,
            "residuals": result.meta["residuals"], "fit_final_mse": result.meta["fit_final_mse"]}


def calibrate(station, p: CalibrationParams | None = None, hooks: Hooks = QUIET, *, layer: str | None = None,
              hardware=None, save_file: bool = True, source: str = "labsat") -> CalibrationResult:
    """Measure, fit and (``save_file``) save, recorded as a ``calibrate`` run of ``station``.

    With ``save_file=False`` (the GUI: the operator looks at the fit first) the run completes with the
    fit and :func:`save` names the file in it later.
    """
    p = p or CalibrationParams()
    layer = layer or station.layer_names[0]
    p = p.for_hardware(hardware if hardware is not None else _layer_size(station, layer))
    config = {**p.record(), "chip_seed": _chip_seed(station), "kind": _kind_name(station, layer),
              "layer": layer, "source": source}
    with recorded(station, "calibrate", config, hooks) as rec:
        result = measure_and_fit(station, p, hooks, layer=layer, hardware=hardware)
        result.meta["source"] = source
        result.run = rec.run
        if save_file:
            save(station.config, result)
        rec.db.finish(rec.run, "completed", calibration=None if result.path is None else str(result.path),
                      result=_summary(result))
    return result


def default_budget(station, layer: str | None = None) -> tuple[int, int]:
    """``(settings, inputs)`` that a calibration of ``station``'s layer measures when not told
    (:func:`labsat.calibration.measure.budget_for`); ``station``: anything with a ``config`` (the GUI's bench)."""
    from labsat.calibration.measure import budget_for

    return budget_for(_layer_size(station, layer or next(iter(station.config.layers))))


def banded(station, layer: str | None = None) -> bool:
    """Whether ``station``'s layer is calibrated in control bands (a Clements mesh above 8 modes), where the
    self-configuring start (``CalibrationParams.self_configure``) applies."""
    from labsat.calibration.measure import schedule_for

    return len(schedule_for(_layer_size(station, layer or next(iter(station.config.layers))))) > 1


def _layer_size(station, layer: str):
    """What the default budget needs of a layer (``modes``, ``n_controls``), read from the station file
    without opening its hardware (a Clements mesh has N(N - 1) heaters; other kinds are not banded)."""
    from types import SimpleNamespace

    from labsat.config import MeshLayerConfig

    cfg = station.config.layers[layer]
    n = cfg.modes if isinstance(cfg, MeshLayerConfig) else 0
    return SimpleNamespace(modes=n, n_controls=n * (n - 1))


def _chip_seed(station) -> int | None:
    return station.config.station.sim.chip_seed if station.simulated else None


def _kind_name(station, layer: str) -> str:
    from labsat.kinds import kind_of

    return kind_of(station.config, layer).name


def check_station(station, path=None, settings: int = 8, inputs: int = 16, factor: float = 2.0,
                  seed: int | None = None, layer: str | None = None):
    """Is the latest (or the given) calibration of the station's layer still valid? ``(CheckResult, record)``
    from a few fresh readings (:func:`labsat.calibration.check.check_twin`, the drift rule)."""
    from labsat.calibration.check import check_twin, stored_holdout_rmse
    from labsat.kinds import calibration_for, kind_of

    layer = layer or station.layer_names[0]
    record, _ = calibration_for(station.config, layer, station.device_id(layer), path)  # checked: device, kind
    twin = kind_of(station.config, layer).make_twin(station.config, layer)
    twin.load_fitted_state(record["twin"])
    result = check_twin(station.layer(layer), twin, stored_holdout_rmse(record), settings, inputs, factor, seed=seed)
    return result, record
