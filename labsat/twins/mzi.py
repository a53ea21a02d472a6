"""Differentiable digital twin of an MZI mesh with fittable imperfections (torch).

Controls are normalised heater powers ``u`` in [0, 1] (heater voltage ``v_max * sqrt(u)``), so the phase
is linear in the control: ``phase = offset + phase_per_u * eff * (C u)``. The fittable imperfections
are per-heater phase offsets and efficiencies, thermal crosstalk between physical neighbours,
coupler splitting-angle errors and per-port output gains. A fresh twin is the *nominal* chip.
"""
from __future__ import annotations

import torch
from torch import nn

from .clements import mesh_matrix, powers
from .fitted import FittedTensors
from .layout import MeshLayout

FIT_PARAMETERS = ("offset", "log_eff", "crosstalk", "coupler_error", "log_gain")


class MZIMeshTwin(FittedTensors, nn.Module):
    fit_parameters = FIT_PARAMETERS

    def __init__(self, modes: int, phase_per_u: float):
        """``phase_per_u``: nominal phase (rad) at ``u = 1``, i.e. ``eta_nominal * v_max^2 / R``."""
        super().__init__()
        self.layout = MeshLayout(modes)
        self.modes = modes
        self.phase_per_u = float(phase_per_u)
        h, m = self.layout.n_heaters, self.layout.n_mzi
        self.offset = nn.Parameter(torch.zeros(h, dtype=torch.float64))
        self.log_eff = nn.Parameter(torch.zeros(h, dtype=torch.float64))
        self.crosstalk = nn.Parameter(torch.zeros(h - 1, dtype=torch.float64))
        self.coupler_error = nn.Parameter(torch.zeros(m, 2, dtype=torch.float64))
        self.log_gain = nn.Parameter(torch.zeros(modes, dtype=torch.float64))
        # The twin's own parameters are fitted by calibration, not by training.
        self.requires_grad_(False)

    # --- the interface every twin offers (see labsat.kinds) ---
    @property
    def n_controls(self) -> int:
        return self.layout.n_heaters

    @property
    def n_inputs(self) -> int:
        return self.modes

    @property
    def n_outputs(self) -> int:
        return self.modes

    def heater_phases(self, u: torch.Tensor) -> torch.Tensor:
        """Phases (..., H) for controls (..., H), with nearest-neighbour thermal crosstalk."""
        u = u.to(torch.float64)
        zero = u.new_zeros(u.shape[:-1] + (1,))
        heat = u + torch.cat([self.crosstalk * u[..., 1:], zero], -1) \
                 + torch.cat([zero, self.crosstalk * u[..., :-1]], -1)
        return self.offset + self.phase_per_u * torch.exp(self.log_eff) * heat

    def forward(self, amplitudes: torch.Tensor, u: torch.Tensor, dtype: torch.dtype = torch.float64,
                result_dtype: torch.dtype = torch.float64) -> torch.Tensor:
        """Normalised output powers for input amplitudes in [0, 1] and controls u.

        Shapes: amplitudes (B, N) with u (H,), or amplitudes (K, B, N) with u (K, H) for K control
        settings at once. Normalised so that one input port at amplitude 1 carries power 1.
        ``dtype``: the mesh is built and applied in this precision (float32: the large-mesh calibration
        fit, ~2.5× faster at N = 64; the phases and the result stay float64). ``result_dtype = dtype``: the
        result stays in ``dtype`` too, the port gains folded into the matrix's rows (``|√g U x|² = g |U x|²``:
        no cast or product on the (B, N) powers; the gradient-only passes of online training,
        :mod:`labsat.physical`).
        """
        phases = self.heater_phases(u).to(dtype)
        transfer = mesh_matrix(phases[..., 0::2], phases[..., 1::2], self.layout,
                               split_error=self.coupler_error.to(dtype))
        if result_dtype == dtype != torch.float64:
            rows = torch.exp(0.5 * self.log_gain).to(dtype).unsqueeze(-1)
            return powers(transfer * rows, amplitudes.to(dtype))
        return torch.exp(self.log_gain) * powers(transfer, amplitudes.to(dtype)).to(torch.float64)

    # --- persistence of the fitted imperfections (FittedTensors) ---
    def describe(self) -> str:
        return f"{self.modes}-mode mesh"
