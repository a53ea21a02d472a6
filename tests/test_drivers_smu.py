"""Keithley 2400-style SMU heater driver: recorded transcripts (expected_protocol), then the virtual lab."""
from __future__ import annotations

import numpy as np
import pytest
from pymeasure.test import expected_protocol

from labsat.drivers.base import InstrumentError, LimitError, open_adapter
from labsat.drivers.sim import faults as sim_faults
from labsat.drivers.sim import instruments as sim_instruments
from labsat.drivers.sim.servers import VirtualLab
from labsat.drivers.smu import SourceMeterHeater

NO_ERROR = '0,"No error"'
KW = dict(v_max=6.0, i_max_a=0.012, resistance_ohm=600.0, max_step_v=0.5)


# --- transcripts ---
def test_configure_sets_and_verifies_compliance():
    with expected_protocol(SourceMeterHeater, [
        (":SOUR:FUNC VOLT", None), (":FORM:ELEM VOLT,CURR", None), (":SENS:CURR:PROT 0.012", None),
        ("SYST:ERR?", NO_ERROR), (":SOUR:FUNC?", "VOLT"), (":SENS:CURR:PROT?", "1.200000E-02"),
    ], **KW) as smu:
        smu.configure()


def test_configure_rejects_compliance_that_did_not_take():
    with expected_protocol(SourceMeterHeater, [
        (":SOUR:FUNC VOLT", None), (":FORM:ELEM VOLT,CURR", None), (":SENS:CURR:PROT 0.012", None),
        ("SYST:ERR?", NO_ERROR), (":SOUR:FUNC?", "VOLT"), (":SENS:CURR:PROT?", "1.050000E-04"),
    ], **KW) as smu:
        with pytest.raises(InstrumentError, match="compliance reads"):
            smu.configure()


def test_ramp_starts_from_fresh_readback_in_bounded_steps():
    with expected_protocol(SourceMeterHeater, [
        (":SOUR:VOLT?", "2.000000E-01"),
        (":SOUR:VOLT 0.6", None), ("SYST:ERR?", NO_ERROR),
        (":SOUR:VOLT 1", None), ("SYST:ERR?", NO_ERROR),
    ], **KW) as smu:
        smu.set_voltage(1.0)


@pytest.mark.parametrize("volts, message", [(6.5, "outside"), (-0.1, "outside"), (float("nan"), "finite")])
def test_limits_refused_before_anything_is_sent(volts, message):
    with expected_protocol(SourceMeterHeater, [], **KW) as smu:
        with pytest.raises(LimitError, match=message):
            smu.set_voltage(volts)


def test_current_limit_from_heater_resistance():
    with expected_protocol(SourceMeterHeater, [], v_max=10.0, i_max_a=0.005, resistance_ohm=600.0) as smu:
        with pytest.raises(LimitError, match="mA"):
            smu.set_voltage(3.1)  # 5.2 mA > 5 mA


def test_garbled_readback_is_retried():
    with expected_protocol(SourceMeterHeater, [
        (":SOUR:VOLT?", "\x15?#"), (":SOUR:VOLT?", "1.000000E+00"),
    ], **KW) as smu:
        assert smu.source_voltage == 1.0


def test_error_queue_entry_goes_safe_and_raises():
    """A refused step: the driver ramps down from the read-back, switches off and raises."""
    with expected_protocol(SourceMeterHeater, [
        (":SOUR:VOLT?", "0.000000E+00"),
        (":SOUR:VOLT 0.5", None), ("SYST:ERR?", '-222,"Data out of range"'), ("SYST:ERR?", NO_ERROR),
        # safe state: fresh read-back, ramp to 0, output off, verified
        (":SOUR:VOLT?", "5.000000E-01"), (":SOUR:VOLT 0", None), ("SYST:ERR?", NO_ERROR),
        (":OUTP OFF", None), (":OUTP?", "0"),
    ], **KW) as smu:
        with pytest.raises(InstrumentError, match="-222: Data out of range"):
            smu.set_voltage(0.5)
        assert smu.faulted and "Data out of range" in smu.faulted
        with pytest.raises(InstrumentError, match="latched fault"):
            smu.set_voltage(0.5)


def test_shutdown_ramps_down_then_switches_off():
    with expected_protocol(SourceMeterHeater, [
        (":SOUR:VOLT?", "1.000000E+00"),
        (":SOUR:VOLT 0.5", None), ("SYST:ERR?", NO_ERROR),
        (":SOUR:VOLT 0", None), ("SYST:ERR?", NO_ERROR),
        (":OUTP OFF", None), (":OUTP?", "0"),
    ], **KW) as smu:
        smu.shutdown()


def test_output_on_needs_a_level_inside_the_limits():
    with expected_protocol(SourceMeterHeater, [(":SOUR:VOLT?", "9.000000E+00")], **KW) as smu:
        with pytest.raises(LimitError):
            smu.output(True)


def test_readback_disagreeing_with_setpoint_is_a_fault():
    with expected_protocol(SourceMeterHeater, [
        (":SOUR:VOLT?", "0.000000E+00"), (":SOUR:VOLT 0.5", None), ("SYST:ERR?", NO_ERROR),
        (":SOUR:VOLT?", "2.000000E+00"),  # someone turned the knob
        (":SOUR:VOLT?", "2.000000E+00"),  # safe state: ramp down from what it reads
        (":SOUR:VOLT 1.5", None), ("SYST:ERR?", NO_ERROR), (":SOUR:VOLT 1", None), ("SYST:ERR?", NO_ERROR),
        (":SOUR:VOLT 0.5", None), ("SYST:ERR?", NO_ERROR), (":SOUR:VOLT 0", None), ("SYST:ERR?", NO_ERROR),
        (":OUTP OFF", None), (":OUTP?", "0"),
    ], **KW) as smu:
        smu.set_voltage(0.5)
        with pytest.raises(InstrumentError, match="reads 2 V but was set to 0.5 V"):
            smu.set_voltage(0.5)


# --- the virtual lab ---
@pytest.fixture
def lab_smu():
    lab = VirtualLab(seed=3)
    address = sim_instruments.serve(lab, "smu", "smu", heater=5)
    smu = SourceMeterHeater(open_adapter(address, timeout_s=0.3), name="smu", **KW)
    yield lab, smu
    try:
        smu.adapter.close()
    finally:
        lab.close()


def test_smu_drives_its_chip_heater(lab_smu):
    lab, smu = lab_smu
    assert "MODEL 2400" in smu.identity
    smu.configure()
    smu.set_voltage(2.0)
    assert lab.chip.heater_v[5] == 0.0  # output still off
    smu.output(True)
    assert lab.chip.heater_v[5] == pytest.approx(2.0)
    v, i = smu.measure()
    assert v == pytest.approx(2.0) and i == pytest.approx(2.0 / 600.0, rel=1e-5)
    assert smu.measure_current() == pytest.approx(2.0 / 600.0, rel=1e-5)
    smu.set_voltage(4.5)
    assert lab.chip.heater_v[5] == pytest.approx(4.5)
    smu.shutdown()
    assert not smu.output_enabled and smu.source_voltage == 0.0 and lab.chip.heater_v[5] == 0.0


def test_smu_wiring_survives_heater_dac_writes(lab_smu):
    """The DAC rewrites every heater; the SMU-wired one keeps the SMU's level."""
    lab, smu = lab_smu
    smu.configure()
    smu.output(True)
    smu.set_voltage(1.5)
    lab.chip.set_heaters(np.full(len(lab.chip.heater_v), 0.7))
    assert lab.chip.heater_v[5] == pytest.approx(1.5) and lab.chip.heater_v[4] == pytest.approx(0.7)


def test_compliance_trip_goes_safe(lab_smu):
    """The hardware compliance catches a heater that is not what the config says (no resistance known
    to the driver): the driver sees the trip, ramps to 0 V and switches the output off."""
    lab, smu = lab_smu
    smu.resistance_ohm = None
    smu.i_max_a = 0.002
    smu.configure()
    smu.output(True)
    with pytest.raises(InstrumentError, match="compliance"):
        smu.set_voltage(2.0)  # 3.3 mA > 2 mA
    assert not smu.output_enabled and lab.chip.heater_v[5] == 0.0
    assert lab.instruments["smu"].level == 0.0


def test_instrument_refusal_leaves_output_off(lab_smu):
    lab, smu = lab_smu
    smu.configure()
    smu.output(True)
    smu.set_voltage(1.0)
    front = sim_faults.install(lab, "smu")
    front.faults.add("refuse", match=":SOUR:VOLT 1.5")
    with pytest.raises(InstrumentError, match="Data out of range"):
        smu.set_voltage(2.0)
    assert not lab.instruments["smu"].output_on and lab.chip.heater_v[5] == 0.0


def test_station_opens_an_smu_left_on_into_the_safe_state():
    """A run that died left the SMU sourcing: opening it (instruments.yaml kind smu) ramps it down."""
    from labsat.config import SMUConfig
    from labsat.drivers.registry import open_driver

    lab = VirtualLab(seed=4)
    try:
        address = sim_instruments.serve(lab, "bias", "smu", heater=2)
        sim = lab.instruments["bias"]
        sim.level, sim.compliance, sim.output_on = 3.0, 0.02, True
        sim._apply()
        assert lab.chip.heater_v[2] == 3.0
        cfg = SMUConfig.model_validate({"kind": "smu", "limits": {"v_max": 5, "i_max_ma": 10,
                                                                   "resistance_ohm": 600}})
        smu = open_driver("bias", cfg, address)
        assert not sim.output_on and sim.level == 0.0 and lab.chip.heater_v[2] == 0.0
        assert sim.compliance == pytest.approx(0.010)
        smu.output(True)
        smu.set_voltage(1.0)
        assert lab.chip.heater_v[2] == pytest.approx(1.0)
        smu.shutdown()
        smu.adapter.close()
    finally:
        lab.close()
