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

from dataclasses import dataclass, field

import numpy as np

from .bench import HeaterBench

from labsat.geometry import MeshLayout


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
class VirtualChip(HeaterBench):
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
        self._init_bench(self.layout.n_heaters, self.spec.modes, self.spec.laser_power_w, rng_offset=1_000_003)

    # --- physics ---
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
            self._acquired(len(mv))
            return self._digitise(power) if noisy else power
