"""Driver protocol tests: recorded command/reply transcripts (pymeasure's expected_protocol), then
round trips against the live virtual lab over its real transports (serial-over-socket, VISA SOCKET)."""
from __future__ import annotations

import numpy as np
import pytest
from pymeasure.test import expected_protocol

from labsat.drivers.base import InstrumentError, LimitError, encode_block, open_adapter
from labsat.drivers.daq import PhotodetectorDAQ
from labsat.drivers.heater_dac import HeaterDAC
from labsat.drivers.modulator import ModulatorDAC

ZEROS4 = "0.0000,0.0000,0.0000,0.0000"
NO_ERROR = '0,"No error"'


# --- heater DAC (Qontrol-style serial ASCII) ---
def test_heater_identity_and_readback():
    with expected_protocol(HeaterDAC, [("id?", "Q8iv-0123"), ("VALL?", "0.0000,1.5000,0.2500,12.0000")],
                           channels=4) as dac:
        assert dac.identity == "Q8iv-0123"
        np.testing.assert_allclose(dac.voltages(), [0.0, 1.5, 0.25, 12.0])


def test_heater_readback_wrong_count_is_an_error():
    with expected_protocol(HeaterDAC, [("VALL?", "0.0,1.0")], channels=4) as dac:
        with pytest.raises(InstrumentError, match="2 values, expected 4"):
            dac.voltages()


def test_heater_pipelined_write_one_transfer():
    """All set commands of one step leave in one write; all OK replies come back together."""
    with expected_protocol(HeaterDAC, [
        ("VALL?", ZEROS4),
        (b"V0=0.5000\nV2=0.7500\n", b"OK\nOK"),
    ], channels=4) as dac:
        dac.set_voltages([0.5, 0.75], channels=[0, 2])
        assert dac.writes == 1


def test_heater_ramp_split_into_max_step_v():
    """0 -> 2.5 V with max_step_v = 1 V: three equal steps (0.8333, 1.6667, 2.5), each validated."""
    with expected_protocol(HeaterDAC, [
        ("VALL?", ZEROS4),
        (b"V1=0.8333\n", b"OK"),
        (b"V1=1.6667\n", b"OK"),
        (b"V1=2.5000\n", b"OK"),
    ], channels=4, max_step_v=1.0) as dac:
        dac.set_voltages(2.5, channels=[1])
        assert dac.writes == 3


def test_heater_ramp_uses_fresh_readback_and_largest_change():
    """Ramp starts from the read-back (not from zero); the step count follows the largest change."""
    with expected_protocol(HeaterDAC, [
        ("VALL?", "2.0000,0.0000,0.0000,0.0000"),
        (b"V0=1.5000\nV1=0.5000\n", b"OK\nOK"),
        (b"V0=1.0000\nV1=1.0000\n", b"OK\nOK"),
    ], channels=4, max_step_v=0.5) as dac:
        dac.set_voltages([1.0, 1.0], channels=[0, 1])


def test_heater_second_set_checks_readback_against_setpoint():
    with expected_protocol(HeaterDAC, [
        ("VALL?", ZEROS4),
        (b"V3=0.5000\n", b"OK"),
        ("VALL?", "0.0000,0.0000,0.0000,0.0000"),  # channel 3 should read 0.5 V
    ], channels=4) as dac:
        dac.set_voltages(0.5, channels=[3])
        with pytest.raises(InstrumentError, match="channel 3 reads 0 V but was set to 0.5 V"):
            dac.set_voltages(0.2, channels=[3])


def test_heater_error_reply_names_code_and_channel():
    with expected_protocol(HeaterDAC, [
        ("VALL?", ZEROS4),
        (b"V0=0.5000\nV3=0.5000\n", b"OK\nE01:3"),
    ], channels=4) as dac:
        with pytest.raises(InstrumentError) as info:
            dac.set_voltages([0.5, 0.5], channels=[0, 3])
    msg = str(info.value)
    assert "error 1" in msg and "over-voltage" in msg and "channel 3" in msg and "V3=0.5000" in msg


@pytest.mark.parametrize("reply, code, meaning", [("E12:7", 12, "bad channel"), ("E02:7", 2, "over-current")])
def test_heater_command_error_codes(reply, code, meaning):
    with expected_protocol(HeaterDAC, [("V7=1.0", reply)], channels=8) as dac:
        with pytest.raises(InstrumentError, match=rf"error {code} \({meaning}\) on channel 7"):
            dac.command("V7=1.0")


@pytest.mark.parametrize("reply", [b"OK\nwhat?", b"OK\n12.5"])
def test_heater_garbled_reply_is_an_error(reply):
    with expected_protocol(HeaterDAC, [
        ("VALL?", ZEROS4),
        (b"V0=0.5000\nV1=0.5000\n", reply),
    ], channels=4) as dac:
        with pytest.raises(InstrumentError, match="garbled reply"):
            dac.set_voltages(0.5, channels=[0, 1])


def test_heater_garbled_readback_is_an_error():
    with expected_protocol(HeaterDAC, [("VALL?", "0.0,abc,0.0,0.0")], channels=4) as dac:
        with pytest.raises(InstrumentError, match="garbled reply to heater DAC VALL?"):
            dac.voltages()


def test_heater_shutdown_ramps_every_channel_to_zero():
    with expected_protocol(HeaterDAC, [
        ("VALL?", "1.0000,0.0000,0.5000"),
        (b"V0=0.0000\nV1=0.0000\nV2=0.0000\n", b"OK\nOK\nOK"),
    ], channels=3) as dac:
        dac.shutdown()


def test_heater_shutdown_falls_back_to_vall_zero():
    """A failed ramp (garbled read-back) still ends in the one-command safe state."""
    with expected_protocol(HeaterDAC, [
        ("VALL?", "garbage"),
        ("VALL=0", "OK"),
    ], channels=3) as dac:
        dac.shutdown()


def test_heater_shutdown_raises_when_nothing_works():
    with expected_protocol(HeaterDAC, [("VALL?", "garbage"), ("VALL=0", "E13:0")], channels=3) as dac:
        with pytest.raises(InstrumentError, match="could not reach the safe state"):
            dac.shutdown()


# --- modulator DAC (SCPI) ---
def test_modulator_levels_and_error_check():
    with expected_protocol(ModulatorDAC, [
        ("SOUR:VOLT:ALL 0.10000,0.20000,0.00000,1.50000", None),
        ("SYST:ERR?", NO_ERROR),
        ("SOUR:VOLT:ALL?", "0.10000,0.20000,0.00000,1.50000"),
    ], channels=4, v_max=2.0) as dac:
        dac.set_levels([0.1, 0.2, 0.0, 1.5])
        np.testing.assert_allclose(dac.levels(), [0.1, 0.2, 0.0, 1.5])


def test_modulator_sequence_upload_as_ieee_block():
    seq = np.array([[0.0, 0.5], [1.0, 1.5], [2.0, 0.25]])
    block = encode_block(seq)
    assert block.startswith(b"#224")  # 6 float32 = 24 bytes
    with expected_protocol(ModulatorDAC, [
        (b"SOUR:LIST:VOLT " + block + b"\n", None),
        ("SOUR:LIST:POIN?", "3"),
        ("INIT", None),
        ("*OPC?", "1"),
    ], channels=2, v_max=2.0) as dac:
        dac.load_sequence(seq)
        dac.play()


def test_modulator_sequence_length_mismatch_drains_errors():
    seq = np.zeros((3, 2))
    with expected_protocol(ModulatorDAC, [
        (b"SOUR:LIST:VOLT " + encode_block(seq) + b"\n", None),
        ("SOUR:LIST:POIN?", "0"),
        ("SYST:ERR?", '-161,"Invalid block data"'),
        ("SYST:ERR?", NO_ERROR),
    ], channels=2, v_max=2.0) as dac:
        with pytest.raises(InstrumentError, match="-161: Invalid block data"):
            dac.load_sequence(seq)


def test_modulator_error_queue_drained_and_reported():
    with expected_protocol(ModulatorDAC, [
        ("OUTP ON", None),
        ("SYST:ERR?", '-113,"Undefined header"'),
        ("SYST:ERR?", '-104,"Data type error"'),
        ("SYST:ERR?", NO_ERROR),
    ], channels=2) as dac:
        with pytest.raises(InstrumentError) as info:
            dac.output(True)
    assert "-113: Undefined header" in str(info.value) and "-104: Data type error" in str(info.value)


def test_modulator_garbled_error_reply():
    with expected_protocol(ModulatorDAC, [("OUTP OFF", None), ("SYST:ERR?", "nonsense")], channels=2) as dac:
        with pytest.raises(InstrumentError, match="garbled reply to SYST:ERR"):
            dac.output(False)


def test_modulator_unconfirmed_init():
    with expected_protocol(ModulatorDAC, [("INIT", None), ("*OPC?", "0")], channels=2) as dac:
        with pytest.raises(InstrumentError, match="did not confirm INIT"):
            dac.play()


def test_modulator_limits_refused_before_sending():
    with expected_protocol(ModulatorDAC, [], channels=2, v_max=2.0) as dac:
        with pytest.raises(LimitError, match=r"channel 1: 2.5 V is outside \[0, 2\] V"):
            dac.set_levels([0.0, 2.5])
        with pytest.raises(LimitError, match="channel 1: level is not a finite number"):
            dac.load_sequence(np.array([[0.0, np.nan]]))
        with pytest.raises(LimitError, match="expected 2 channels, got 3"):
            dac.load_sequence(np.zeros((1, 3)))
        with pytest.raises(LimitError, match="channel 0: -0.1 V is outside"):
            dac.load_sequence(np.array([[0.0, 0.1], [-0.1, 0.0]]))


def test_modulator_shutdown_zero_then_output_off():
    with expected_protocol(ModulatorDAC, [
        ("SOUR:VOLT:ALL 0.00000,0.00000", None), ("SYST:ERR?", NO_ERROR),
        ("OUTP OFF", None), ("SYST:ERR?", NO_ERROR),
    ], channels=2) as dac:
        dac.shutdown()


def test_modulator_full_scale_checked_at_construction():
    with pytest.raises(ValueError, match="v_max must be in"):
        with expected_protocol(ModulatorDAC, [], channels=2, v_max=11.0):
            pass


# --- photodetector DAQ (SCPI, binary block) ---
def test_daq_measure_all():
    with expected_protocol(PhotodetectorDAQ, [("MEAS:POW:ALL?", "1.0e-04,2.5e-04,0,3.0e-05")],
                           channels=4) as daq:
        np.testing.assert_allclose(daq.measure(), [1e-4, 2.5e-4, 0.0, 3e-5])


def test_daq_overrange_is_an_error_not_a_reading():
    with expected_protocol(PhotodetectorDAQ, [("MEAS:POW:ALL?", "1.0e-04,9.9e37,0,0")], channels=4) as daq:
        with pytest.raises(InstrumentError, match="over range"):
            daq.measure()


def test_daq_range_set_and_read():
    with expected_protocol(PhotodetectorDAQ, [
        ("SENS:POW:RANG 0.002", None), ("SYST:ERR?", NO_ERROR), ("SENS:POW:RANG?", "0.002"),
    ], channels=4) as daq:
        daq.power_range_w = 2e-3
        assert daq.power_range_w == pytest.approx(2e-3)
    with expected_protocol(PhotodetectorDAQ, [], channels=4) as daq:
        with pytest.raises(ValueError, match="positive"):
            daq.power_range_w = -1.0


def test_daq_arm_acquire_fetch_binary_block():
    data = np.array([[1e-4, 2e-4], [3e-4, 4e-4], [5e-5, 0.0]])
    with expected_protocol(PhotodetectorDAQ, [
        ("ACQ:POIN 3", None), ("*OPC?", "1"),
        ("FETC:ARR?", encode_block(data) + b"\n"),
    ], channels=2) as daq:
        daq.arm(3)
        got = daq.fetch(3)
    assert got.shape == (3, 2)
    np.testing.assert_allclose(got, data, rtol=1e-6)  # float32 on the wire


def test_daq_fetch_overrange_in_block():
    data = np.array([[1e-4, 9.9e37]])
    with expected_protocol(PhotodetectorDAQ, [("FETC:ARR?", encode_block(data) + b"\n")], channels=2) as daq:
        with pytest.raises(InstrumentError, match="over range"):
            daq.fetch(1)


def test_daq_fetch_wrong_size():
    with expected_protocol(PhotodetectorDAQ, [("FETC:ARR?", encode_block(np.zeros(5)) + b"\n")],
                           channels=2) as daq:
        with pytest.raises(InstrumentError, match="fetched 5 values, expected 2 x 2"):
            daq.fetch(2)


def test_daq_fetch_not_a_block():
    with expected_protocol(PhotodetectorDAQ, [("FETC:ARR?", b"0,")], channels=2) as daq:
        with pytest.raises(InstrumentError, match="binary block header"):
            daq.fetch(1)


# --- round trips on the live virtual lab ---
@pytest.fixture
def bench(lab):
    """Heater DAC, modulator and DAQ drivers connected to the virtual lab over loopback."""
    opened = []

    def connect(name, kind, cls, channels, **kw):
        inst = cls(open_adapter(lab.serve(name, kind, channels)), name=name, channels=channels, **kw)
        opened.append(inst)
        return inst

    heaters = connect("heaters", "heater_dac", HeaterDAC, 64, v_max=6.5, resistance_ohm=600.0)
    mod = connect("modulator", "modulator_dac", ModulatorDAC, 8, v_max=2.0)
    daq = connect("detectors", "photodetector_daq", PhotodetectorDAQ, 8)
    yield lab, heaters, mod, daq
    for inst in opened:
        inst.adapter.close()


def test_lab_addresses_are_real_transports(lab):
    assert lab.serve("h", "heater_dac", 8).startswith("socket://127.0.0.1:")
    assert lab.serve("d", "photodetector_daq", 8).startswith("TCPIP0::127.0.0.1::")
    assert lab.serve("d", "photodetector_daq", 8).endswith("::SOCKET")
    with pytest.raises(ValueError, match="no 'laser' instrument"):
        lab.serve("x", "laser", 1)


def test_lab_heater_round_trip(bench):
    lab, heaters, _, _ = bench
    assert heaters.identity == "Q64iv-SIM0003"
    target = np.linspace(0.0, 3.0, 56)
    heaters.set_voltages(target, channels=np.arange(56))
    np.testing.assert_allclose(heaters.voltages()[:56], target, atol=1e-4)
    np.testing.assert_allclose(lab.chip.heater_v, target, atol=1e-4)  # what the chip feels
    assert heaters.current_ma(10) == pytest.approx(1e3 * target[10] / 600.0, abs=1e-3)
    heaters.shutdown()
    assert np.all(lab.chip.heater_v == 0.0)


def test_lab_heater_instrument_refusal(bench):
    """The simulated instrument answers Qontrol error codes; the driver names them."""
    _, heaters, _, _ = bench
    with pytest.raises(InstrumentError, match=r"error 12 \(bad channel\) on channel 70"):
        heaters.command("V70=1.0")
    with pytest.raises(InstrumentError, match=r"error 1 \(over-voltage\) on channel 5"):
        heaters.command("V5=13")
    with pytest.raises(InstrumentError, match=r"error 10 \(unrecognised command\)"):
        heaters.command("HELLO")


def test_lab_scpi_round_trip_dc(bench):
    lab, _, mod, daq = bench
    assert "SIM-MOD8" in mod.identity and "SIM-PD8" in daq.identity
    daq.power_range_w = 1e-3
    assert daq.power_range_w == pytest.approx(1e-3)
    levels = np.array([2.0, 0, 0, 0, 0, 0, 0, 0])
    mod.set_levels(levels)
    np.testing.assert_allclose(mod.levels(), levels)
    mod.output(True)
    p = daq.measure()
    expected = lab.chip.output_powers(lab.chip.modulator_v[None], noisy=False)[0]
    noise = lab.chip.spec.noise_rel * 1e-3
    np.testing.assert_allclose(p, expected, atol=6 * noise)
    assert p.sum() > 0.5 * 1e-3 / 8  # light goes through the mesh
    mod.output(False)
    assert np.all(lab.chip.modulator_v == 0.0)


def test_lab_modulator_reset_turns_the_light_off(bench):
    lab, _, mod, _ = bench
    mod.set_levels(np.full(8, 1.0))
    mod.output(True)
    assert np.all(lab.chip.modulator_v == 1.0)
    mod.write("*RST")
    assert mod.ask("OUTP?").strip() == "0"
    np.testing.assert_array_equal(lab.chip.modulator_v, 0.0)
    np.testing.assert_array_equal(mod.levels(), 0.0)


def test_lab_sequence_acquisition(bench):
    lab, heaters, mod, daq = bench
    heaters.set_voltages(np.full(56, 2.0), channels=np.arange(56))
    mod.output(True)
    seq = np.random.default_rng(0).uniform(0, 2.0, (5, 8))
    mod.load_sequence(seq)
    daq.arm(5)
    mod.play()
    got = daq.fetch(5)
    # compare with the chip's noiseless physics for the same float32 levels the wire carried
    expected = lab.chip.output_powers(seq.astype(np.float32).astype(float), noisy=False)
    np.testing.assert_allclose(got, expected, atol=6 * lab.chip.spec.noise_rel * 1e-3)
    mod.check_scpi_errors()
    daq.check_scpi_errors()


def test_lab_scpi_error_queue(bench):
    _, _, mod, daq = bench
    mod.write("SOUR:BOGUS 1")
    with pytest.raises(InstrumentError, match="-113: Undefined header"):
        mod.check_scpi_errors()
    mod.check_scpi_errors()  # drained
    # a fetch with no acquisition: the instrument queues 'Data stale' and sends nothing
    daq.write("FETC:ARR?")
    with pytest.raises(InstrumentError, match="-230: Data stale"):
        daq.check_scpi_errors()
