"""Per-element calibration sweeps of an MZI mesh, from detector readings only.

The twin's controls ``u`` are normalised heater powers, so every heater phase is *linear* in ``u``:
``phase_i = offset_i + w0 * eff_i * (u_i + kappa_{i-1} u_{i-1} + kappa_i u_{i+1})`` with ``w0`` the
datasheet phase at ``u = 1``. Any detector reading, as a function of one phase, is a cosine
``A + B cos(phase + c)`` (the field at a detector is affine in ``exp(1j phase)``). Hence:

* **heater sweeps** -- heater ``i`` is swept over ``[0, 1]`` with every other heater at one fixed
  base setting, for a few inputs (each single input port, all ports, random mixtures). A cosine in
  ``u`` with one frequency shared by every (input, output) pair is fitted; the frequency divided by
  ``w0`` is the heater's **efficiency** (model-free).
* **per-port gain** -- the mesh is lossless between the modulators and the detectors, so every reading
  obeys ``sum_k p_k / g_k = sum_j x_j^2``: linear least squares in ``1/g`` over all sweep readings.
* **phase offsets** -- an absolute offset only has meaning inside the mesh model, so it is read off a
  fringe *phase*: the measured fringe of heater ``i`` is compared with the fringe the twin predicts with
  its present parameters (same base, same inputs); the circular mean of the phase differences,
  weighted by fringe amplitude, is the correction of ``offset_i`` (each fringe phase moves one for one
  with ``offset_i``). A few Gauss-Seidel passes over the heaters.
* **crosstalk** -- heater ``i`` is swept again with its neighbour ``i+1`` raised by ``delta``. The fringe
  of ``i`` then shifts by ``w0 eff_i kappa_i delta`` plus what the neighbour's own phase change does,
  which the twin predicts; the difference between measured and predicted shift corrects ``kappa_i``.

Beam-splitter errors are left at nominal here: the global fit (:func:`fit_from_sweeps`) starts from
these per-element estimates and refines every parameter on all the readings.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from labsat.twins.mzi import MZIMeshTwin

from .measure import Measurements


# --------------------------------------------------------------------------- data
@dataclass
class SweepData:
    """Readings of the per-element sweeps.

    ``p[i, s]`` is the (B, N) block read with heater ``i`` at ``grid[s]`` and the others at ``base``;
    ``p_xt[i, s]`` the same with heater ``i + 1`` raised by ``delta`` (crosstalk sweeps).
    """

    base: np.ndarray  # (H,)
    grid: np.ndarray  # (S,)
    x: np.ndarray  # (B, N) inputs, the same at every setting
    p: np.ndarray  # (H, S, B, N)
    delta: float = 0.0
    p_xt: np.ndarray | None = None  # (H-1, S, B, N)

    @property
    def readings(self) -> int:
        """Detector readings (one reading = all ports for one input at one setting)."""
        n = self.p.shape[0] * self.p.shape[1] * self.p.shape[2]
        if self.p_xt is not None:
            n += self.p_xt.shape[0] * self.p_xt.shape[1] * self.p_xt.shape[2]
        return n

    def settings(self, i: int, crosstalk: bool = False) -> np.ndarray:
        """The (S, H) control settings of heater ``i``'s sweep."""
        u = np.repeat(self.base[None, :], len(self.grid), 0)
        u[:, i] = self.grid
        if crosstalk:
            u[:, i + 1] = self.base[i + 1] + self.delta
        return u

    def as_measurements(self) -> Measurements:
        """All readings as :class:`Measurements` (for the global fit and the calibration file)."""
        us, ps = [], []
        for i in range(self.p.shape[0]):
            us.append(self.settings(i))
            ps.append(self.p[i])
        if self.p_xt is not None:
            for i in range(self.p_xt.shape[0]):
                us.append(self.settings(i, crosstalk=True))
                ps.append(self.p_xt[i])
        u = np.concatenate(us)
        p = np.concatenate(ps)
        x = np.broadcast_to(self.x, p.shape).copy()
        return Measurements(u, x, p)


def sweep_inputs(modes: int, extra: int = 2, seed: int = 0) -> np.ndarray:
    """Inputs used at every sweep setting: each single port, all ports, and ``extra`` random mixtures."""
    rng = np.random.default_rng(seed)
    return np.vstack([np.eye(modes), np.full((1, modes), 1 / np.sqrt(modes)) * np.sqrt(2),
                      rng.uniform(0.2, 1.0, (extra, modes))]).clip(0.0, 1.0)


def plan_readings(n_heaters: int, modes: int, points: int, extra_inputs: int = 2,
                  crosstalk: bool = True) -> int:
    """Detector readings a sweep with these settings takes (for query budgets)."""
    b = modes + 1 + extra_inputs
    return (n_heaters + (n_heaters - 1 if crosstalk else 0)) * points * b


def run_sweeps(hardware, points: int = 24, extra_inputs: int = 2, crosstalk: bool = True,
               delta: float = 0.5, seed: int = 0,
               progress: Callable[[int, int], None] | None = None) -> SweepData:
    """Sweep every heater of ``hardware`` (``.forward(x, u)``, ``.n_controls``, ``.modes``)."""
    if points < 5:
        raise ValueError(f"a sweep needs at least 5 points to fit a cosine, got {points}")
    if not 0 < delta <= 0.5:
        raise ValueError(f"crosstalk step delta must be in (0, 0.5], got {delta}")
    h, n = hardware.n_controls, hardware.modes
    rng = np.random.default_rng(seed)
    # base setting: mid-range, so the neighbour can be raised by delta; random so light spreads
    base = rng.uniform(0.1, 0.5, h)
    grid = np.linspace(0.0, 1.0, points)
    x = sweep_inputs(n, extra_inputs, seed)
    data = SweepData(base, grid, x, np.empty((h, points, len(x), n)), delta)
    total = h * points + ((h - 1) * points if crosstalk else 0)
    done = 0
    for i in range(h):
        for s, u in enumerate(data.settings(i)):
            data.p[i, s] = hardware.forward(x, u)
            done += 1
            if progress:
                progress(done, total)
    if crosstalk:
        data.p_xt = np.empty((h - 1, points, len(x), n))
        for i in range(h - 1):
            for s, u in enumerate(data.settings(i, crosstalk=True)):
                data.p_xt[i, s] = hardware.forward(x, u)
                done += 1
                if progress:
                    progress(done, total)
    return data


# --------------------------------------------------------------------------- fringe analysis
def _cosine_design(w: float, grid: np.ndarray) -> np.ndarray:
    return np.stack([np.ones_like(grid), np.cos(w * grid), np.sin(w * grid)], 1)


def fit_fringe(grid: np.ndarray, y: np.ndarray, w: float) -> tuple[np.ndarray, np.ndarray, float]:
    """Cosine of known frequency fitted to every column of ``y`` (S, M).

    Returns (amplitude (M,), phase (M,), residual sum of squares) with
    ``y ~ a + amplitude * cos(w u - phase)``.
    """
    design = _cosine_design(w, grid)
    coef, *_ = np.linalg.lstsq(design, y, rcond=None)
    rss = float(np.sum((design @ coef - y) ** 2))
    return np.hypot(coef[1], coef[2]), np.arctan2(coef[2], coef[1]), rss


def fringe_frequency(grid: np.ndarray, y: np.ndarray, w_lo: float, w_hi: float, steps: int = 200) -> float:
    """The one frequency (rad per unit u) that best explains every column of ``y`` (S, M)."""
    from scipy.optimize import minimize_scalar

    ws = np.linspace(w_lo, w_hi, steps)
    rss = [fit_fringe(grid, y, w)[2] for w in ws]
    k = int(np.argmin(rss))
    lo, hi = ws[max(k - 1, 0)], ws[min(k + 1, steps - 1)]
    res = minimize_scalar(lambda w: fit_fringe(grid, y, w)[2], bounds=(lo, hi), method="bounded",
                          options={"xatol": 1e-6})
    return float(res.x)


# --------------------------------------------------------------------------- estimation
@dataclass
class SweepEstimate:
    """Per-element estimates, in the twin's parameterisation."""

    offset: np.ndarray
    eff: np.ndarray
    crosstalk: np.ndarray
    gain: np.ndarray
    info: dict = field(default_factory=dict)

    def twin_state(self, twin: MZIMeshTwin) -> dict:
        state = twin.fitted_state()
        state.update(offset=self.offset.tolist(), log_eff=np.log(self.eff).tolist(),
                     crosstalk=self.crosstalk.tolist(), log_gain=np.log(self.gain).tolist())
        return state


def estimate_gains(data: SweepData) -> np.ndarray:
    """Per-port gain from ``sum_k p_k / g_k = |x|^2`` (lossless mesh) over every reading."""
    m = data.as_measurements()
    p = m.p.reshape(-1, m.p.shape[-1])
    power_in = np.sum(m.x.reshape(-1, m.x.shape[-1]) ** 2, 1)
    keep = power_in > 1e-6
    inv_gain, *_ = np.linalg.lstsq(p[keep], power_in[keep], rcond=None)
    if np.any(inv_gain <= 0):
        raise ValueError("per-port gain fit gave a non-positive gain: is every detector connected?")
    return 1.0 / inv_gain


def estimate_efficiencies(data: SweepData, phase_per_u: float, spread: float = 0.3) -> tuple[np.ndarray, np.ndarray]:
    """Fringe frequency of each heater's sweep / datasheet phase per unit u, and the fit's R^2.

    The frequency is the *effective* one: the swept heater also warms its neighbours (``kappa w u``),
    which biases it by up to about ``kappa`` (a few %) where the fringe depends on them too.
    """
    h = data.p.shape[0]
    eff, r2 = np.empty(h), np.empty(h)
    for i in range(h):
        y = data.p[i].reshape(len(data.grid), -1)
        w = fringe_frequency(data.grid, y, phase_per_u * (1 - spread), phase_per_u * (1 + spread))
        tss = float(np.sum((y - y.mean(0)) ** 2))
        r2[i] = 1.0 - fit_fringe(data.grid, y, w)[2] / tss if tss > 0 else 0.0
        eff[i] = w / phase_per_u
    return eff, r2


def estimate_from_sweeps(twin: MZIMeshTwin, data: SweepData, min_r2: float = 0.9) -> SweepEstimate:
    """Model-free per-element estimates (gains, efficiencies); written into ``twin`` (offsets untouched).

    A heater whose fringe a single cosine explains poorly (``R^2 < min_r2``: its light path is dim at
    the base setting, or its neighbours' heat dominates) keeps the datasheet efficiency.
    """
    gain = estimate_gains(data)
    eff, r2 = estimate_efficiencies(data, twin.phase_per_u)
    eff = np.where(r2 >= min_r2, eff, 1.0)
    with torch.no_grad():
        twin.log_gain.copy_(torch.as_tensor(np.log(gain)))
        twin.log_eff.copy_(torch.as_tensor(np.log(eff)))
    return SweepEstimate(offset=twin.offset.detach().numpy().copy(), eff=eff, gain=gain,
                         crosstalk=twin.crosstalk.detach().numpy().copy(),
                         info={"readings": data.readings, "points": len(data.grid), "fringe_r2": r2.tolist(),
                               "efficiency_from_fringe": int(np.sum(r2 >= min_r2))})


def fit_from_sweeps(twin: MZIMeshTwin, data: SweepData, extra: Measurements | None = None,
                    adam_steps: int = 200, lbfgs_steps: int = 100,
                    progress: Callable[[int, int, float], None] | None = None) -> SweepEstimate:
    """Sweep-initialised calibration: per-element estimates, then two global least-squares stages.

    1. gains and efficiencies from the sweeps (:func:`estimate_from_sweeps`);
    2. offsets, crosstalk and couplers fitted to the sweep readings with those held fixed (the phase
       offsets are only defined inside the mesh model, so they come from a model fit of the fringes);
    3. every parameter refined on all readings (sweeps plus ``extra``, e.g. random settings).
    """
    from .fit import fit_twin

    est = estimate_from_sweeps(twin, data)
    sweeps = data.as_measurements()
    fit_twin(twin, sweeps, adam_steps=adam_steps, lbfgs_steps=lbfgs_steps, progress=progress,
             parameters=("offset", "crosstalk", "coupler_error"))
    everything = sweeps if extra is None else concat(sweeps, extra)
    history = fit_twin(twin, everything, adam_steps=adam_steps // 2, lbfgs_steps=lbfgs_steps,
                       lr=0.005, progress=progress)
    est.info["final_mse"] = history[-1]
    return est


def concat(a: Measurements, b: Measurements) -> Measurements:
    """Join two measurement sets whose blocks have different numbers of inputs (pads by repetition)."""
    if a.x.shape[1] != b.x.shape[1]:
        nb = max(a.x.shape[1], b.x.shape[1])
        a, b = _pad(a, nb), _pad(b, nb)
    return Measurements(np.concatenate([a.u, b.u]), np.concatenate([a.x, b.x]), np.concatenate([a.p, b.p]))


def _pad(m: Measurements, nb: int) -> Measurements:
    """Repeat input rows of each block up to ``nb`` (repeated readings weigh more in the fit; the
    fit is least squares so this only reweights, it invents no reading)."""
    idx = np.arange(nb) % m.x.shape[1]
    return Measurements(m.u, m.x[:, idx], m.p[:, idx])
