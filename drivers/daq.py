"""Multichannel photodetector DAQ / optical power meter over SCPI.

Commands used (``\\n`` terminated):

==========================  =========================================================
command                     meaning
==========================  =========================================================
``*IDN?``                   identity
``SENS:POW:RANG <W>``       full-scale range (W); ``SENS:POW:RANG?`` reads it back
``MEAS:POW:ALL?``           one reading of every channel (W), ASCII list
``ACQ:POIN <B>``            arm: acquire B points on the next trigger (a modulator ``INIT``)
``*OPC?``                    operation complete (``1``): orders commands across instruments
``FETC:ARR?``               the acquired points, IEEE 488.2 float32 block, B x N
``SYST:ERR?``               error queue
==========================  =========================================================

Readings above the range are returned as ``9.9e37`` by real meters; they are reported as an error
here rather than clipped, so an out-of-range detector never trains a model silently.
"""
from __future__ import annotations


import numpy as np
from pymeasure.instruments import Instrument

from .base import (MEMORY_DEPTH, ControlsMixin, InstrumentError, LimitError, checked_control, parse_floats, positive,
                   read_float_block)
from .transport import ScpiErrorMixin, TransportMixin

OVERRANGE = 1e37


class PhotodetectorDAQ(ControlsMixin, TransportMixin, ScpiErrorMixin, Instrument):
    def __init__(self, adapter, name: str = "photodetector DAQ", channels: int = 8, max_points: int = MEMORY_DEPTH,
                 **kwargs):
        super().__init__(adapter, name, includeSCPI=False, **kwargs)
        self.channels = int(channels)
        self.max_points = int(max_points)  # memory depth: the most points one acquisition holds

    @property
    def identity(self) -> str:
        return self.query("*IDN?").strip()  # read-backs: retried on timeout (transport.py)

    power_range_w = checked_control(
        "SENS:POW:RANG?", "SENS:POW:RANG %.6g", "Detector power range (W); a reading at or above it is over range.",
        validator=positive("power range", "watts"), what="power range", readback=None)

    def _checked(self, p: np.ndarray) -> np.ndarray:
        if np.any(p >= OVERRANGE):
            raise InstrumentError(f"{self.name}: detector over range; raise SENS:POW:RANG")
        return p

    def measure(self) -> np.ndarray:
        """One reading of every channel (W)."""
        with self.transaction():
            return self._checked(self.query("MEAS:POW:ALL?", lambda r: parse_floats(r, self.channels,
                                                                             f"{self.name} MEAS:POW:ALL?")))

    def arm(self, points: int) -> None:
        if not 0 < int(points) <= self.max_points:
            raise LimitError(f"{self.name}: {int(points)} points to acquire; the memory holds 1..{self.max_points} "
                             f"(instruments.yaml max_points)")
        with self.transaction():
            self.write(f"ACQ:POIN {int(points)}")
            if self.ask("*OPC?").strip() != "1":  # armed before anyone triggers
                raise InstrumentError(f"{self.name}: did not confirm ACQ:POIN")

    def fetch(self, points: int) -> np.ndarray:
        """The armed acquisition, (points, channels) in W."""
        with self.transaction():
            self.write("FETC:ARR?")
            values = read_float_block(self)
        if values.size != points * self.channels:
            raise InstrumentError(f"{self.name}: fetched {values.size} values, expected "
                                  f"{points} x {self.channels}")
        return self._checked(values.reshape(points, self.channels))
