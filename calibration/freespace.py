"""Calibration of a free-space twin: fit the misalignment (rotation, x/y shift, scale) and the SLM pixel
crosstalk from camera readings of known test patterns.

The test patterns are what :func:`labsat.calibration.measure` shows: random phase masks on the mask SLM
(pixel-scale structure, so every fraction of a pixel of misalignment changes the camera image) and
random input images, each read as the ten detector-region powers. The fit minimises the squared error
between the twin's prediction and the readings over the five parameters, in scaled units (degrees,
pixels, percent of scale, percent of crosstalk), with Adam then L-BFGS, from a few starting shifts so
that a shift of more than half a pixel is not mistaken for a local minimum.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from torch.func import functional_call

from .measure import Measurements

# parameter -> (unit used by the optimiser, nominal value)
_UNITS = {"rotation_deg": (1.0, 0.0), "shift_x_px": (1.0, 0.0), "shift_y_px": (1.0, 0.0),
          "scale": (0.01, 1.0), "crosstalk": (0.01, 0.0)}


def _subset(data: Measurements, max_settings: int, max_inputs: int, seed: int = 0) -> Measurements:
    rng = np.random.default_rng(seed)
    k = rng.permutation(len(data.u))[:max_settings]
    b = rng.permutation(data.x.shape[1])[:max_inputs]
    return Measurements(data.u[k], data.x[k][:, b], data.p[k][:, b])


def _values(z: dict) -> dict:
    return {n: _UNITS[n][1] + _UNITS[n][0] * z[n] for n in _UNITS}


def coarse_search(twin, data: Measurements, shifts=(-0.8, -0.4, 0.0, 0.4, 0.8), scales=(1.0, 1.02, 1.04),
                  rotations=(-0.8, 0.0, 0.8), crosstalk: float = 0.04) -> list[tuple[float, dict]]:
    """(error, values) of a grid over rotation, shift_x, shift_y and scale, best first (no gradients)."""
    x = torch.as_tensor(data.x, dtype=torch.float64)
    u = torch.as_tensor(data.u, dtype=torch.float64)
    p = torch.as_tensor(data.p, dtype=torch.float64)
    found = []
    with torch.no_grad():
        for sx in shifts:
            for sy in shifts:
                for sc, rot in ((a, b) for a in scales for b in rotations):
                    values = {"rotation_deg": torch.tensor(rot, dtype=torch.float64),
                              "shift_x_px": torch.tensor(sx, dtype=torch.float64),
                              "shift_y_px": torch.tensor(sy, dtype=torch.float64),
                              "scale": torch.tensor(sc, dtype=torch.float64),
                              "crosstalk": torch.tensor(crosstalk, dtype=torch.float64)}
                    loss = float(torch.mean((functional_call(twin, values, (x, u)) - p) ** 2))
                    found.append((loss, {k: float(v) for k, v in values.items()}))
    found.sort(key=lambda item: item[0])
    return found


def fit_freespace(twin, data: Measurements, lbfgs_steps: int = 30, max_settings: int = 8, max_inputs: int = 8,
                  coarse_settings: int = 4, candidates: int = 3, candidate_steps: int = 10,
                  progress: Callable[[int, int, float], None] | None = None) -> list[float]:
    """Fit ``twin``'s misalignment and crosstalk in place; returns the loss history of the kept start.

    A coarse grid over rotation, shift and scale on ``coarse_settings`` x ``max_inputs`` readings; the
    ``candidates`` best grid points are refined with ``candidate_steps`` L-BFGS iterations over all five
    parameters on ``max_settings`` x ``max_inputs`` readings, and the best of them with ``lbfgs_steps``
    more (a subset of the readings keeps it fast; five parameters need few).
    """
    sub = _subset(data, max_settings, max_inputs)
    grid = coarse_search(twin, Measurements(sub.u[:coarse_settings], sub.x[:coarse_settings],
                                            sub.p[:coarse_settings]))
    x = torch.as_tensor(sub.x, dtype=torch.float64)
    u = torch.as_tensor(sub.u, dtype=torch.float64)
    p = torch.as_tensor(sub.p, dtype=torch.float64)
    total = candidates * candidate_steps + lbfgs_steps
    count = [0]

    def refine(z: dict, steps: int, history: list) -> float:
        def loss_fn():
            return torch.mean((functional_call(twin, _values(z), (x, u)) - p) ** 2)

        lbfgs = torch.optim.LBFGS(list(z.values()), lr=1.0, max_iter=steps, line_search_fn="strong_wolfe")

        def closure():
            lbfgs.zero_grad()
            loss = loss_fn()
            loss.backward()
            history.append(loss.item())
            return loss

        lbfgs.step(closure)
        with torch.no_grad():
            history.append(float(loss_fn()))
        count[0] += steps
        if progress:
            progress(min(count[0], total), total, history[-1])
        return history[-1]

    runs = []
    for _, start in grid[:candidates]:
        z = {n: torch.tensor((start[n] - _UNITS[n][1]) / _UNITS[n][0], dtype=torch.float64, requires_grad=True)
             for n in _UNITS}
        history: list[float] = []
        runs.append((refine(z, candidate_steps, history), z, history))
    _, z, history = min(runs, key=lambda r: r[0])
    if lbfgs_steps:
        refine(z, lbfgs_steps, history)
    values = {n: float(v.detach()) for n, v in _values(z).items()}
    values["crosstalk"] = max(0.0, values["crosstalk"])
    twin.load_fitted_state(values)
    return history
