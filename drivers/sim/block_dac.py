"""Simulated LAN block heater DAC (the protocol of ``labsat.drivers.block_dac``) acting on a chip.

A SCPI instrument (:class:`~.scpi.SimScpiInstrument`) whose outputs, full scale and watchdog are the heater
DACs' (:class:`~.heaters.SimHeaterOutputs`). A block with a value outside the instrument's range (0..12 V,
24 mA into the chip's heater resistance) or of the wrong length is refused whole (SCPI error -222 / -109),
nothing applied.
"""
from __future__ import annotations

import numpy as np
from pyvisa.util import from_ieee_block

from ..base import encode_block
from .heaters import SimHeaterOutputs
from .scpi import UNDEFINED, SimScpiInstrument


class SimBlockDAC(SimHeaterOutputs, SimScpiInstrument):
    label = "block DAC"

    def __init__(self, chip, channels: int, serial: str = "BDAC-SIM"):
        super().__init__(chip, channels, serial)
        self.blocks_received = 0

    def identity(self) -> str:
        return f"labsat,SIM-BDAC{self.channels},{self.serial},1.0"

    def _accept(self, v: np.ndarray) -> None:
        if len(v) != self.channels:
            self.errors.push(-109, f"Missing parameter: {len(v)} values for {self.channels} channels")
        elif self.refusal(v) is not None:
            self.errors.push(-222, "Data out of range")
        else:
            self.output(v.astype(np.float32))

    def answer(self, head: str, arg: str, block: bytes | None):
        if head == "SYST:CHAN?":
            return str(self.channels)
        if head == "SOUR:VOLT:BLOC?":
            return encode_block(self.volts)
        if head == "SOUR:VOLT:BLOC":
            try:
                v = np.asarray(from_ieee_block(block, "f", False), dtype=float) if block is not None else None
            except Exception:  # not a block of float32 values
                v = None
            if v is None:
                self.errors.push(-161, "Invalid block data")
                return None
            self.blocks_received += 1
            self._accept(v)
            return None
        if head == "SOUR:VOLT:ALL" and arg:
            try:
                value = float(arg)
            except ValueError:
                self.errors.push(-104, "Data type error")
                return None
            self._accept(np.full(self.channels, value))
            return None
        return UNDEFINED
