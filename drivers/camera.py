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

import threading

import numpy as np
from pymeasure.instruments import Instrument

from .base import InstrumentError, LimitError, ScpiErrorMixin, deferred_sigint, parse_floats, read_block
from .transport import TransportMixin

FULL_SCALE = 65535


class Camera(TransportMixin, ScpiErrorMixin, Instrument):
    EXPOSURE_US = (1.0, 1e6)

    def __init__(self, adapter, name: str = "camera", width: int = 32, height: int = 32, **kwargs):
        super().__init__(adapter, name, includeSCPI=False, **kwargs)
        self.width, self.height = int(width), int(height)
        self._lock = threading.RLock()

    @property
    def identity(self) -> str:
        with self._lock, deferred_sigint():
            return self.ask("*IDN?").strip()

    def check_size(self) -> None:
        with self._lock, deferred_sigint():
            w, h = parse_floats(self.ask("SENS:SIZE?"), 2, f"{self.name} SENS:SIZE?")
        if (int(w), int(h)) != (self.width, self.height):
            raise InstrumentError(f"{self.name}: sensor is {int(w)}x{int(h)}, configured {self.width}x{self.height}")

    @property
    def exposure_us(self) -> float:
        with self._lock, deferred_sigint():
            return parse_floats(self.ask("EXP?"), 1, f"{self.name} EXP?")[0]

    @exposure_us.setter
    def exposure_us(self, value: float) -> None:
        lo, hi = self.EXPOSURE_US
        if not (np.isfinite(value) and lo <= value <= hi):
            raise LimitError(f"{self.name}: exposure {value} us is outside [{lo:g}, {hi:g}] us")
        with self._lock, deferred_sigint():
            self.write(f"EXP {value:.6g}")
            self.check_scpi_errors()

    def arm(self, frames: int) -> None:
        with self._lock, deferred_sigint():
            self.write(f"ACQ:FRAM {int(frames)}")
            if self.ask("*OPC?").strip() != "1":
                raise InstrumentError(f"{self.name}: did not confirm ACQ:FRAM")

    def fetch(self, frames: int) -> np.ndarray:
        """The armed acquisition, (frames, height, width) counts as float."""
        with self._lock, deferred_sigint():
            self.write("FETC:FRAM?")
            raw = read_block(self)
        nd = int(raw[1:2])
        body = raw[2 + nd:]
        expected = frames * self.height * self.width * 2
        if len(body) != expected:
            with self._lock:
                self.check_scpi_errors()
            raise InstrumentError(f"{self.name}: fetched {len(body)} bytes, expected {frames} frames "
                                  f"of {self.width}x{self.height} (16 bit)")
        data = np.frombuffer(body, dtype="<u2").reshape(frames, self.height, self.width)
        if np.any(data >= FULL_SCALE):
            raise InstrumentError(f"{self.name}: saturated frame; shorten the exposure (EXP)")
        return data.astype(float)

    def abort(self) -> None:
        with self._lock, deferred_sigint():
            self.write("ABOR")

    def shutdown(self) -> None:
        with self._lock:
            self.abort()
            super().shutdown()
