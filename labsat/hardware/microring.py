"""A microring weight bank on the bench: controls -> heater voltages (one per ring), input powers ->
modulator voltages (one per wavelength), balanced photodetectors -> signed outputs.

Normalisation: an input ``x_j`` in [0, 1] is the fraction of the line power ``line_power_w`` sent on
wavelength ``j``; an output is the balanced photodetector signal over ``line_power_w``, so an ideal bank
gives ``y = W x`` with ``W`` in [-1, 1].
"""
from __future__ import annotations

import numpy as np

from .heater_bank import HeaterBankHardware


class MicroringHardware(HeaterBankHardware):
    name = "microring bank"

    def __init__(self, cfg, heaters, modulator, daq, max_batch: int | None = None):
        super().__init__(cfg, heaters, modulator, daq, max_batch)
        self.modes = cfg.n_inputs
        self.n_outputs = cfg.n_outputs
        self.output_scale = cfg.line_power_w
        try:  # the balanced signal spans [-N, N] line powers
            self.daq.power_range_w = cfg.n_inputs * cfg.line_power_w
        except AttributeError:  # pragma: no cover - a DAQ without a settable range
            pass

    def input_voltages(self, x: np.ndarray) -> np.ndarray:
        """Modulator voltages for line-power fractions ``x`` in [0, 1] (power ~ sin^2)."""
        return 2 * self.cfg.modulator_vpi / np.pi * np.arcsin(np.sqrt(np.clip(x, 0.0, 1.0)))
