"""The virtual microring weight bank: add-drop rings tuned by heaters, read by balanced photodetectors.

Everything here is *hidden truth*, reached by the product only through the simulated heater DAC,
modulator and DAQ of :mod:`labsat.drivers.sim.servers` (this scene offers the same interface as the
MZI mesh's :class:`~labsat.drivers.sim.chip.VirtualChip`).

Layout: ``n_outputs`` rows (one bus waveguide and one balanced photodetector each) of ``n_inputs``
rings; ring ``(i, j)`` (heater ``k = i * n_inputs + j``) sits at wavelength channel ``j`` of row ``i``.
The WDM input carries one wavelength per input, its power set by an amplitude modulator; channel
spacing is taken as much wider than a ring's linewidth, so wavelength ``j`` only sees ring ``(i, j)``.

Physics (batched numpy), detunings in units of the ring's half linewidth (HWHM):

- heater ``k`` at ``V_k`` dissipates ``P_k = V_k^2 / R``;
- detuning ``d_k = (bias + offset_k + eff_k * shift_per_w * (C P)_k + drift_k) / hwhm`` with ``C`` the
  thermal crosstalk matrix (1 on the diagonal; strong between neighbours in a row, weaker between
  rows and second neighbours), ``offset_k`` the fabrication resonance error, ``drift_k`` the thermal
  drift ``pm_per_kelvin * sens_k * dT`` (slow: ``drift_kelvin_per_hour``, plus ``extra_kelvin``);
- Lorentzian drop and through ports: ``drop = a_k / (1 + d^2)``, ``through = 1 - b_k / (1 + d^2)``;
  the balanced photodetector measures drop minus through, so the weight is
  ``w_k = (a_k + b_k) / (1 + d_k^2) - 1`` in ``[-1, 1]``;
- output ``i``: ``g_i * sum_j w_ij * line_j * P0 * sin^2(pi/2 V_j / Vpi_j)`` (W) plus noise and ADC
  quantisation over the signed range ``[-range, range]``.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .bench import HeaterBench


@dataclass(frozen=True)
class MicroringSpec:
    """Nominal design values (the datasheet) and the spread of fabrication errors."""

    n_inputs: int = 8
    n_outputs: int = 8
    heater_resistance_ohm: float = 600.0
    hwhm_pm: float = 100.0  # half linewidth
    bias_pm: float = -350.0  # designed detuning of a cold ring from its laser line
    shift_pm_per_mw: float = 75.0  # heater efficiency
    modulator_vpi: float = 2.0
    line_power_w: float = 1e-4  # laser power per wavelength channel
    # fabrication spread
    offset_sigma_pm: float = 60.0
    efficiency_sigma: float = 0.05
    crosstalk_row: float = 0.25  # heat fraction reaching the next ring in the same row
    crosstalk_row2: float = 0.07  # ... the ring after next
    crosstalk_col: float = 0.12  # ... the ring at the same place in the next row
    crosstalk_sigma: float = 0.2  # relative spread of each coupling
    contrast_sigma: float = 0.03  # spread of a + b around 1.85
    gain_sigma: float = 0.04  # detector responsivity and laser line power spread
    modulator_vpi_sigma: float = 0.01  # not modelled by the twin
    # detector
    noise_rel: float = 1e-3
    adc_bits: int = 16
    # drift
    drift_pm_per_kelvin: float = 80.0
    drift_kelvin_per_hour: float = 0.5

    @property
    def n_rings(self) -> int:
        return self.n_inputs * self.n_outputs


@dataclass
class MicroringTruth:
    offset_pm: np.ndarray  # (K,)
    eff: np.ndarray  # (K,)
    crosstalk: np.ndarray  # (K, K), 1 on the diagonal
    contrast: np.ndarray  # (K,) a + b
    out_gain: np.ndarray  # (M,)
    line_gain: np.ndarray  # (N,)
    modulator_vpi: np.ndarray  # (N,)
    drift_sensitivity: np.ndarray  # (K,)

    @classmethod
    def draw(cls, spec: MicroringSpec, seed: int) -> "MicroringTruth":
        rng = np.random.default_rng(seed)
        m, n, k = spec.n_outputs, spec.n_inputs, spec.n_rings
        i, j = np.divmod(np.arange(k), n)
        di, dj = np.abs(i[:, None] - i[None]), np.abs(j[:, None] - j[None])
        base = np.where((di == 0) & (dj == 1), spec.crosstalk_row, 0.0)
        base = base + np.where((di == 0) & (dj == 2), spec.crosstalk_row2, 0.0)
        base = base + np.where((di == 1) & (dj == 0), spec.crosstalk_col, 0.0)
        spread = 1 + spec.crosstalk_sigma * rng.standard_normal((k, k))
        spread = 0.5 * (spread + spread.T)  # heat flow is symmetric
        xt = np.eye(k) + np.clip(base * spread, 0.0, None)
        return cls(
            offset_pm=rng.normal(0.0, spec.offset_sigma_pm, k),
            eff=1 + rng.normal(0.0, spec.efficiency_sigma, k),
            crosstalk=xt,
            contrast=np.clip(1.85 + rng.normal(0.0, spec.contrast_sigma, k), 1.5, 2.0),
            out_gain=np.clip(1 + rng.normal(0.0, spec.gain_sigma, m), 0.7, 1.3),
            line_gain=np.clip(1 + rng.normal(0.0, spec.gain_sigma, n), 0.7, 1.3),
            modulator_vpi=spec.modulator_vpi * (1 + rng.normal(0.0, spec.modulator_vpi_sigma, n)),
            drift_sensitivity=1 + 0.05 * rng.standard_normal(k),
        )


def balanced_weight(detuning_hwhm: np.ndarray, contrast: np.ndarray) -> np.ndarray:
    """Drop minus through power of an add-drop ring, per unit input power: in [-1, contrast - 1]."""
    return contrast / (1.0 + detuning_hwhm**2) - 1.0


@dataclass
class MicroringBank(HeaterBench):
    """A weight bank plus its bench (laser lines, modulators, balanced detectors); thread-safe."""

    spec: MicroringSpec = field(default_factory=MicroringSpec)
    seed: int = 0
    seconds_per_sample: float = 1e-4
    seconds_per_heater_update: float = 5e-3

    def __post_init__(self):
        self.truth = MicroringTruth.draw(self.spec, self.seed)
        self._init_bench(self.spec.n_rings, self.spec.n_inputs,
                         self.spec.n_inputs * self.spec.line_power_w, rng_offset=2_000_003)

    # --- the scene interface of the simulated heater DAC, modulator and DAQ ---
    @property
    def n_outputs(self) -> int:
        return self.spec.n_outputs

    # --- physics ---
    def detunings(self) -> np.ndarray:
        """Detuning of every ring from its laser line, in HWHM, at the present heater voltages."""
        s, t = self.spec, self.truth
        power_mw = 1e3 * self.heater_v**2 / s.heater_resistance_ohm
        drift = s.drift_pm_per_kelvin * self.temperature_change_k * t.drift_sensitivity
        shift = s.bias_pm + t.offset_pm + drift + t.eff * s.shift_pm_per_mw * (t.crosstalk @ power_mw)
        return shift / s.hwhm_pm

    def weights(self) -> np.ndarray:
        """The balanced weight matrix (M, N) now, in [-1, 1]."""
        w = balanced_weight(self.detunings(), self.truth.contrast)
        return w.reshape(self.spec.n_outputs, self.spec.n_inputs)

    def output_powers(self, modulator_volts: np.ndarray, noisy: bool = True) -> np.ndarray:
        """Balanced detector signals (W, signed), shape (B, M), for modulator settings (B, N)."""
        with self._lock:
            s, t = self.spec, self.truth
            mv = np.atleast_2d(np.asarray(modulator_volts, dtype=float))
            line = s.line_power_w * t.line_gain * np.sin(0.5 * np.pi * mv / t.modulator_vpi) ** 2
            power = t.out_gain * (line @ self.weights().T)
            self._acquired(len(mv))
            return self._digitise(power, bipolar=True) if noisy else power
