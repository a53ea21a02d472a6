"""Calibration of large meshes (16–64 modes): a global fit continued over widening control ranges.

Why the plain global fit (``fit.fit_twin`` on settings uniform over the whole control range) stalls above
8 modes on labsat's error model: with ``u`` anywhere in [0, 1] every heater turns its phase by up to
``w0 ≈ 9`` rad, so a 5 % efficiency error or 6 % neighbour crosstalk moves the phase by ~0.5 rad at the
top of the range, and through 16+ columns of MZIs these errors compound into a loss landscape whose
nearest minimum from the datasheet twin is not the chip. The phase offsets and the couplers, in
contrast, are small errors around the design and act at every setting.

So the fit is continued (a homotopy in the data, as in progressive / layer-by-layer calibration of
photonic meshes, but over the control amplitude rather than the mesh depth): stage ``s`` measures
settings uniform in ``[0, u_max[s]]`` and fits every parameter to all readings so far, starting from the
previous stage's fit (with small Adam steps, then L-BFGS, so as not to kick it out of its basin).
Near ``u = 0`` the efficiency and crosstalk terms (``∝ u``) are small and the offsets and couplers are
identified; each widening then only has to correct the ``∝ u`` terms by a small amount. The last stage
covers the whole range, so the twin is valid wherever training puts the controls.

Budget: ``len(u_max) * settings`` heater settings of ``inputs`` inputs each; by default 32 settings and
N²/8 inputs per stage, so the readings grow as N² (16 N² in all; each reading gives N numbers: N³ numbers
for ~4 N² parameters).
The fit's cost per step is one batched transfer-matrix build (``K`` settings at once) and one matmul per
setting, so it runs in minutes at N = 64 on one core.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Callable

import numpy as np
import torch

from .fit import fit_in_bands, rmse  # noqa: F401  (fit_in_bands: also reached from here)
from .measure import (BAND_SETTINGS, BANDED_ABOVE_MODES, DEFAULT_SCHEDULE, Measurements, budget_for_modes,  # noqa: F401
                      measure, schedule_for)

# schedule_for (measure.py) and fit_in_bands (fit.py) live below this module, so that measuring and fitting
# use them without importing it (imports run one way: tests/test_import_graph.py).


@dataclass
class ProgressivePlan:
    """How much to measure: ``settings`` heater settings per stage, ``inputs`` inputs per setting."""

    settings: int
    inputs: int
    u_max: tuple[float, ...] = DEFAULT_SCHEDULE
    adam_steps: int = 150  # first stage, from the datasheet twin
    lbfgs_steps: int = 150
    lr: float = 0.02  # the first stage's Adam step
    refine_adam_steps: int = 40  # later stages start close: small Adam steps (lr 0.003), then L-BFGS
    refine_lr: float = 0.003
    dtype: str = "float32"  # the mesh's precision in the fit (fit.fit_in_bands)
    # MZI-by-MZI start before the bands (calibration/selfconfig.py, round 7): the θ heaters' bar points, the couplers,
    # crosstalk links and φ loop phases read MZI by MZI (``start_options``: self_configure's), the φ offsets anchored
    # to the datasheet's prior (selfconfig.anchor_phases), then the standard bands with a gentler, longer first fit
    # (``start_adam_steps`` at ``start_lr``, ``start_lbfgs_steps``). Needed for labsat's error model from ~40 modes
    # (calibration/README.md, "Round 7"); off by default (the datasheet start calibrates up to 36 modes and the paper's
    # model at 64, where the θ stage is worse than the datasheet)
    self_configure: bool = False
    self_configure_passes: int = 2
    start_options: dict = field(default_factory=lambda: {"links": True})
    start_adam_steps: int = 500
    start_lbfgs_steps: int = 300
    start_lr: float = 0.01
    # settings in all, split evenly over the bands as ``measure`` splits them (``labsat calibrate
    # --settings``); None: ``settings`` per band
    total_settings: int | None = None

    @classmethod
    def for_modes(cls, modes: int) -> "ProgressivePlan":
        """A budget of 4 N² readings per stage: 32 settings × N²/8 inputs (inputs are cheap, a sample of a
        modulator sequence; heater settings are slow, thermal settling). Each setting with B ≥ N inputs
        constrains the whole transfer matrix, so few settings suffice and the fit stays small."""
        # from 16 modes on the same budget as `labsat calibrate`'s default (measure.budget_for_modes); below,
        # as before (N²/8 but at least 16 inputs: the studies' small meshes)
        return cls(settings=BAND_SETTINGS, inputs=max(16, modes * modes // 8))

    @classmethod
    def for_budget(cls, settings: int, inputs: int, adam_steps: int | None = None,
                   lbfgs_steps: int | None = None) -> "ProgressivePlan":
        """The plan for a budget given in all (``labsat calibrate``: ``settings`` over the bands, ``inputs`` per
        setting), with the fit's step counts where given (the refinement's Adam steps no more than the first's)."""
        plan = cls(settings=-(-settings // len(DEFAULT_SCHEDULE)), inputs=inputs, total_settings=settings)
        if adam_steps is not None:  # explicit step counts win, also over the self-configured start's
            plan.adam_steps, plan.refine_adam_steps = adam_steps, min(plan.refine_adam_steps, adam_steps)
            plan.start_adam_steps = adam_steps
        if lbfgs_steps is not None:
            plan.lbfgs_steps = plan.start_lbfgs_steps = lbfgs_steps
        return plan

    def after_start(self) -> "ProgressivePlan":
        """The plan for the bands once the start has run: no start, the start's first fit."""
        return replace(self, self_configure=False, adam_steps=self.start_adam_steps,
                       lbfgs_steps=self.start_lbfgs_steps, lr=self.start_lr)

    @property
    def n_settings(self) -> int:
        return self.total_settings if self.total_settings is not None else len(self.u_max) * self.settings

    @property
    def readings(self) -> int:
        return self.n_settings * self.inputs


@dataclass
class ProgressiveResult:
    stages: list[dict] = field(default_factory=list)  # per band: readings so far, fit time, RMSEs
    data: Measurements | None = None  # every reading of every band
    measure_s: float = 0.0
    start: object | None = None  # selfconfig.SelfConfigResult when the plan self-configures first
    fitted: Measurements | None = None  # the readings the fit used (all of ``data`` unless some were held out)
    held_out: Measurements | None = None  # the settings kept out of the fit (``holdout``)
    history: list[float] = field(default_factory=list)  # the fit's loss, every step of every band

    @property
    def readings(self) -> int:
        return 0 if self.data is None else int(self.data.x.shape[0] * self.data.x.shape[1])


def self_configured_start(hardware, twin, plan: ProgressivePlan, progress: Callable[[int, int], None] | None = None):
    """The plan's MZI-by-MZI start on ``twin`` (in place): :func:`selfconfig.self_configure` with the plan's options
    (θ bar points, couplers, crosstalk links, φ loop phases), then the φ offsets anchored to the datasheet's prior
    (:func:`selfconfig.anchor_phases`). Returns the ``SelfConfigResult`` (readings used)."""
    from .selfconfig import anchor_phases, self_configure
    start = self_configure(hardware, twin, passes=plan.self_configure_passes, progress=progress, **plan.start_options)
    anchor_phases(twin)
    return start


def calibrate_progressive(hardware, twin, plan: ProgressivePlan | None = None, seed: int = 0,
                          held: Measurements | None = None,
                          progress: Callable[[str, int, int], None] | None = None,
                          on_stage: Callable[[dict], None] | None = None, holdout: float = 0.0,
                          fit_progress: Callable[[int, int, float], None] | None = None) -> ProgressiveResult:
    """Measure every band (``plan.settings`` settings each) and fit band by band; ``twin`` fitted in place.
    `labsat calibrate` runs this for Clements meshes above 8 modes (labsat/workflows/calibrate.py), the
    benchmarks and the paper's calibrated chips too.

    ``held``: optional held-out readings scored after every band (reported in ``stages``).
    ``holdout``: the fraction of the measured settings kept out of the fit (``result.held_out``; split as
    ``Measurements.split(holdout, seed)``; scored after every band when ``held`` is not given), 0: fit them all.
    ``progress(stage, k, n)``: stage ``"start"`` (the self-configuring start's columns) or ``"measure"``
    (settings); ``fit_progress(step, steps, loss)``: every fit step (counted per band).
    """
    plan = plan or ProgressivePlan.for_modes(hardware.modes)
    result = ProgressiveResult()
    if plan.self_configure:  # the MZI-by-MZI start, then the bands as from any start (with the start's first fit)
        result.start = self_configured_start(hardware, twin, plan,
                                             progress=None if progress is None else lambda k, n: progress("start", k, n))
        plan = plan.after_start()
    t0 = time.perf_counter()
    data = measure(hardware, plan.n_settings, plan.inputs, seed=seed, schedule=plan.u_max,
                   progress=None if progress is None else lambda k, n: progress("measure", k, n))
    measure_s = time.perf_counter() - t0
    fitted = data
    if holdout:
        fitted, result.held_out = data.split(holdout, seed=seed)
        held = held if held is not None else result.held_out
    clock = [time.perf_counter()]

    def after_band(top, history):
        now = time.perf_counter()
        row = {"u_max": top, "readings": int(np.sum(fitted.band <= top)) * plan.inputs,
               "fit_s": now - clock[0], "train_rmse": float(np.sqrt(history[-1]))}
        if held is not None:
            row["heldout_rmse"] = rmse(twin, held)
        clock[0] = time.perf_counter()
        result.stages.append(row)
        if on_stage is not None:
            on_stage(row)

    result.history = fit_in_bands(twin, fitted, plan.adam_steps, plan.lbfgs_steps, plan.lr, plan.refine_adam_steps,
                                  plan.refine_lr, progress=fit_progress, after_band=after_band,
                                  dtype=getattr(torch, plan.dtype))
    result.data, result.fitted, result.measure_s = data, fitted, measure_s
    return result
