"""Calibration of a microring weight bank's twin (:mod:`labsat.twins.microring`): every imperfection the twin
names in ``FIT_PARAMETERS`` (resonance offsets, heater efficiencies, thermal crosstalk, contrasts, gains)
fitted to measurements at once."""
from __future__ import annotations

import torch

from labsat.twins.microring import FIT_PARAMETERS

from .fit import least_squares


def fit_microring(twin, data, adam_steps: int = 400, lbfgs_steps: int = 150, lr: float = 0.03,
                  progress=None) -> list[float]:
    """Global least-squares fit of all the twin's imperfections to measurements (``calibration.measure``):
    Adam from the twin's present values, then L-BFGS; returns the loss history."""
    x = torch.as_tensor(data.x, dtype=torch.float64)
    u = torch.as_tensor(data.u, dtype=torch.float64)
    target = torch.as_tensor(data.p, dtype=torch.float64)
    return least_squares([getattr(twin, k) for k in FIT_PARAMETERS],
                         lambda: torch.mean((twin(x, u) - target) ** 2), adam_steps, lbfgs_steps, lr, progress)
