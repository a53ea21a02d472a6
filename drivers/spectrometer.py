"""Grating spectrometer with a linear detector array (a CCD/InGaAs line camera), SCPI over a socket.

Commands used (``\\n`` terminated):

==========================  =========================================================
command                     meaning
==========================  =========================================================
``*IDN?``                   identity
``SENS:INT <s>``            integration time (s); ``SENS:INT?`` reads it back
``SENS:AVER:COUN <n>``      spectra averaged per acquisition (1..10000); ``SENS:AVER:COUN?`` reads it back
``SENS:WAV?``               the pixels' centre wavelengths (nm), IEEE 488.2 float32 block
``INIT``                    acquire one spectrum now: the mean of ``SENS:AVER:COUN`` exposures of ``SENS:INT``
``*OPC?``                   operation complete (``1``)
``FETC:SPEC?``              the last spectrum, IEEE 488.2 float32 block, one value per pixel (counts)
``SYST:ERR?``               error queue
==========================  =========================================================

A pixel at the ADC's full scale (65535 counts) is saturated: that is an error, never a silent clip,
so a saturated spectrum never trains a model. The spectrometer emits nothing, so its safe state is
simply not acquiring; :meth:`shutdown` only marks it shut.

Averaging ``n`` exposures divides the detector's noise (shot and read noise) by ``sqrt(n)`` and takes ``n``
times the integration time; a pixel saturated in any exposure reports full scale (an error here).
"""
from __future__ import annotations


import numpy as np
from pymeasure.instruments import Instrument

from .base import ControlsMixin, InstrumentError, checked_control, decode_block, in_range, read_block
from .transport import ScpiErrorMixin, TransportMixin

FULL_SCALE = 65535.0


class Spectrometer(ControlsMixin, TransportMixin, ScpiErrorMixin, Instrument):
    AVERAGES_MAX = 10000

    def __init__(self, adapter, name: str = "spectrometer", channels: int = 64, **kwargs):
        super().__init__(adapter, name, includeSCPI=False, **kwargs)
        self.channels = int(channels)
        self.acquisitions = 0

    @property
    def identity(self) -> str:
        return self.ask("*IDN?").strip()

    integration_s = checked_control(
        "SENS:INT?", "SENS:INT %.6g", "Integration time (s) of one acquisition.",
        validator=in_range("integration time", "s"), values=(1e-9, 10.0), what="integration time", readback=None)
    averages = checked_control(
        "SENS:AVER:COUN?", "SENS:AVER:COUN %d", "Exposures averaged per acquired spectrum.",
        validator=in_range("averaging count", integer=True), values=(1, AVERAGES_MAX), what="averaging", cast=int)

    def wavelengths_nm(self) -> np.ndarray:
        with self.transaction():
            self.write("SENS:WAV?")
            values = decode_block(read_block(self))
        if values.size != self.channels:
            raise InstrumentError(f"{self.name}: {values.size} wavelengths for {self.channels} pixels")
        return values

    def acquire(self) -> np.ndarray:
        """One spectrum (counts per pixel), acquired now."""
        with self.transaction():
            self.write("INIT")
            if self.ask("*OPC?").strip() != "1":
                raise InstrumentError(f"{self.name}: did not confirm the acquisition")
            self.write("FETC:SPEC?")
            values = decode_block(read_block(self))
        if values.size != self.channels:
            raise InstrumentError(f"{self.name}: fetched {values.size} pixels, expected {self.channels}")
        if np.any(values >= FULL_SCALE):
            raise InstrumentError(f"{self.name}: saturated ({int(np.sum(values >= FULL_SCALE))} pixels at full "
                                  f"scale); shorten SENS:INT")
        self.acquisitions += 1
        return values

    def shutdown(self) -> None:
        super().shutdown()


def open_spectrometer(name: str, cfg, address: str) -> Spectrometer:
    """The configured spectrometer (integration time set and checked); closes the link on failure."""
    from .base import open_configured

    adapter = open_configured(address, cfg, name=name)  # a failure names the instrument
    try:
        spec = Spectrometer(adapter, name=name, channels=cfg.channels)
        spec.integration_s = cfg.integration_s
        spec.averages = cfg.averages
    except Exception:
        adapter.close()
        raise
    return spec
