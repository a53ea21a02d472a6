"""Pulse shaper + SHG + spectrometer on the bench: one shaper mask and one spectrum per sample.

The layer's band on the shaper (from ``start_thz``) is cut into macro-pixels of ``pixel_bins`` bins:
``n_inputs`` carry the input (spectral phase ``input_phase_rad * x``), the others the trainable
parameters (phase ``2 pi u``); every bin of the band transmits at 0 dB. Where the inputs sit is
``input_layout`` (:func:`input_pixels`): ``first`` puts them in a block at the band's edge, where a
Gaussian pulse has little light (on the virtual bench, at random parameters, the variance the input
causes in the SH spectrum is then 1.0-1.7x the detector noise's and 1/56-1/69 of the parameters'; a
logistic readout of the vowels from it gets 30-41 %: benchmarks/pulse_visibility.py), ``interleaved``
spreads them evenly across the band (23-46x the noise, 63-73 %; stations/pulse.yaml).
Each sample is one profile upload (read back and checked by the driver) and one acquisition; the
outputs are the chosen spectrometer pixels' counts over ``output_scale``.

The driver reads every upload back (a GET of the whole device profile, the slow part); here the first
upload and every ``verify_every``-th are read back and compared, the others trust the device's ``rc``.
"""
from __future__ import annotations

import numpy as np


def input_pixels(n_inputs: int, n_controls: int, layout: str = "first") -> np.ndarray:
    """Indices of the macro-pixels that carry the input, in input order (the rest carry the parameters)."""
    if layout == "first":
        return np.arange(n_inputs)
    if layout == "interleaved":  # evenly spread, the first and last input at the band's centre of mass
        n = n_inputs + n_controls
        return np.floor((np.arange(n_inputs) + 0.5) * n / n_inputs).astype(int)
    raise ValueError(f"pulse layer: input_layout must be 'first' or 'interleaved', got {layout!r}")


class PulseHardware:
    def __init__(self, cfg, shaper, spectrometer, verify_every: int = 50):
        self.cfg, self.shaper, self.spectrometer = cfg, shaper, spectrometer
        self.verify_every = max(int(verify_every), 1)
        self.uploads = 0
        self.modes = cfg.n_inputs
        self.n_outputs = len(cfg.outputs.channels)
        self.output_channels = np.asarray(cfg.outputs.channels)
        n_bins = (cfg.n_inputs + cfg.n_controls) * cfg.pixel_bins
        self.freq_thz = np.round(cfg.start_thz + 0.001 * np.arange(n_bins), 3)
        grid = shaper.frequencies()
        if self.freq_thz[0] < grid[0] - 1e-9 or self.freq_thz[-1] > grid[-1] + 1e-9:
            raise ValueError(f"layer band {self.freq_thz[0]:.3f}..{self.freq_thz[-1]:.3f} THz is outside the "
                             f"shaper's {grid[0]:.3f}..{grid[-1]:.3f} THz")
        n_pix = cfg.n_inputs + cfg.n_controls
        self.input_pix = input_pixels(cfg.n_inputs, cfg.n_controls, getattr(cfg, "input_layout", "first"))
        self.control_pix = np.setdiff1d(np.arange(n_pix), self.input_pix)
        self.batches = 0
        self.samples = 0

    @property
    def n_controls(self) -> int:
        return self.cfg.n_controls

    def phases(self, x: np.ndarray, u: np.ndarray) -> np.ndarray:
        """The spectral phase per bin for one input ``x`` (n_inputs,) and controls ``u`` (n_controls,)."""
        pix = np.empty(self.cfg.n_inputs + self.cfg.n_controls)
        pix[self.input_pix] = self.cfg.input_phase_rad * np.clip(x, 0.0, 1.0)
        pix[self.control_pix] = 2 * np.pi * np.clip(u, 0.0, 1.0)
        return np.repeat(pix, self.cfg.pixel_bins)

    def forward(self, x: np.ndarray, u: np.ndarray) -> np.ndarray:
        x = np.atleast_2d(np.asarray(x, dtype=float))
        u = np.asarray(u, dtype=float)
        if x.shape[1] != self.modes or u.shape != (self.n_controls,):
            raise ValueError(f"pulse layer: inputs (B, {self.modes}) and controls ({self.n_controls},) expected, "
                             f"got {x.shape} and {u.shape}")
        out = np.empty((len(x), self.n_outputs))
        ones = np.ones(len(self.freq_thz))
        for b in range(len(x)):
            verify = self.shaper.verify
            self.shaper.verify = verify and self.uploads % self.verify_every == 0
            try:
                self.shaper.set_mask(ones, self.phases(x[b], u), freq_thz=self.freq_thz)
            finally:
                self.shaper.verify = verify
            self.uploads += 1
            out[b] = self.spectrometer.acquire()[self.output_channels] / self.cfg.output_scale
            self.samples += 1
        self.batches += 1
        return out

    def forget_controls(self) -> None:
        """Nothing cached: every sample uploads its whole mask."""
