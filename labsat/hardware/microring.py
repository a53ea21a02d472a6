"""A microring weight bank on the bench: controls -> heater voltages (one per ring), input powers ->
modulator voltages (one per wavelength), balanced photodetectors -> signed outputs.

Normalisation: an input ``x_j`` in [0, 1] is the fraction of the line power ``line_power_w`` sent on
wavelength ``j``; an output is the balanced photodetector signal over ``line_power_w``, so an ideal bank
gives ``y = W x`` with ``W`` in [-1, 1].
"""
from __future__ import annotations

import numpy as np


class MicroringHardware:
    def __init__(self, cfg, heaters, modulator, daq, max_batch: int = 1024):
        self.cfg, self.heaters, self.modulator, self.daq = cfg, heaters, modulator, daq
        self.modes = cfg.n_inputs
        self.n_outputs = cfg.n_outputs
        self.heater_channels = np.asarray(cfg.heaters.channels)
        self.input_channels = np.asarray(cfg.inputs.channels)
        self.output_channels = np.asarray(cfg.outputs.channels)
        self.max_batch = max_batch
        self.batches = 0
        self.samples = 0
        self.heater_updates = 0
        self._last_u: np.ndarray | None = None
        try:  # the balanced signal spans [-N, N] line powers
            self.daq.power_range_w = cfg.n_inputs * cfg.line_power_w
        except AttributeError:  # pragma: no cover - a DAQ without a settable range
            pass

    @property
    def n_controls(self) -> int:
        return len(self.heater_channels)

    def control_voltages(self, u: np.ndarray) -> np.ndarray:
        return self.cfg.v_max * np.sqrt(np.clip(u, 0.0, 1.0))

    def set_controls(self, u: np.ndarray) -> None:
        u = np.asarray(u, dtype=float)
        if u.shape != (self.n_controls,):
            raise ValueError(f"microring bank: {self.n_controls} controls expected, got shape {u.shape}")
        if self._last_u is not None and np.array_equal(u, self._last_u):
            return
        self.heaters.set_voltages(self.control_voltages(u), self.heater_channels)
        self._last_u = u.copy()
        self.heater_updates += 1

    def input_voltages(self, x: np.ndarray) -> np.ndarray:
        """Modulator voltages for line-power fractions ``x`` in [0, 1] (power ~ sin^2)."""
        return 2 * self.cfg.modulator_vpi / np.pi * np.arcsin(np.sqrt(np.clip(x, 0.0, 1.0)))

    def run(self, x: np.ndarray) -> np.ndarray:
        x = np.atleast_2d(np.asarray(x, dtype=float))
        if x.shape[1] != self.modes:
            raise ValueError(f"microring bank: inputs of {self.modes} wavelengths expected, got {x.shape[1]}")
        out = []
        for start in range(0, len(x), self.max_batch):
            chunk = x[start:start + self.max_batch]
            volts = np.zeros((len(chunk), self.modulator.channels))
            volts[:, self.input_channels] = self.input_voltages(chunk)
            self.modulator.load_sequence(volts)
            self.daq.arm(len(chunk))
            self.modulator.play()
            p = self.daq.fetch(len(chunk))[:, self.output_channels]
            out.append(p / self.cfg.line_power_w)
            self.batches += 1
            self.samples += len(chunk)
        return np.concatenate(out)

    def forward(self, x: np.ndarray, u: np.ndarray) -> np.ndarray:
        self.set_controls(u)
        return self.run(x)

    def forget_controls(self) -> None:
        self._last_u = None
