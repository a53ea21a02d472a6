"""The virtual chip's physics driven directly, without the loopback instruments (studies and tests).

Same physics, noise, quantisation and drift as the virtual lab; only the protocol path (and its
latency) is skipped. ``truth()`` exposes the hidden parameters in the twin's parameterisation: only
reports and tests call it, never the calibration code.
"""
from __future__ import annotations

import numpy as np

from labsat.drivers.sim.chip import ChipSpec, VirtualChip


class DirectHardware:
    def __init__(self, seed: int = 1, modes: int = 4, v_max: float = 6.0, v2pi: float = 5.0,
                 detector_range_w: float | None = None, **spec):
        """``spec``: further :class:`ChipSpec` fields (e.g. ``error_model="paper"``)."""
        self.chip = VirtualChip(ChipSpec(modes=modes, v2pi=v2pi, **spec), seed=seed)
        if detector_range_w is not None:
            self.chip.detector_range_w = detector_range_w
        self.modes = modes
        self.n_controls = self.chip.layout.n_heaters
        self.v_max = v_max
        self.phase_per_u = 2 * np.pi * v_max**2 / v2pi**2
        self.readings = 0

    def forward(self, x, u, noisy: bool = True):
        x = np.clip(np.atleast_2d(np.asarray(x, dtype=float)), 0.0, 1.0)
        self.chip.set_heaters(self.v_max * np.sqrt(np.clip(np.asarray(u, dtype=float), 0.0, 1.0)))
        volts = 2 * self.chip.spec.modulator_vpi / np.pi * np.arcsin(x)
        self.readings += len(x)
        return self.chip.output_powers(volts, noisy=noisy) / (self.chip.spec.laser_power_w / self.modes)

    def noise_floor(self, data) -> float:
        """RMSE of ``data``'s readings against the noiseless chip (reports and tests only: the truth)."""
        clean = np.stack([self.forward(data.x[k], data.u[k], noisy=False) for k in range(len(data))])
        return float(np.sqrt(np.mean((data.p - clean) ** 2)))

    def truth(self) -> dict:
        t, s = self.chip.truth, self.chip.spec
        return {"offset": t.offset, "eff": t.eta / s.eta_nominal, "crosstalk": np.diag(t.crosstalk, 1),
                "coupler_error": t.coupler - np.pi / 4, "gain": t.port_gain}
