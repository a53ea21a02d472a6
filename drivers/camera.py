"""Scientific camera (16-bit) over SCPI on a socket: frames come back as IEEE 488.2 binary blocks.

Commands used (``\\n`` terminated):

=============================  ==========================================================
command                        meaning
=============================  ==========================================================
``*IDN?``                      identity
``SENS:SIZE?``                 sensor size ``width,height`` (pixels)
``EXP <us>`` / ``EXP?``        exposure time (microseconds)
``ACQ:FRAM <B>``               arm: record B frames, one per external trigger (SLM ``INIT``)
``*OPC?``                      operation complete (``1``): orders commands across instruments
``FETC:FRAM?``                 the recorded frames, B x H x W uint16 little-endian block
``ABOR``                       disarm
``SYST:ERR?``                  error queue
=============================  ==========================================================

A frame with any pixel at full scale (65535) is saturated: :meth:`fetch` raises rather than return
clipped data, so a saturated camera never trains a model silently. The camera drives nothing, so its
safe state is only disarmed (``ABOR``).
"""
from __future__ import annotations


import numpy as np
from pymeasure.instruments import Instrument

from .base import ControlsMixin, InstrumentError, checked_control, in_range, parse_floats, read_block
from .transport import ScpiErrorMixin, TransportMixin

FULL_SCALE = 65535


class Camera(ControlsMixin, TransportMixin, ScpiErrorMixin, Instrument):
    EXPOSURE_US = (1.0, 1e6)

    def __init__(self, adapter, name: str = "camera", width: int = 32, height: int = 32, **kwargs):
        super().__init__(adapter, name, includeSCPI=False, **kwargs)
        self.width, self.height = int(width), int(height)

    @property
    def identity(self) -> str:
        return self.ask("*IDN?").strip()

    def check_size(self) -> None:
        with self.transaction():
            w, h = parse_floats(self.ask("SENS:SIZE?"), 2, f"{self.name} SENS:SIZE?")
        if (int(w), int(h)) != (self.width, self.height):
            raise InstrumentError(f"{self.name}: sensor is {int(w)}x{int(h)}, configured {self.width}x{self.height}")

    exposure_us = checked_control(
        "EXP?", "EXP %.6g", "Exposure time (us).", validator=in_range("exposure", "us"), values=EXPOSURE_US,
        what="exposure", readback=None)

    def arm(self, frames: int) -> None:
        with self.transaction():
            self.write(f"ACQ:FRAM {int(frames)}")
            if self.ask("*OPC?").strip() != "1":
                raise InstrumentError(f"{self.name}: did not confirm ACQ:FRAM")

    def fetch(self, frames: int) -> np.ndarray:
        """The armed acquisition, (frames, height, width) counts as float."""
        with self.transaction():
            self.write("FETC:FRAM?")
            raw = read_block(self)
        nd = int(raw[1:2])
        body = raw[2 + nd:]
        expected = frames * self.height * self.width * 2
        if len(body) != expected:
            self.check_scpi_errors()
            raise InstrumentError(f"{self.name}: fetched {len(body)} bytes, expected {frames} frames "
                                  f"of {self.width}x{self.height} (16 bit)")
        data = np.frombuffer(body, dtype="<u2").reshape(frames, self.height, self.width)
        if np.any(data >= FULL_SCALE):
            raise InstrumentError(f"{self.name}: saturated frame; shorten the exposure (EXP)")
        return data.astype(float)

    def abort(self) -> None:
        self.write("ABOR")

    def shutdown(self) -> None:
        with self.transaction(hold_signals=False):
            self.abort()
            super().shutdown()
