"""PM100-style optical power meter: recorded transcripts, then the virtual lab's output port."""
from __future__ import annotations

import numpy as np
import pytest
from pymeasure.test import expected_protocol

from labsat.drivers.base import InstrumentError, LimitError, open_adapter
from labsat.drivers.power_meter import OpticalPowerMeter
from labsat.drivers.sim import instruments as sim_instruments
from labsat.drivers.sim.servers import VirtualLab

NO_ERROR = '0,"No error"'


def test_configure_learns_sensor_range_and_applies_settings():
    with expected_protocol(OpticalPowerMeter, [
        ("CONF:POW", None), ("SYST:ERR?", NO_ERROR),
        ("SENS:CORR:WAV? MIN", "800"), ("SENS:CORR:WAV? MAX", "1700"),
        ("SENS:CORR:WAV 1550", None), ("SYST:ERR?", NO_ERROR), ("SENS:CORR:WAV?", "1550"),
        ("SENS:AVER:COUN 20", None), ("SYST:ERR?", NO_ERROR), ("SENS:AVER:COUN?", "20"),
        ("SENS:POW:RANG:AUTO 1", None), ("SYST:ERR?", NO_ERROR), ("SENS:POW:RANG:AUTO?", "1"),
    ]) as pm:
        pm.configure(wavelength_nm=1550, averages=20)
        assert pm.wavelength_range_nm == (800.0, 1700.0)


def test_power_reading_and_overrange():
    with expected_protocol(OpticalPowerMeter, [("MEAS:POW?", "2.345000E-04"), ("MEAS:POW?", "9.900000E+37")]) as pm:
        assert pm.power() == pytest.approx(2.345e-4)
        with pytest.raises(InstrumentError, match="over range"):
            pm.power()


def test_garbled_measurement_is_retried():
    with expected_protocol(OpticalPowerMeter, [("MEAS:POW?", "#!?"), ("MEAS:POW?", "1.0E-05")]) as pm:
        assert pm.power() == pytest.approx(1e-5)


def test_limits_refused_before_sending():
    with expected_protocol(OpticalPowerMeter, [], wavelength_range_nm=(800, 1700)) as pm:
        with pytest.raises(LimitError, match="outside the sensor"):
            pm.wavelength_nm = 633
        for bad in (0, 10001, 2.5):
            with pytest.raises(LimitError, match="averaging"):
                pm.averages = bad
        with pytest.raises(LimitError, match="positive"):
            pm.range_w = -1e-3


def test_setting_that_does_not_read_back_is_an_error():
    with expected_protocol(OpticalPowerMeter, [
        ("SENS:AVER:COUN 5", None), ("SYST:ERR?", NO_ERROR), ("SENS:AVER:COUN?", "1"),
    ]) as pm:
        with pytest.raises(InstrumentError, match="reads 1 after setting 5"):
            pm.averages = 5


def test_error_queue_after_a_setting_raises():
    with expected_protocol(OpticalPowerMeter, [
        ("SENS:POW:RANG:AUTO 0", None), ("SYST:ERR?", '-222,"Data out of range"'), ("SYST:ERR?", NO_ERROR),
    ]) as pm:
        with pytest.raises(InstrumentError, match="-222"):
            pm.auto_range = False


# --- the virtual lab ---
@pytest.fixture
def lab_meter():
    lab = VirtualLab(seed=2)
    meter = OpticalPowerMeter(open_adapter(sim_instruments.serve(lab, "pm", "power_meter", port=1), timeout_s=0.3),
                              name="pm")
    yield lab, meter
    meter.adapter.close()
    lab.close()


def test_meter_reads_the_chip_output_port(lab_meter):
    lab, pm = lab_meter
    pm.configure(wavelength_nm=1550, averages=100)
    assert "PM100" in pm.identity
    lab.chip.set_modulators(np.full(lab.chip.spec.modes, 2.0))  # full input on every mode
    truth = lab.chip.output_powers(lab.chip.modulator_v[None], noisy=False)[0][1]
    reading = pm.power()
    assert truth > 1e-6
    assert reading == pytest.approx(truth, rel=0.05)
    lab.chip.set_modulators(np.zeros(lab.chip.spec.modes))
    assert pm.power() < 0.05 * truth


def test_wrong_wavelength_misreads_like_a_real_meter(lab_meter):
    lab, pm = lab_meter
    pm.configure(wavelength_nm=1550, averages=100)
    lab.chip.set_modulators(np.full(lab.chip.spec.modes, 2.0))
    right = pm.power()
    pm.wavelength_nm = 1310
    assert pm.power() == pytest.approx(right * 1550 / 1310, rel=0.05)


def test_manual_range_overrange_is_reported(lab_meter):
    lab, pm = lab_meter
    pm.configure(wavelength_nm=1550)
    lab.chip.set_modulators(np.full(lab.chip.spec.modes, 2.0))
    pm.range_w = 1e-7
    assert not pm.auto_range and pm.range_w == pytest.approx(1e-7)
    with pytest.raises(InstrumentError, match="over range"):
        pm.power()
    pm.auto_range = True
    assert pm.power() > 1e-7


def test_sim_refuses_out_of_range_wavelength(lab_meter):
    """Past the driver (its limit widened), the instrument's own check queues -222."""
    lab, pm = lab_meter
    pm.wavelength_range_nm = (400, 2000)
    with pytest.raises(InstrumentError, match="-222"):
        pm.wavelength_nm = 1900
