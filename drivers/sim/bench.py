"""What every heater-tuned virtual scene shares: the bench state the simulated heater DAC, modulator
and DAQ act on, the virtual clock, and the detector's noise and ADC.

A scene calls :meth:`HeaterBench._init_bench` from its ``__post_init__`` and, per acquisition,
:meth:`_acquired` and :meth:`_digitise`. Its ``spec`` provides ``heater_resistance_ohm``,
``drift_kelvin_per_hour``, ``noise_rel`` and ``adc_bits``.
"""
from __future__ import annotations

import threading

import numpy as np


class HeaterBench:
    seconds_per_sample: float
    seconds_per_heater_update: float

    def _init_bench(self, n_heaters: int, n_inputs: int, detector_range_w: float, rng_offset: int) -> None:
        self._rng = np.random.default_rng(self.seed + rng_offset)
        self._lock = threading.RLock()
        self.heater_v = np.zeros(n_heaters)
        self.modulator_v = np.zeros(n_inputs)
        self.virtual_time_s = 0.0
        self.extra_kelvin = 0.0  # environment change imposed by an experiment or test
        self.detector_range_w = detector_range_w
        self.samples_acquired = 0
        self._heaters_settling = False

    # --- the scene interface the simulated heater DAC, modulator and DAQ act on ---
    @property
    def n_heaters(self) -> int:
        return len(self.heater_v)

    @property
    def n_inputs(self) -> int:
        return len(self.modulator_v)

    @property
    def heater_resistance_ohm(self) -> float:
        return self.spec.heater_resistance_ohm

    def set_heaters(self, volts: np.ndarray) -> None:
        with self._lock:
            self.heater_v = np.asarray(volts, dtype=float).copy()
            self._heaters_settling = True

    def set_modulators(self, volts: np.ndarray) -> None:
        with self._lock:
            self.modulator_v = np.asarray(volts, dtype=float).copy()

    @property
    def temperature_change_k(self) -> float:
        return self.spec.drift_kelvin_per_hour * self.virtual_time_s / 3600.0 + self.extra_kelvin

    # --- one acquisition ---
    def _acquired(self, samples: int) -> None:
        """Advance the virtual clock: the first acquisition after a heater change waits for it."""
        self.samples_acquired += samples
        if self._heaters_settling:
            self.virtual_time_s += self.seconds_per_heater_update
            self._heaters_settling = False
        self.virtual_time_s += self.seconds_per_sample * samples

    def _digitise(self, power: np.ndarray, bipolar: bool = False) -> np.ndarray:
        """Detector noise and ADC quantisation over [0, range] (or [-range, range] when bipolar)."""
        full = self.detector_range_w
        power = power + self._rng.normal(0.0, self.spec.noise_rel * full, power.shape)
        lsb = (2 * full if bipolar else full) / (2**self.spec.adc_bits - 1)
        return np.clip(np.round(power / lsb) * lsb, -full if bipolar else 0.0, full)
