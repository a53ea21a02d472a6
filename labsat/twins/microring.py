"""Differentiable twin of a microring weight bank with a fitted thermal crosstalk matrix (torch).

Controls ``u`` in [0, 1] are normalised heater powers (heater voltage ``v_max * sqrt(u)``), one per ring,
row-major (ring ``(i, j)`` is control ``i * n_inputs + j``). The detuning of ring ``k`` from its laser
line, in half linewidths, is ``bias + offset_k + tune * eff_k * (C u)_k`` with ``C = I + X`` the thermal
crosstalk matrix, ``X`` nonzero only between neighbouring rings (:func:`crosstalk_mask`). The balanced
photodetector reads drop minus through power, so each weight is ``contrast_k / (1 + d_k^2) - 1`` in
``[-1, 1]``; output ``i = g_i * sum_j w_ij * l_j * x_j`` for input powers ``x`` in [0, 1] per wavelength.

Fitted by calibration (``FIT_PARAMETERS``; :func:`labsat.calibration.microring.fit_microring`): resonance offsets, heater efficiencies, the crosstalk
entries, contrasts, output gains (detector responsivity) and line gains (laser power per channel).
A fresh twin is the datasheet bank: no offsets, no crosstalk, nominal contrast.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .fitted import FittedTensors

FIT_PARAMETERS = ("offset", "log_eff", "crosstalk", "contrast", "log_gain_out", "log_gain_in")


def crosstalk_mask(n_outputs: int, n_inputs: int) -> np.ndarray:
    """Ring pairs the twin lets couple thermally: same row within two places, or adjacent rows within one."""
    i, j = np.divmod(np.arange(n_outputs * n_inputs), n_inputs)
    di, dj = np.abs(i[:, None] - i[None]), np.abs(j[:, None] - j[None])
    return ((di == 0) & (dj >= 1) & (dj <= 2)) | ((di == 1) & (dj <= 1))


class MicroringTwin(FittedTensors, nn.Module):
    fit_parameters = FIT_PARAMETERS
    twin_name = "microring twin"

    def __init__(self, n_inputs: int, n_outputs: int, bias_hwhm: float, tune_hwhm: float,
                 contrast: float = 1.85, crosstalk_design: tuple[float, float, float] = (0.0, 0.0, 0.0)):
        """``bias_hwhm``: a cold ring's detuning; ``tune_hwhm``: the shift at ``u = 1`` (both in HWHM);
        ``crosstalk_design``: the layout's thermal model (next ring in a row, the one after, next row),
        the starting values of the fitted crosstalk matrix."""
        super().__init__()
        self.n_in, self.n_out = int(n_inputs), int(n_outputs)
        k = self.n_in * self.n_out
        self.bias_hwhm, self.tune_hwhm = float(bias_hwhm), float(tune_hwhm)
        mask = torch.as_tensor(crosstalk_mask(self.n_out, self.n_in))
        self.register_buffer("_rows", mask.nonzero()[:, 0].clone(), persistent=False)
        self.register_buffer("_cols", mask.nonzero()[:, 1].clone(), persistent=False)
        self.offset = nn.Parameter(torch.zeros(k, dtype=torch.float64))
        self.log_eff = nn.Parameter(torch.zeros(k, dtype=torch.float64))
        ri, rj = np.divmod(self._rows.numpy(), self.n_in)
        ci, cj = np.divmod(self._cols.numpy(), self.n_in)
        row, row2, col = crosstalk_design
        guess = np.where((ri == ci) & (np.abs(rj - cj) == 1), row, 0.0) \
            + np.where((ri == ci) & (np.abs(rj - cj) == 2), row2, 0.0) \
            + np.where((np.abs(ri - ci) == 1) & (rj == cj), col, 0.0)
        self.crosstalk = nn.Parameter(torch.as_tensor(guess, dtype=torch.float64))
        self.contrast = nn.Parameter(torch.full((k,), float(contrast), dtype=torch.float64))
        self.log_gain_out = nn.Parameter(torch.zeros(self.n_out, dtype=torch.float64))
        self.log_gain_in = nn.Parameter(torch.zeros(self.n_in, dtype=torch.float64))
        self.requires_grad_(False)  # fitted by calibration, not by training

    # --- the interface every twin offers (labsat.kinds) ---
    @property
    def n_controls(self) -> int:
        return self.n_in * self.n_out

    @property
    def n_inputs(self) -> int:
        return self.n_in

    @property
    def n_outputs(self) -> int:
        return self.n_out

    def crosstalk_matrix(self) -> torch.Tensor:
        k = self.n_controls
        c = torch.eye(k, dtype=torch.float64)
        return c.index_put((self._rows, self._cols), self.crosstalk, accumulate=True)

    def detunings(self, u: torch.Tensor) -> torch.Tensor:
        """Detuning (..., K) in half linewidths for controls (..., K)."""
        heat = u.to(torch.float64) @ self.crosstalk_matrix().T
        return self.bias_hwhm + self.offset + self.tune_hwhm * torch.exp(self.log_eff) * heat

    def weights(self, u: torch.Tensor) -> torch.Tensor:
        """Balanced weights (..., M, N) in [-1, 1]."""
        d = self.detunings(u)
        w = self.contrast.clamp(0.0, 2.0) / (1.0 + d**2) - 1.0
        return w.reshape(*w.shape[:-1], self.n_out, self.n_in)

    def forward(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """Outputs (B, M) for input powers x (B, N) and u (K,); or (S, B, M) for x (S, B, N), u (S, K)."""
        w = self.weights(u)
        xin = x.to(torch.float64) * torch.exp(self.log_gain_in)
        return torch.exp(self.log_gain_out) * (xin @ w.transpose(-1, -2))

    # --- persistence of the fitted imperfections (FittedTensors) ---
    def describe(self) -> str:
        return f"{self.n_out}x{self.n_in} bank"


def twin_for_layer(cfg, heater_resistance_ohm: float) -> MicroringTwin:
    """The nominal twin of a microring layer config, from its datasheet values."""
    p_max_mw = 1e3 * cfg.v_max**2 / heater_resistance_ohm
    return MicroringTwin(cfg.n_inputs, cfg.n_outputs, bias_hwhm=cfg.bias_pm / cfg.hwhm_pm,
                         tune_hwhm=cfg.shift_pm_per_mw * p_max_mw / cfg.hwhm_pm, contrast=cfg.contrast,
                         crosstalk_design=tuple(cfg.crosstalk_design))
