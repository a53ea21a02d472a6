"""PyMeasure declarative knobs (labsat.drivers.base.checked_control): validators that reject before
anything is sent, error queue drained, read-back compared, retried getters, per-instance limits."""
from __future__ import annotations

import pytest
from pymeasure.test import expected_protocol

from labsat.drivers.base import InstrumentError, LimitError
from labsat.drivers.camera import Camera
from labsat.drivers.daq import PhotodetectorDAQ
from labsat.drivers.power_meter import OpticalPowerMeter
from labsat.drivers.spectrometer import Spectrometer

NO_ERROR = '0,"No error"'


def test_knobs_are_pymeasure_controls():
    from pymeasure.instruments.common_base import DynamicProperty

    assert isinstance(OpticalPowerMeter.wavelength_nm, DynamicProperty)  # per-instance limits
    for cls, knob in ((OpticalPowerMeter, "averages"), (OpticalPowerMeter, "range_w"), (Camera, "exposure_us"),
                      (Spectrometer, "integration_s"), (PhotodetectorDAQ, "power_range_w")):
        assert isinstance(getattr(cls, knob), property) and getattr(cls, knob).__doc__


def test_limits_are_per_instance_and_refused_before_sending():
    with expected_protocol(OpticalPowerMeter, [("SENS:CORR:WAV 1000", None), ("SYST:ERR?", NO_ERROR),
                                               ("SENS:CORR:WAV?", "1000")],
                           wavelength_range_nm=(800, 1100)) as narrow:
        with pytest.raises(LimitError, match=r"power meter: wavelength 1550 nm is outside the sensor's 800\.\.1100 nm"):
            narrow.wavelength_nm = 1550
        narrow.wavelength_nm = 1000
    with expected_protocol(OpticalPowerMeter, [("SENS:CORR:WAV 1550", None), ("SYST:ERR?", NO_ERROR),
                                               ("SENS:CORR:WAV?", "1550")]) as wide:  # default 400..1700 nm
        wide.wavelength_nm = 1550
    with expected_protocol(Camera, [], width=4, height=4) as cam:
        with pytest.raises(LimitError, match=r"camera: exposure 0 us is outside 1\.\.1e\+06 us"):
            cam.exposure_us = 0
        with pytest.raises(LimitError):
            cam.exposure_us = float("nan")


def test_set_drains_errors_and_getter_is_retried():
    with expected_protocol(Camera, [("EXP 250", None), ("SYST:ERR?", NO_ERROR), ("EXP?", "#!?"), ("EXP?", "250")],
                           width=4, height=4) as cam:
        cam.exposure_us = 250
        assert cam.exposure_us == 250.0  # the garbled reply was retried
    with expected_protocol(Spectrometer, [("SENS:INT 0.002", None), ("SYST:ERR?", '-222,"Data out of range"'),
                                          ("SYST:ERR?", NO_ERROR)], channels=4) as spec:
        with pytest.raises(InstrumentError, match="-222"):
            spec.integration_s = 0.002


def test_auto_range_maps_booleans_and_range_reads_back_at_least_the_request():
    with expected_protocol(OpticalPowerMeter, [
        ("SENS:POW:RANG:AUTO 0", None), ("SYST:ERR?", NO_ERROR), ("SENS:POW:RANG:AUTO?", "0"),
        ("SENS:POW:RANG 0.0005", None), ("SYST:ERR?", NO_ERROR), ("SENS:POW:RANG?", "1.000000E-03"),
        ("SENS:POW:RANG 0.005", None), ("SYST:ERR?", NO_ERROR), ("SENS:POW:RANG?", "1.000000E-03"),
    ]) as pm:
        pm.auto_range = False
        pm.range_w = 5e-4  # the meter picks its 1 mW range: fine
        with pytest.raises(InstrumentError, match="range reads 0.001 after setting 0.005"):
            pm.range_w = 5e-3
