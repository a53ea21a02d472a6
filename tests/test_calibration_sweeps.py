"""Per-element sweeps and the sweep-initialised fit recover the hidden chip parameters (4-mode chip)."""
import numpy as np
import pytest
import torch

from _calibration_hw import DirectHardware, wrapped
from labsat.calibration.fit import rmse
from labsat.calibration.measure import measure
from labsat.calibration.sweeps import (estimate_gains, fit_fringe, fit_from_sweeps, fringe_frequency,
                                       plan_readings, run_sweeps)
from labsat.twins.mzi import MZIMeshTwin


@pytest.fixture(scope="module")
def swept():
    torch.set_num_threads(1)
    hw = DirectHardware(seed=3, modes=4)
    data = run_sweeps(hw, points=8)
    return hw, data


def test_fringe_fit_recovers_a_known_cosine():
    u = np.linspace(0, 1, 25)
    y = np.stack([1 + 0.5 * np.cos(8.3 * u - 0.7), 2 - np.cos(8.3 * u + 1.0)], 1)
    w = fringe_frequency(u, y, 6.0, 11.0)
    assert w == pytest.approx(8.3, abs=1e-4)
    amp, phase, rss = fit_fringe(u, y, w)
    assert amp == pytest.approx([0.5, 1.0], abs=1e-4)
    assert rss < 1e-8


def test_sweep_counts_its_readings(swept):
    hw, data = swept
    assert data.readings == plan_readings(hw.n_controls, hw.modes, points=8) == hw.readings


def test_port_gains_from_sweeps_within_1_percent(swept):
    hw, data = swept
    gain = estimate_gains(data)
    assert np.max(np.abs(gain / hw.truth()["gain"] - 1)) < 0.01


def test_sweep_initialised_fit_recovers_offsets_efficiencies_crosstalk(swept):
    hw, data = swept
    truth = hw.truth()
    twin = MZIMeshTwin(4, hw.phase_per_u)
    nominal_eff_err = np.max(np.abs(1 / truth["eff"] - 1))
    fit_from_sweeps(twin, data, adam_steps=120, lbfgs_steps=60)
    off_err = np.max(np.abs(wrapped(twin.offset.numpy() - truth["offset"])))
    eff_err = np.max(np.abs(np.exp(twin.log_eff.numpy()) / truth["eff"] - 1))
    xt_err = np.max(np.abs(twin.crosstalk.numpy() - truth["crosstalk"]))
    assert off_err < 0.1, off_err  # rad (hidden spread 0.3 rad)
    assert eff_err < 0.01 < nominal_eff_err, eff_err  # relative (hidden spread 5 %)
    assert xt_err < 0.01, xt_err  # hidden mean 0.06
    held = measure(hw, 8, 16, seed=123)
    assert rmse(twin, held) < 0.03 < rmse(MZIMeshTwin(4, hw.phase_per_u), held)


def test_bad_sweep_settings_are_refused():
    hw = DirectHardware(seed=1, modes=4)
    with pytest.raises(ValueError, match="at least 5"):
        run_sweeps(hw, points=3)
    with pytest.raises(ValueError, match="delta"):
        run_sweeps(hw, points=8, delta=0.9)
