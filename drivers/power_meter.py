"""Optical power meter, Thorlabs PM100-style SCPI (PM100D / PM100USB / PM100A over USB-TMC or a socket).

Commands used (``\\n`` terminated; sets are silent, errors go to the queue):

=============================  ===========================================  ================
command                        meaning                                      reply
=============================  ===========================================  ================
``*IDN?``                      identity                                     ``Thorlabs,PM100USB,...``
``CONF:POW``                   measure power (W)                            -
``SENS:CORR:WAV <nm>``         wavelength for the responsivity correction   -
``SENS:CORR:WAV?``             read back (``SENS:CORR:WAV? MIN|MAX``: the   ``1550``
                               sensor's range)
``SENS:AVER:COUN <n>``         readings averaged per measurement            -
``SENS:AVER:COUN?``            read back                                    ``10``
``SENS:POW:RANG:AUTO 1|0``     auto range                                   -
``SENS:POW:RANG:AUTO?``        read back                                    ``1``
``SENS:POW:RANG <W>``          manual range (switches auto range off)       -
``SENS:POW:RANG?``             range now in use                             ``1.000000E-03``
``MEAS:POW?``                  one (averaged) measurement, W                ``2.345E-04``
``SYST:ERR?``                  error queue                                  ``0,"No error"``
=============================  ===========================================  ================

Settings are checked before they are sent (wavelength inside the sensor's range, averaging count
1..10000, range positive) and read back after; a reading of ``9.9E37`` (over range) is an error, not
a number. Measurements and read-backs are retried on timeouts and garbled replies. A power meter has
no output, so its safe state is simply the connection closed.
"""
from __future__ import annotations

import threading

import numpy as np
from pymeasure.instruments import Instrument

from .base import InstrumentError, LimitError, deferred_sigint
from .transport import ScpiErrorQueueMixin, TransportMixin, one_float, scpi_bool

OVERRANGE = 1e37


class OpticalPowerMeter(TransportMixin, ScpiErrorQueueMixin, Instrument):
    AVERAGES_MAX = 10000

    def __init__(self, adapter, name: str = "power meter", wavelength_range_nm=(400.0, 1700.0), **kwargs):
        super().__init__(adapter, name, includeSCPI=False, **kwargs)
        self.wavelength_range_nm = tuple(float(x) for x in wavelength_range_nm)
        self._lock = threading.RLock()

    @property
    def identity(self) -> str:
        with self._lock:
            return self.query("*IDN?").strip()

    def configure(self, wavelength_nm: float | None = None, averages: int | None = None,
                  auto_range: bool | None = True, range_w: float | None = None) -> None:
        """Power mode; learn the sensor's wavelength range; then apply the given settings."""
        with self._lock:
            with deferred_sigint():
                self.write("CONF:POW")
                self.raise_scpi_errors("CONF:POW")
            lo = self.query("SENS:CORR:WAV? MIN", one_float)
            hi = self.query("SENS:CORR:WAV? MAX", one_float)
            if not 0 < lo < hi:
                raise InstrumentError(f"{self.name}: sensor wavelength range {lo}..{hi} nm makes no sense")
            self.wavelength_range_nm = (lo, hi)
            if wavelength_nm is not None:
                self.wavelength_nm = wavelength_nm
            if averages is not None:
                self.averages = averages
            if range_w is not None:
                self.range_w = range_w
            elif auto_range is not None:
                self.auto_range = auto_range

    def _set(self, command: str, readback: str, parse, expected, what: str) -> None:
        with self._lock:
            with deferred_sigint():
                self.write(command)
                self.raise_scpi_errors(command)
            got = self.query(readback, parse)
            if not np.isclose(float(got), float(expected), rtol=1e-6):
                raise InstrumentError(f"{self.name}: {what} reads {got} after setting {expected}")

    @property
    def wavelength_nm(self) -> float:
        with self._lock:
            return self.query("SENS:CORR:WAV?", one_float)

    @wavelength_nm.setter
    def wavelength_nm(self, nm: float) -> None:
        lo, hi = self.wavelength_range_nm
        if not (np.isfinite(nm) and lo <= nm <= hi):
            raise LimitError(f"{self.name}: wavelength {nm} nm is outside the sensor's {lo:g}..{hi:g} nm")
        self._set(f"SENS:CORR:WAV {nm:.6g}", "SENS:CORR:WAV?", one_float, float(f"{nm:.6g}"), "wavelength")

    @property
    def averages(self) -> int:
        with self._lock:
            return self.query("SENS:AVER:COUN?", lambda r: int(float(r)))

    @averages.setter
    def averages(self, n: int) -> None:
        if int(n) != n or not 1 <= n <= self.AVERAGES_MAX:
            raise LimitError(f"{self.name}: averaging count {n} must be an integer in 1..{self.AVERAGES_MAX}")
        self._set(f"SENS:AVER:COUN {int(n)}", "SENS:AVER:COUN?", lambda r: int(float(r)), int(n), "averaging")

    @property
    def auto_range(self) -> bool:
        with self._lock:
            return self.query("SENS:POW:RANG:AUTO?", scpi_bool)

    @auto_range.setter
    def auto_range(self, on: bool) -> None:
        self._set(f"SENS:POW:RANG:AUTO {1 if on else 0}", "SENS:POW:RANG:AUTO?", scpi_bool, bool(on), "auto range")

    @property
    def range_w(self) -> float:
        with self._lock:
            return self.query("SENS:POW:RANG?", one_float)

    @range_w.setter
    def range_w(self, watts: float) -> None:
        """Manual range: the meter picks the smallest of its ranges that holds ``watts``."""
        if not (np.isfinite(watts) and watts > 0):
            raise LimitError(f"{self.name}: range must be a positive number of watts, got {watts!r}")
        with self._lock:
            with deferred_sigint():
                self.write(f"SENS:POW:RANG {watts:.6g}")
                self.raise_scpi_errors(f"SENS:POW:RANG {watts:.6g}")
            got = self.range_w
            if got < watts * (1 - 1e-6):
                raise InstrumentError(f"{self.name}: range reads {got:.4g} W after asking for {watts:.4g} W")

    def power(self) -> float:
        """One measurement (W), averaged over :attr:`averages` readings."""
        with self._lock:
            p = self.query("MEAS:POW?", one_float)
        if p >= OVERRANGE:
            raise InstrumentError(f"{self.name}: over range; raise SENS:POW:RANG or enable auto range")
        if not np.isfinite(p):
            raise InstrumentError(f"{self.name}: reading is not a number: {p}")
        return p

    def shutdown(self) -> None:
        super().shutdown()
