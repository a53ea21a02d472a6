"""The LAN block heater DAC: transcript tests of its protocol (pymeasure's expected_protocol), its
vectorised limits refusing a vector with one bad channel with nothing sent, and round trips against the
simulated instrument in the virtual lab."""
from __future__ import annotations

import numpy as np
import pytest
from pymeasure.test import expected_protocol

from labsat.drivers.base import InstrumentError, LimitError, encode_block, open_adapter
from labsat.drivers.block_dac import BlockHeaterDAC
from labsat.drivers.sim.servers import VirtualLab

NO_ERROR = '0,"No error"'


def block(values) -> bytes:
    return encode_block(np.asarray(values, dtype=float))


def readback(values):
    return ("SOUR:VOLT:BLOC?", block(values) + b"\n")


def test_identity_and_readback_block():
    with expected_protocol(BlockHeaterDAC, [("*IDN?", "labsat,BDAC,1,1.0"), readback([0.0, 1.5, 0.25, 12.0])],
                           channels=4) as dac:
        assert dac.identity == "labsat,BDAC,1,1.0"
        np.testing.assert_allclose(dac.voltages(), [0.0, 1.5, 0.25, 12.0])


def test_readback_of_wrong_length_is_an_error():
    with expected_protocol(BlockHeaterDAC, [readback([0.0, 1.0])], channels=4) as dac:
        with pytest.raises(InstrumentError, match="2 values, expected 4"):
            dac.voltages()


def test_set_sends_the_whole_vector_in_one_block_and_verifies_it():
    """Two channels change; the block carries all four (the others at their read-back)."""
    present, goal = [1.0, 0.0, 0.5, 0.0], [1.0, 0.5, 0.5, 0.75]
    with expected_protocol(BlockHeaterDAC, [
        readback(present),
        (b"SOUR:VOLT:BLOC " + block(goal) + b"\n", None),
        readback(goal),
    ], channels=4) as dac:
        dac.set_voltages([0.5, 0.75], channels=[1, 3])
        assert dac.writes == 1


def test_ramp_is_whole_vector_steps_of_at_most_max_step_v():
    """0 -> 2.5 V on channel 1 and 0 -> 1 V on channel 0 with max_step_v = 1 V: three vector steps."""
    steps = [[1 / 3, 2.5 / 3, 0, 0], [2 / 3, 5 / 3, 0, 0], [1.0, 2.5, 0, 0]]
    with expected_protocol(BlockHeaterDAC, [readback([0, 0, 0, 0])]
                           + [(b"SOUR:VOLT:BLOC " + block(s) + b"\n", None) for s in steps]
                           + [readback(steps[-1])], channels=4, max_step_v=1.0) as dac:
        dac.set_voltages([1.0, 2.5], channels=[0, 1])
        assert dac.writes == 3


@pytest.mark.parametrize("bad, message", [
    (7.5, "channel 2: 7.5 V is outside"),             # over v_max
    (-0.1, "channel 2: -0.1 V is outside"),
    (float("nan"), "channel 2: voltage is not a finite number"),
    (5.9, "channel 2: 5.9 V dissipates"),             # under v_max, over the per-channel power limit
])
def test_one_bad_channel_refuses_the_vector_with_nothing_sent(bad, message):
    volts = np.full(6, 1.0)
    volts[2] = bad
    with expected_protocol(BlockHeaterDAC, [], channels=6, v_max=7.0, power_max_w=0.05) as dac:
        with pytest.raises(LimitError, match=message):
            dac.set_voltages(volts)
        assert dac.writes == 0


def test_total_power_limit_refuses_before_anything_is_sent():
    # 4 channels at 3 V into 600 ohm: 60 mW in total > 50 mW; each channel alone is fine
    with expected_protocol(BlockHeaterDAC, [], channels=4, total_power_max_w=0.05) as dac:
        with pytest.raises(LimitError, match="total heater power 60 mW"):
            dac.set_voltages(np.full(4, 3.0))


def test_total_power_counts_the_channels_not_being_set():
    """Setting two channels: the other two, read back at 3 V, count towards the total."""
    with expected_protocol(BlockHeaterDAC, [readback([3.0, 3.0, 0.0, 0.0])], channels=4,
                           total_power_max_w=0.05) as dac:
        with pytest.raises(LimitError, match="total heater power"):
            dac.set_voltages([3.0, 3.0], channels=[2, 3])
        assert dac.writes == 0


def test_a_refused_block_is_caught_by_the_readback_and_the_error_queue():
    with expected_protocol(BlockHeaterDAC, [
        readback([0.0, 0.0]),
        (b"SOUR:VOLT:BLOC " + block([1.0, 1.0]) + b"\n", None),
        readback([0.0, 0.0]),
        ("SYST:ERR?", '-222,"Data out of range"'),
        ("SYST:ERR?", NO_ERROR),
    ], channels=2) as dac:
        with pytest.raises(InstrumentError, match="-222: Data out of range"):
            dac.set_voltages([1.0, 1.0])


def test_shutdown_falls_back_to_all_zero_when_the_ramp_fails():
    with expected_protocol(BlockHeaterDAC, [
        readback([1.0, 1.0, 1.0]),     # a read-back that does not parse as 2 channels: no ramp possible
        ("SOUR:VOLT:ALL 0", None),
        ("SYST:ERR?", NO_ERROR),
    ], channels=2) as dac:
        dac.shutdown()
        assert dac.writes == 1


# --- against the simulated instrument, over its real transport (VISA SOCKET on loopback) ---
@pytest.fixture
def lab_dac():
    lab = VirtualLab(seed=3)
    address = lab.serve("heaters", "block_dac", 64)
    dac = BlockHeaterDAC(open_adapter(address, timeout_s=2), channels=64, v_max=6.0, max_step_v=2.0,
                         total_power_max_w=2.0)
    yield lab, dac
    dac.adapter.close()
    lab.close()


def test_lab_vector_round_trip_and_ramp(lab_dac):
    lab, dac = lab_dac
    sim = lab.instruments["heaters"]
    assert dac.identity.startswith("labsat,SIM-BDAC64")
    volts = np.linspace(0, 5, 64)
    dac.set_voltages(volts)
    np.testing.assert_allclose(dac.voltages(), volts, atol=1e-6)
    np.testing.assert_allclose(lab.chip.heater_v[:56], volts[:56], atol=1e-6)  # 8-mode chip: 56 heaters
    assert sim.blocks_received == 3  # 5 V in steps of at most 2 V
    volts[10] = 6.5
    with pytest.raises(LimitError, match="channel 10"):
        dac.set_voltages(volts)
    assert sim.blocks_received == 3  # nothing sent
    dac.shutdown()
    assert not np.any(lab.chip.heater_v)


def test_lab_instrument_refuses_out_of_range_block_whole(lab_dac):
    lab, dac = lab_dac
    sim = lab.instruments["heaters"]
    v = np.zeros(64)
    v[5] = 13.0  # over the instrument's own full scale
    dac.write_bytes(b"SOUR:VOLT:BLOC " + encode_block(v) + b"\n")
    with pytest.raises(InstrumentError, match="-222"):
        dac.check_scpi_errors()
    assert not np.any(sim.volts)
