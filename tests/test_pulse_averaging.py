"""The spectrometer's averaging count (SCPI ``SENS:AVER:COUN``): recorded transcripts, the station file key, and
the virtual instrument (noise / sqrt(count), time x count, a saturated exposure is never averaged away)."""
from __future__ import annotations

import numpy as np
import pytest
from pymeasure.test import expected_protocol

from labsat.config import ConfigError, parse_config
from labsat.drivers.base import InstrumentError, LimitError
from labsat.drivers.sim.shg import ShgScene, ShgSpec
from labsat.drivers.spectrometer import Spectrometer
from labsat.station import Station
from test_pulse_kind import pulse_station

NO_ERROR = '0,"No error"'


def test_averaging_count_is_sent_checked_and_read_back():
    with expected_protocol(Spectrometer, [("SENS:AVER:COUN 16", None), ("SYST:ERR?", NO_ERROR),
                                          ("SENS:AVER:COUN?", "16"), ("SENS:AVER:COUN?", "16")], channels=4) as spec:
        spec.averages = 16
        assert spec.averages == 16
    with expected_protocol(Spectrometer, [("SENS:AVER:COUN 8", None), ("SYST:ERR?", NO_ERROR),
                                          ("SENS:AVER:COUN?", "1")], channels=4) as spec:
        with pytest.raises(InstrumentError, match="reads 1 after setting 8"):
            spec.averages = 8


def test_averaging_count_out_of_range_is_refused_before_sending():
    with expected_protocol(Spectrometer, [], channels=4) as spec:
        for bad in (0, 10001, 2.5):
            with pytest.raises(LimitError, match="averaging"):
                spec.averages = bad


def test_station_key_bad_value_names_it(tmp_path):
    d = pulse_station(tmp_path)
    d["instruments"]["spectrometer"]["averages"] = 0
    with pytest.raises(ConfigError, match="averages"):
        parse_config(d)


def _repeat(st, hw, n: int) -> np.ndarray:
    x, u = np.full((1, 4), 0.5), np.full(4, 0.5)
    return np.array([hw.forward(x, u)[0] for _ in range(n)])


def test_virtual_spectrometer_averages_noise_down_and_time_up(tmp_path):
    d = pulse_station(tmp_path)
    d["instruments"]["spectrometer"]["averages"] = 16
    with Station(parse_config(d)) as st:
        spec, scene = st.instruments["spectrometer"], st.lab.instruments["spectrometer"].scene
        assert spec.averages == 16 and st.lab.instruments["spectrometer"].averages == 16
        hw = st.layer()
        clock = st.lab.clock
        t0, c0 = scene.virtual_time_s, clock.per_instrument.get("spectrometer", 0.0)
        avg16 = _repeat(st, hw, 40)
        t16, c16 = scene.virtual_time_s - t0, clock.per_instrument["spectrometer"] - c0
        spec.averages = 1
        t0, c0 = scene.virtual_time_s, clock.per_instrument["spectrometer"]
        single = _repeat(st, hw, 40)
        t1, c1 = scene.virtual_time_s - t0, clock.per_instrument["spectrometer"] - c0
    assert t16 - t1 == pytest.approx(40 * 15 * 1e-3, rel=1e-6)  # 15 more exposures of 1 ms per spectrum
    assert c16 - c1 == pytest.approx(40 * 15 * 1e-3, rel=1e-6)  # charged to the lab's timing model
    bright = single.mean(0) > 0.3  # pixels well above the read noise
    assert bright.sum() >= 3
    assert np.allclose(avg16.mean(0)[bright], single.mean(0)[bright], rtol=0.05)  # same signal
    ratio = single.std(0)[bright] / avg16.std(0)[bright]
    assert 2.5 < np.median(ratio) < 6.5  # sqrt(16) = 4


def test_a_saturated_exposure_is_not_averaged_away():
    spec = ShgSpec(band_bins=32, pixels=12)
    scene = ShgScene(spec, seed=3)
    n = spec.band_bins + 2 * spec.margin_bins
    mask = np.zeros(n, dtype=complex)
    mask[spec.margin_bins:-spec.margin_bins] = np.exp(-1j * np.angle(scene.truth.envelope[spec.margin_bins:
                                                                                          -spec.margin_bins]))
    scene._mask = lambda: mask  # the compensated pulse, without a shaper
    peak = scene.expected_counts(mask).max()
    integration = 1e-3 * 0.999 * spec.full_scale / peak  # the brightest pixel's mean just below full scale
    counts = scene.spectrum(integration, averages=64)
    assert counts.max() == spec.full_scale  # some exposure clipped: reported, not averaged to a valid value
