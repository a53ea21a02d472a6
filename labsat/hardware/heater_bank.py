"""The bench adapter shared by heater-tuned layers (MZI mesh, microring bank): controls -> heater
voltages, inputs -> a modulator sequence that triggers the DAQ, DAQ readings -> normalised outputs.

Subclasses say only what differs: how many inputs (``modes``), how an input becomes a modulator voltage
(:meth:`input_voltages`) and what a reading is normalised by (``output_scale``).
"""
from __future__ import annotations

import numpy as np

from labsat.drivers.base import MEMORY_DEPTH

from .memory import reuse_freed_memory


def heater_voltages(u, v_max: float) -> np.ndarray:
    """The control law of heater-tuned layers, written once: normalised heater power ``u`` in [0, 1] ->
    heater voltage ``v_max * sqrt(u)`` (phase is then linear in ``u``, so SAM's radius is in ``u``)."""
    return float(v_max) * np.sqrt(np.clip(np.asarray(u, dtype=float), 0.0, 1.0))


class HeaterBankHardware:
    """Counts every hardware forward (``batches``), sample (``samples``) and heater update."""

    modes: int
    output_scale: float
    name = "layer"

    def __init__(self, cfg, heaters, modulator, daq, max_batch: int | None = None):
        self.cfg, self.heaters, self.modulator, self.daq = cfg, heaters, modulator, daq
        self.heater_channels = np.asarray(cfg.heaters.channels)
        self.input_channels = np.asarray(cfg.inputs.channels)
        self.output_channels = np.asarray(cfg.outputs.channels)
        # one modulator sequence (and one DAQ acquisition) per chunk of the batch: as long as both
        # instruments' memories hold (their instruments.yaml max_points; drivers.base.MEMORY_DEPTH when they do not say)
        depth = min(getattr(modulator, "max_points", MEMORY_DEPTH), getattr(daq, "max_points", MEMORY_DEPTH))
        self.max_batch = depth if max_batch is None else min(int(max_batch), depth)
        reuse_freed_memory()  # a step's multi-MB arrays reuse the last step's pages (hardware/memory.py)
        self.batches = 0
        self.samples = 0
        self.heater_updates = 0
        self._last_u: np.ndarray | None = None
        self._heater_writes = None

    @classmethod
    def for_layer(cls, station, layer: str, **kwargs):
        """The adapter of a connected station's heater-tuned layer, over the instruments it names."""
        cfg = station.config.layers[layer]
        return cls(cfg, heaters=station.instruments[cfg.heaters.instrument],
                   modulator=station.instruments[cfg.inputs.instrument],
                   daq=station.instruments[cfg.outputs.instrument], **kwargs)

    @property
    def n_controls(self) -> int:
        return len(self.heater_channels)

    def control_voltages(self, u: np.ndarray) -> np.ndarray:
        return heater_voltages(u, self.cfg.v_max)

    def input_voltages(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def set_controls(self, u: np.ndarray) -> None:
        u = np.asarray(u, dtype=float)
        if u.shape != (self.n_controls,):
            raise ValueError(f"{self.name}: {self.n_controls} controls expected, got shape {u.shape}")
        # skip an unchanged setting, unless someone else (a STOP, a shutdown) wrote the heaters since
        if (self._last_u is not None and np.array_equal(u, self._last_u)
                and getattr(self.heaters, "writes", None) == self._heater_writes):
            return
        self.heaters.set_voltages(self.control_voltages(u), self.heater_channels)
        self._last_u = u.copy()
        self._heater_writes = getattr(self.heaters, "writes", None)
        self.heater_updates += 1

    def run(self, x: np.ndarray) -> np.ndarray:
        """Normalised outputs (B, n_out) for inputs (B, modes) in [0, 1]: one sequence per chunk of at most
        ``max_batch`` inputs (the instruments' memory depth)."""
        x = np.clip(np.atleast_2d(np.asarray(x, dtype=float)), 0.0, 1.0)
        if x.shape[1] != self.modes:
            raise ValueError(f"{self.name}: inputs of width {self.modes} expected, got {x.shape[1]}")
        every_input = _is_all(self.input_channels, self.modulator.channels)  # no zero-padded channels
        every_output = _is_all(self.output_channels, self.daq.channels)
        out = []
        for start in range(0, len(x), self.max_batch):
            chunk = x[start:start + self.max_batch]
            if every_input:
                volts = self.input_voltages(chunk)
            else:
                volts = np.zeros((len(chunk), self.modulator.channels))
                volts[:, self.input_channels] = self.input_voltages(chunk)
            self.modulator.load_sequence(volts)
            self.daq.arm(len(chunk))
            self.modulator.play()
            got = self.daq.fetch(len(chunk))
            out.append((got if every_output else got[:, self.output_channels]) / self.output_scale)
            self.batches += 1
            self.samples += len(chunk)
        return out[0] if len(out) == 1 else np.concatenate(out)

    def forward(self, x: np.ndarray, u: np.ndarray) -> np.ndarray:
        self.set_controls(u)
        return self.run(x)

    def forget_controls(self) -> None:
        """Make the next :meth:`set_controls` write, e.g. after the heaters were zeroed."""
        self._last_u = None


def _is_all(channels: np.ndarray, count: int) -> bool:
    """True when ``channels`` is every channel of an instrument with ``count`` channels, in order."""
    return len(channels) == count and bool(np.array_equal(channels, np.arange(count)))
