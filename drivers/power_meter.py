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

The knobs are PyMeasure declarative controls (:func:`~labsat.drivers.base.checked_control`, built on
``Instrument.control`` with a validator). Why not PyMeasure's own ``ThorlabsPM100USB``: its wavelength
setter *truncates* an out-of-range value to the sensor's range (``truncated_range``) where labsat
rejects it, it reads nothing back, it has no averaging or range controls, and it needs
``SYST:SENSOR:IDN?`` at construction (a transcript test would have to script it for every test).
"""
from __future__ import annotations


import numpy as np
from pymeasure.instruments import Instrument

from .base import ControlsMixin, InstrumentError, checked_control, in_range, positive
from .transport import ScpiErrorMixin, TransportMixin, one_float

OVERRANGE = 1e37


class OpticalPowerMeter(ControlsMixin, TransportMixin, ScpiErrorMixin, Instrument):
    AVERAGES_MAX = 10000

    wavelength_nm = checked_control(
        "SENS:CORR:WAV?", "SENS:CORR:WAV %.6g", "Wavelength (nm) of the responsivity correction.",
        validator=in_range("wavelength", "nm", where="the sensor's"), values=(400.0, 1700.0), what="wavelength",
        dynamic=True)  # the range is the sensor's, learned by configure()
    averages = checked_control(
        "SENS:AVER:COUN?", "SENS:AVER:COUN %d", "Readings averaged per measurement.",
        validator=in_range("averaging count", integer=True), values=(1, AVERAGES_MAX), what="averaging", cast=int)
    auto_range = checked_control(
        "SENS:POW:RANG:AUTO?", "SENS:POW:RANG:AUTO %d", "Auto range on (True) or off.",
        validator=lambda v, vs: bool(v), values={True: 1, False: 0}, map_values=True, what="auto range")
    range_w = checked_control(
        "SENS:POW:RANG?", "SENS:POW:RANG %.6g", "Manual range (W): the meter picks the smallest of its ranges "
        "that holds the value (so the read-back may be larger).",
        validator=positive("range", "watts"), what="range",
        readback=lambda got, sent: got >= sent * (1 - 1e-6))

    def __init__(self, adapter, name: str = "power meter", wavelength_range_nm=(400.0, 1700.0), **kwargs):
        super().__init__(adapter, name, includeSCPI=False, **kwargs)
        self.wavelength_range_nm = wavelength_range_nm

    @property
    def wavelength_range_nm(self) -> tuple[float, float]:
        """The sensor's wavelength range (nm): the wavelength control's limits."""
        return self._wavelength_range

    @wavelength_range_nm.setter
    def wavelength_range_nm(self, span) -> None:
        self._wavelength_range = tuple(float(x) for x in span)
        self.wavelength_nm_values = self._wavelength_range  # PyMeasure's per-instance (dynamic) limits

    @property
    def identity(self) -> str:
        return self.query("*IDN?").strip()

    def configure(self, wavelength_nm: float | None = None, averages: int | None = None,
                  auto_range: bool | None = True, range_w: float | None = None) -> None:
        """Power mode; learn the sensor's wavelength range; then apply the given settings."""
        with self.transaction(hold_signals=False):
            with self.transaction():
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

    def power(self) -> float:
        """One measurement (W), averaged over :attr:`averages` readings."""
        with self.transaction(hold_signals=False):
            p = self.query("MEAS:POW?", one_float)
        if p >= OVERRANGE:
            raise InstrumentError(f"{self.name}: over range; raise SENS:POW:RANG or enable auto range")
        if not np.isfinite(p):
            raise InstrumentError(f"{self.name}: reading is not a number: {p}")
        return p

    def shutdown(self) -> None:
        super().shutdown()
