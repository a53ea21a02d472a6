"""A simulated spectrometer (SCPI on loopback) reading a scene's output spectrum.

The scene offers ``spectrum(integration_s) -> counts per pixel`` and ``wavelengths_nm()``; see
:class:`labsat.drivers.sim.shg.ShgScene`. :data:`start` is the simulated counterpart that the
``spectrometer`` driver's registration names (drivers/registry.py).
"""
from __future__ import annotations

import numpy as np

from ..base import encode_block
from .scpi import UNDEFINED, SimScpiInstrument
from .wire import line_server


class SimSpectrometer(SimScpiInstrument):
    def __init__(self, scene, channels: int, serial: str = "SIM-SPEC"):
        super().__init__()
        self.scene, self.channels, self.serial = scene, channels, serial
        self.integration_s = 1e-3
        self.averages = 1

    def _pixels(self, values: np.ndarray) -> np.ndarray:
        out = np.zeros(self.channels)
        n = min(self.channels, len(values))
        out[:n] = values[:n]
        return out

    def identity(self) -> str:
        return f"labsat,SIM-SPEC{self.channels},{self.serial},1.0"

    def answer(self, head: str, arg: str, block: bytes | None):
        if head == "SENS:INT?":
            return f"{self.integration_s:.6g}"
        if head == "SENS:INT":
            value = self.number(arg, 0.0, 10.0)
            if value is not None and value <= 0:
                self.errors.push(-222, "Data out of range")
            elif value is not None:
                self.integration_s = value
            return None
        if head.startswith("SENS:AVER:COUN"):
            return self.answer_averaging(head, arg)
        if head == "SENS:WAV?":
            return encode_block(self._pixels(self.scene.wavelengths_nm()))
        if head in ("INIT", "INIT:IMM"):
            self.data = self._pixels(self.scene.spectrum(self.integration_s, averages=self.averages))
            return None
        if head == "FETC:SPEC?":
            data = self.fetch()
            return None if data is None else encode_block(data)
        return UNDEFINED


def _make(lab, scene, name, cfg):
    if hasattr(scene, "attach_lab"):
        scene.attach_lab(lab)
    return SimSpectrometer(scene, cfg.channels, serial=f"SIM{lab.seed:04d}")


start = line_server("scpi", _make)  # the counterpart drivers/registry.py names for ``spectrometer``
