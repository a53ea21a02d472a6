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
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from .fit import fit_twin, rmse
from .measure import Measurements

DEFAULT_SCHEDULE = (0.12, 0.25, 0.5, 1.0)


@dataclass
class ProgressivePlan:
    """How much to measure: ``settings`` heater settings per stage, ``inputs`` inputs per setting."""

    settings: int
    inputs: int
    u_max: tuple[float, ...] = DEFAULT_SCHEDULE
    adam_steps: int = 150  # first stage, from the datasheet twin
    lbfgs_steps: int = 150
    refine_adam_steps: int = 40  # later stages start close: small Adam steps (lr 0.003), then L-BFGS
    refine_lr: float = 0.003

    @classmethod
    def for_modes(cls, modes: int) -> "ProgressivePlan":
        """A budget of 4 N² readings per stage: 32 settings × N²/8 inputs (inputs are cheap, a sample of a
        modulator sequence; heater settings are slow, thermal settling). Each setting with B ≥ N inputs
        constrains the whole transfer matrix, so few settings suffice and the fit stays small."""
        return cls(settings=32, inputs=max(16, modes * modes // 8))

    @property
    def readings(self) -> int:
        return len(self.u_max) * self.settings * self.inputs


@dataclass
class ProgressiveResult:
    stages: list[dict] = field(default_factory=list)
    data: Measurements | None = None  # every reading of every stage

    @property
    def readings(self) -> int:
        return int(sum(s["readings"] for s in self.stages))


def measure_band(hardware, settings: int, inputs: int, u_max: float, seed: int = 0,
                 progress: Callable[[int, int], None] | None = None) -> Measurements:
    """``settings`` random heater settings uniform in ``[0, u_max]``, each with ``inputs`` random inputs."""
    rng = np.random.default_rng(seed)
    h, n = hardware.n_controls, hardware.modes
    us = rng.uniform(0.0, u_max, (settings, h))
    xs = rng.uniform(0.0, 1.0, (settings, inputs, n))
    ps = np.empty((settings, inputs, n))
    for k in range(settings):
        ps[k] = hardware.forward(xs[k], us[k])
        if progress:
            progress(k + 1, settings)
    return Measurements(us, xs, ps)


def calibrate_progressive(hardware, twin, plan: ProgressivePlan | None = None, seed: int = 0,
                          held: Measurements | None = None,
                          progress: Callable[[str, int, int, float], None] | None = None) -> ProgressiveResult:
    """Measure and fit stage by stage (see the module docstring); ``twin`` is fitted in place.

    ``held``: optional held-out readings scored after every stage (reported in ``stages``).
    ``progress(stage_name, i, total, value)``: measuring (value = nan) and fitting (value = loss).
    """
    plan = plan or ProgressivePlan.for_modes(hardware.modes)
    result = ProgressiveResult()
    all_u, all_x, all_p = [], [], []
    for s, u_max in enumerate(plan.u_max):
        name = f"stage {s + 1}/{len(plan.u_max)} (u ≤ {u_max:g})"
        t0 = time.perf_counter()
        data = measure_band(hardware, plan.settings, plan.inputs, u_max, seed=seed + 1000 * s,
                            progress=None if progress is None else lambda k, n: progress(name, k, n, float("nan")))
        t1 = time.perf_counter()
        all_u.append(data.u), all_x.append(data.x), all_p.append(data.p)
        so_far = Measurements(np.concatenate(all_u), np.concatenate(all_x), np.concatenate(all_p))
        first = s == 0
        history = fit_twin(twin, so_far, adam_steps=plan.adam_steps if first else plan.refine_adam_steps,
                           lbfgs_steps=plan.lbfgs_steps, lr=0.02 if first else plan.refine_lr,
                           progress=None if progress is None else lambda i, n, loss: progress(name, i, n, loss))
        row = {"stage": s + 1, "u_max": u_max, "readings": plan.settings * plan.inputs,
               "measure_s": t1 - t0, "fit_s": time.perf_counter() - t1, "train_rmse": float(np.sqrt(history[-1]))}
        if held is not None:
            row["heldout_rmse"] = rmse(twin, held)
        result.stages.append(row)
    result.data = so_far
    return result
