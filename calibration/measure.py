"""Measure a mesh on the bench: random heater settings, several inputs each, detector powers.

Heater changes are slow (thermal settling), inputs are fast, so each heater setting is measured with
a batch of inputs in one modulator sequence.

Meshes above 8 modes are measured in *bands* of control range (``calibration/progressive.py``): the
settings are split evenly over ``u ≤ 0.12, 0.25, 0.5, 1``, each setting remembers its band, and
``fit.fit_twin`` fits band by band so that the fit converges (issue 12).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from labsat import defaults


@dataclass
class Measurements:
    u: np.ndarray  # (K, H) controls
    x: np.ndarray  # (K, B, N) input amplitudes
    p: np.ndarray  # (K, B, N) normalised powers
    band: np.ndarray | None = None  # (K,) the control range [0, band] each setting was drawn from

    def __len__(self) -> int:
        return len(self.u)

    def split(self, holdout_fraction: float, seed: int = 0) -> tuple["Measurements", "Measurements"]:
        if not 0 < holdout_fraction < 1:
            raise ValueError(f"holdout fraction must be between 0 and 1, got {holdout_fraction}")
        idx = np.random.default_rng(seed).permutation(len(self))
        k = max(1, int(round(len(self) * holdout_fraction)))
        if k >= len(self):
            raise ValueError(f"holding out {k} of {len(self)} settings leaves none to fit; measure more")
        pick = lambda i: Measurements(self.u[i], self.x[i], self.p[i],  # noqa: E731
                                      None if self.band is None else self.band[i])
        return pick(idx[k:]), pick(idx[:k])

    def arrays(self) -> dict[str, np.ndarray]:
        return {"u": self.u, "x": self.x, "p": self.p}


DEFAULT_SCHEDULE = (0.12, 0.25, 0.5, 1.0)
BANDED_ABOVE_MODES = 8  # the plain global fit converges up to 8 modes (issue 12's measurements)


def schedule_for(hardware) -> tuple[float, ...]:
    """Control bands for measuring ``hardware``: progressive for Clements meshes above 8 modes (their
    ``n_controls`` is N(N-1)), one band [0, 1] for everything else."""
    n = getattr(hardware, "modes", 0)
    if n > BANDED_ABOVE_MODES and getattr(hardware, "n_controls", None) == n * (n - 1):
        return DEFAULT_SCHEDULE
    return (1.0,)


SMALL_MESH_BUDGET = (defaults.CAL_SETTINGS, defaults.CAL_INPUTS)  # settings × inputs up to 8 modes
BAND_SETTINGS = 32  # settings per control band above 8 modes


def budget_for_modes(modes: int, banded: bool = True) -> tuple[int, int]:
    """The default measuring budget ``(settings, inputs per setting)`` for an N-mode layer.

    Up to 8 modes (and for layers that are not Clements meshes, ``banded=False``): 64 settings × 32
    inputs, the budget the plain fit converges with. Above: 32 settings per control band (4 bands, 128
    settings) × N²/8 inputs (at least 32), i.e. 16 N² readings: N = 16: 128 × 32, N = 32: 128 × 128,
    N = 64: 128 × 512 (benchmarks/README.md, "Paper scale": the budget every large-mesh figure used).
    Inputs are cheap (a modulator sequence), heater settings slow (thermal settling), so the budget
    grows in inputs."""
    if modes <= BANDED_ABOVE_MODES or not banded:
        return SMALL_MESH_BUDGET
    return BAND_SETTINGS * len(DEFAULT_SCHEDULE), max(SMALL_MESH_BUDGET[1], modes * modes // 8)


def budget_for(hardware) -> tuple[int, int]:
    """:func:`budget_for_modes` for ``hardware`` (banded when :func:`schedule_for` bands it)."""
    return budget_for_modes(getattr(hardware, "modes", 0), banded=len(schedule_for(hardware)) > 1)


def measure(hardware, settings: int = 64, inputs_per_setting: int = 32, seed: int = 0,
            progress: Callable[[int, int], None] | None = None,
            schedule: tuple[float, ...] | None = None, centre: np.ndarray | None = None) -> Measurements:
    """``settings`` random heater settings with ``inputs_per_setting`` random inputs each.

    ``schedule``: the control bands (default: :func:`schedule_for` the hardware: one band,
    [0, 1], up to 8 modes; four above). With one band the draws are those of earlier versions.
    ``centre``: controls (H,) the bands close in on (default 0): a setting of band ``b`` is
    ``centre + b · (U(0, 1) − centre)``, so the last band (b = 1) is uniform over [0, 1] whatever the centre
    (the self-configured start's bar state: calibration/selfconfig.py).
    """
    schedule = tuple(schedule) if schedule is not None else schedule_for(hardware)
    rng = np.random.default_rng(seed)
    h, n = hardware.n_controls, hardware.modes
    us = rng.uniform(0.0, 1.0, (settings, h))
    xs = rng.uniform(0.0, 1.0, (settings, inputs_per_setting, n))
    band = np.asarray(schedule, dtype=float)[np.arange(settings) * len(schedule) // settings]
    if centre is not None:
        us = centre + band[:, None] * (us - centre)
    elif len(schedule) > 1 or schedule[0] != 1.0:
        us *= band[:, None]
    ps = None  # (K, B, outputs): a kind may have fewer outputs than inputs
    for k in range(settings):
        y = hardware.forward(xs[k], us[k])
        if ps is None:
            ps = np.empty((settings,) + np.shape(y))
        ps[k] = y
        if progress:
            progress(k + 1, settings)
    return Measurements(us, xs, ps, band if len(schedule) > 1 else None)
