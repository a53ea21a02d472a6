"""The virtual chip: an MZI mesh with hidden fabrication errors, thermal crosstalk, drift and noise.

Everything here is *hidden truth*. The product never reads it: it reaches the chip only through the
instrument protocols served by :mod:`labsat.drivers.sim.servers`. Tests may compare fits with it.

Physics (all batched numpy):

- heater ``j`` at voltage ``V_j`` dissipates ``P_j = V_j^2 / R_j``;
- phase of heater ``i``: ``offset_i + drift_i(t) + eta_i * sum_j C_ij P_j`` with ``C`` the thermal
  crosstalk matrix (1 on the diagonal, ``kappa`` between physical neighbours);
- each MZI: external phase, coupler, internal phase, coupler; couplers have ratio errors;
- inputs: a laser split evenly over ``modes`` amplitude modulators, amplitude ``sin(pi/2 V / Vpi)``;
- outputs: per-port loss times detector responsivity, additive noise, ADC quantisation.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field

import numpy as np

from labsat.twins.layout import MeshLayout


@dataclass(frozen=True)
class ChipSpec:
    """Nominal design values (what the datasheet says) and the spread of fabrication errors."""

    modes: int = 8
    heater_resistance_ohm: float = 600.0
    v2pi: float = 5.0  # volts for a 2*pi shift at nominal efficiency, no crosstalk
    modulator_vpi: float = 2.0
    laser_power_w: float = 1e-3
    # fabrication spread (standard deviations)
    phase_offset_sigma: float = 0.3  # rad
    efficiency_sigma: float = 0.05  # relative
    coupler_sigma: float = 0.04  # rad of splitting angle around pi/4
    crosstalk_mean: float = 0.06  # fraction of neighbour heat
    crosstalk_sigma: float = 0.015
    port_loss_sigma: float = 0.05  # relative
    modulator_vpi_sigma: float = 0.01  # relative, not modelled by the twin
    # detector
    noise_rel: float = 2e-3  # additive noise, fraction of the full range
    adc_bits: int = 16
    # drift: common temperature change (K) maps to phase via per-heater sensitivity
    drift_rad_per_kelvin: float = 0.25
    drift_kelvin_per_hour: float = 0.5

    @property
    def eta_nominal(self) -> float:
        """Nominal phase per heater power, rad/W."""
        return 2 * np.pi * self.heater_resistance_ohm / self.v2pi**2


@dataclass
class ChipTruth:
    offset: np.ndarray
    eta: np.ndarray
    crosstalk: np.ndarray  # (H, H)
    coupler: np.ndarray  # (n_mzi, 2) splitting angles
    port_gain: np.ndarray
    modulator_vpi: np.ndarray
    drift_sensitivity: np.ndarray

    @classmethod
    def draw(cls, spec: ChipSpec, seed: int) -> "ChipTruth":
        layout = MeshLayout(spec.modes)
        rng = np.random.default_rng(seed)
        h = layout.n_heaters
        kappa = np.clip(rng.normal(spec.crosstalk_mean, spec.crosstalk_sigma, h - 1), 0, None)
        xt = np.eye(h) + np.diag(kappa, 1) + np.diag(kappa, -1)
        return cls(
            offset=rng.normal(0.0, spec.phase_offset_sigma, h),
            eta=spec.eta_nominal * (1 + rng.normal(0.0, spec.efficiency_sigma, h)),
            crosstalk=xt,
            coupler=np.pi / 4 + rng.normal(0.0, spec.coupler_sigma, (layout.n_mzi, 2)),
            port_gain=np.clip(1 + rng.normal(0.0, spec.port_loss_sigma, spec.modes), 0.5, 1.2),
            modulator_vpi=spec.modulator_vpi * (1 + rng.normal(0, spec.modulator_vpi_sigma, spec.modes)),
            drift_sensitivity=1 + 0.1 * rng.standard_normal(h),
        )


def mesh_transfer(phases: np.ndarray, coupler: np.ndarray, layout: MeshLayout, fields: np.ndarray) -> np.ndarray:
    """Propagate complex ``fields`` (B, N) through the mesh with heater ``phases`` (H,)."""
    theta, phi = phases[0::2], phases[1::2]
    out = fields.astype(np.complex128, copy=True)
    for tops, sl in zip(layout.columns, layout.column_slices):
        if len(tops) == 0:
            continue
        a, b = out[:, tops], out[:, tops + 1]
        a = a * np.exp(1j * phi[sl])
        c1, s1 = np.cos(coupler[sl, 0]), np.sin(coupler[sl, 0])
        a, b = c1 * a + 1j * s1 * b, 1j * s1 * a + c1 * b
        a = a * np.exp(1j * theta[sl])
        c2, s2 = np.cos(coupler[sl, 1]), np.sin(coupler[sl, 1])
        a, b = c2 * a + 1j * s2 * b, 1j * s2 * a + c2 * b
        out[:, tops], out[:, tops + 1] = a, b
    return out


@dataclass
class VirtualChip:
    """A chip plus its bench (laser, modulators, detectors), driven by the simulated instruments.

    Thread-safe: the protocol servers call it from their own threads.
    """

    spec: ChipSpec = field(default_factory=ChipSpec)
    seed: int = 0
    seconds_per_sample: float = 1e-4  # virtual time per acquired sample (integration + modulation)
    seconds_per_heater_update: float = 5e-3  # virtual thermal settling per heater write

    def __post_init__(self):
        self.layout = MeshLayout(self.spec.modes)
        self.truth = ChipTruth.draw(self.spec, self.seed)
        self._rng = np.random.default_rng(self.seed + 1_000_003)
        self._lock = threading.RLock()
        self.heater_v = np.zeros(self.layout.n_heaters)
        self.modulator_v = np.zeros(self.spec.modes)
        self.virtual_time_s = 0.0
        self.extra_kelvin = 0.0  # environment change imposed by an experiment or test
        self.detector_range_w = self.spec.laser_power_w
        self.samples_acquired = 0
        self._heaters_settling = False

    # --- the scene interface the simulated heater DAC, modulator and DAQ act on ---
    @property
    def n_heaters(self) -> int:
        return self.layout.n_heaters

    @property
    def n_inputs(self) -> int:
        return self.spec.modes

    @property
    def heater_resistance_ohm(self) -> float:
        return self.spec.heater_resistance_ohm

    # --- state changes (called by the simulated instruments) ---
    def set_heaters(self, volts: np.ndarray) -> None:
        with self._lock:
            self.heater_v = np.asarray(volts, dtype=float).copy()
            self._heaters_settling = True

    def set_modulators(self, volts: np.ndarray) -> None:
        with self._lock:
            self.modulator_v = np.asarray(volts, dtype=float).copy()

    # --- physics ---
    @property
    def temperature_change_k(self) -> float:
        return self.spec.drift_kelvin_per_hour * self.virtual_time_s / 3600.0 + self.extra_kelvin

    def heater_phases(self) -> np.ndarray:
        t = self.truth
        power = self.heater_v**2 / self.spec.heater_resistance_ohm
        drift = self.spec.drift_rad_per_kelvin * self.temperature_change_k * t.drift_sensitivity
        return t.offset + drift + t.eta * (t.crosstalk @ power)

    def output_powers(self, modulator_volts: np.ndarray, noisy: bool = True) -> np.ndarray:
        """Detector powers (W), shape (B, N), for a batch of modulator settings (B, N)."""
        with self._lock:
            mv = np.atleast_2d(np.asarray(modulator_volts, dtype=float))
            amp = np.sin(0.5 * np.pi * mv / self.truth.modulator_vpi)
            fields = amp * np.sqrt(self.spec.laser_power_w / self.spec.modes)
            out = mesh_transfer(self.heater_phases(), self.truth.coupler, self.layout, fields)
            power = self.truth.port_gain * np.abs(out) ** 2
            self.samples_acquired += len(mv)
            if self._heaters_settling:  # the first acquisition after a heater change waits for it
                self.virtual_time_s += self.seconds_per_heater_update
                self._heaters_settling = False
            self.virtual_time_s += self.seconds_per_sample * len(mv)
            if noisy:
                full = self.detector_range_w
                power = power + self._rng.normal(0.0, self.spec.noise_rel * full, power.shape)
                lsb = full / (2**self.spec.adc_bits - 1)
                power = np.clip(np.round(power / lsb) * lsb, 0.0, full)
            return power
