"""Limits: every out-of-limit request is refused with a LimitError naming the channel and the limit,
and NOTHING is sent to the instrument (transcripts hold only the read-back; the virtual chip is unchanged)."""
from __future__ import annotations

import numpy as np
import pytest
import yaml
from pymeasure.test import expected_protocol

from labsat.drivers.base import LimitError
from labsat.drivers.heater_dac import HeaterDAC

READBACK_ONLY = [("VALL?", "0.0000,0.0000,0.0000,0.0000")]
LIMITS = dict(channels=4, v_max=[6.0, 6.0, 6.0, 3.0], i_max_ma=10.0, resistance_ohm=[600.0, 600.0, 200.0, 600.0],
              power_max_w=0.05, total_power_max_w=0.08)


@pytest.mark.parametrize("volts, channels, pattern", [
    # per-channel voltage (channel 3 has its own, lower v_max)
    (3.5, [3], r"channel 3: 3\.5 V is outside \[0, 3\] V"),
    (6.01, [1], r"channel 1: 6\.01 V is outside \[0, 6\] V"),
    (-0.1, [0], r"channel 0: -0\.1 V is outside \[0, 6\] V"),
    # current: 2.5 V on 200 ohm = 12.5 mA > 10 mA
    (2.5, [2], r"channel 2: 2\.5 V draws 12\.5 mA > limit 10 mA"),
    # per-channel power: 5.9 V on 600 ohm = 58 mW > 50 mW (current 9.8 mA is within limit)
    (5.9, [0], r"channel 0: 5\.9 V dissipates 58 mW > limit 50 mW"),
    # NaN / inf
    (float("nan"), [1], r"channel 1.*not a finite number"),
    (float("inf"), [0], r"channel 0.*not a finite number"),
])
def test_heater_limit_refused_nothing_sent(volts, channels, pattern):
    with expected_protocol(HeaterDAC, READBACK_ONLY, **LIMITS) as dac:
        with pytest.raises(LimitError, match=pattern):
            dac.set_voltages(volts, channels=channels)
        assert dac.writes == 0


def test_total_power_limit_names_total_and_limit():
    # 5 V, 5 V on 600 ohm: 41.7 mW each (within 50 mW and 10 mA), + 1 V: 85 mW total > 80 mW
    with expected_protocol(HeaterDAC, READBACK_ONLY, **LIMITS) as dac:
        with pytest.raises(LimitError, match=r"total heater power 85 mW > limit 80 mW"):
            dac.set_voltages([5.0, 5.0, 1.0], channels=[0, 1, 3])


def test_total_power_counts_channels_already_on():
    """Channels not in the request still dissipate: the total uses the read-back."""
    # 3 V on channel 3 alone is 15 mW; with 5 V and 4 V already on channels 0, 1 it makes 83 mW > 80 mW
    with expected_protocol(HeaterDAC, [("VALL?", "5.0000,4.0000,0.0000,0.0000")], **LIMITS) as dac:
        with pytest.raises(LimitError, match=r"total heater power 83.33 mW > limit 80 mW"):
            dac.set_voltages(3.0, channels=[3])
        assert dac.writes == 0
    with expected_protocol(HeaterDAC, READBACK_ONLY + [(f"V3={v}.0000\n".encode(), b"OK") for v in (1, 2, 3)],
                           **LIMITS) as dac:
        dac.set_voltages(3.0, channels=[3])  # the same request from cold is fine


@pytest.mark.parametrize("channels, pattern", [
    ([4], r"channel 4 does not exist \(0\.\.3\)"),
    ([-1], r"channel -1 does not exist"),
    ([1, 1], "listed twice"),
])
def test_bad_channel_refused_before_anything(channels, pattern):
    with expected_protocol(HeaterDAC, [], **LIMITS) as dac:  # not even a read-back
        with pytest.raises(LimitError, match=pattern):
            dac.set_voltages(1.0, channels=channels)


def test_voltage_count_must_match_channels():
    with expected_protocol(HeaterDAC, [], **LIMITS) as dac:
        with pytest.raises(LimitError, match="3 voltages for 2 channels"):
            dac.set_voltages([1.0, 1.0, 1.0], channels=[0, 1])


def test_one_bad_channel_refuses_the_whole_request():
    with expected_protocol(HeaterDAC, READBACK_ONLY, **LIMITS) as dac:
        with pytest.raises(LimitError, match="channel 3"):
            dac.set_voltages([1.0, 1.0, 1.0, 4.0])  # channel 3 over its 3 V
        assert dac.writes == 0


@pytest.mark.parametrize("kwargs, pattern", [
    (dict(v_max=12.5), r"v_max must be in \(0, 12\.0\] V"),
    (dict(v_max=0.0), r"v_max must be in"),
    (dict(v_max=[1.0, 13.0]), r"v_max must be in"),
    (dict(i_max_ma=30.0), r"i_max_ma must be in \(0, 24\.0\] mA"),
    (dict(resistance_ohm=0.0), "resistance_ohm must be positive"),
    (dict(max_step_v=0.0), "max_step_v must be positive"),
    (dict(v_max=[1.0, 2.0, 3.0]), "v_max needs one value or 2, got 3"),
    (dict(resistance_ohm=[600.0] * 5), "resistance_ohm needs one value or 2, got 5"),
])
def test_limits_looser_than_full_scale_rejected_at_construction(kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        with expected_protocol(HeaterDAC, [], channels=2, **kwargs):
            pass


# --- against the virtual lab: the chip never sees a refused value ---
def test_station_limits_refused_chip_unchanged(station):
    heaters = station.instruments["heaters"]
    chip = station.lab.chip
    heaters.set_voltages(np.full(4, 1.0), channels=[0, 1, 2, 3])
    before = chip.heater_v.copy()
    writes = heaters.writes
    limits = station.config.instruments["heaters"].limits
    cases = [
        (limits.v_max + 0.1, [5], rf"channel 5: .* outside \[0, {limits.v_max:g}\] V"),  # instruments.yaml v_max
        (np.nan, [7], "channel 7"),
        (1.0, [64], "channel 64 does not exist"),
    ]
    for volts, ch, pattern in cases:
        with pytest.raises(LimitError, match=pattern):
            heaters.set_voltages(volts, channels=ch)
    # total power: 56 heaters at 6.4 V dissipate 68 mW each (under 75 mW), 3.8 W in all (over 3.5 W)
    with pytest.raises(LimitError, match=r"total heater power .* > limit 3500 mW"):
        heaters.set_voltages(np.full(56, 6.4), channels=np.arange(56))
    assert heaters.writes == writes
    np.testing.assert_array_equal(chip.heater_v, before)


def test_station_modulator_limits(station):
    mod = station.instruments["modulator"]
    before = station.lab.chip.modulator_v.copy()
    with pytest.raises(LimitError, match=r"channel 3: 2\.1 V is outside \[0, 2\] V"):
        mod.set_levels([0, 0, 0, 2.1, 0, 0, 0, 0])
    seq = np.zeros((2, 8))
    seq[1, 6] = np.nan
    with pytest.raises(LimitError, match="channel 6: level is not a finite number"):
        mod.load_sequence(seq)
    np.testing.assert_array_equal(station.lab.chip.modulator_v, before)


def test_station_refuses_config_beyond_full_scale(tmp_path, config_dict):
    """instruments.yaml may only tighten the instrument's limits: 13 V on a 12 V DAC never connects."""
    from labsat.station import Station

    config_dict["instruments"]["heaters"]["limits"]["v_max"] = 13.0
    config_dict["layers"]["mesh"]["v_max"] = 6.0
    path = tmp_path / "loose.yaml"
    path.write_text(yaml.safe_dump(config_dict))
    # issue 14: the schema knows the full scale, so the file is refused before anything is started
    with pytest.raises(ValueError, match=r"instruments\.heaters\.limits\.v_max: Input should be less than or equal to 12 \(the instrument's full scale\), got 13\.0"):
        Station(path)
