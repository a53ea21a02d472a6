"""Round 6b of the self-configuring start (calibration/selfconfig.py, issue 12): each thermal crosstalk link read
directly, a θ heater moved by 2π (π/2 → 5π/2) and its neighbours' φ fringes read again (``read_links``,
``fit_links``). Scored against the virtual chip's hidden truth (tests only)."""
from __future__ import annotations

from functools import partial
from types import SimpleNamespace

import numpy as np
import torch
from labsat.calibration.selfconfig import (
    _fitted_links,
    external_phases,
    fit_links,
    read_link_mask,
    read_links,
)
from labsat.calibration.simchip import DirectHardware

from labsat.twins.mzi import MZIMeshTwin


def test_read_links_finds_each_link_the_mean_misses():
    n = 12
    hw = DirectHardware(seed=1, modes=n)
    t = hw.truth()
    twin = MZIMeshTwin(n, hw.phase_per_u)
    with torch.no_grad():  # the chip's elements but one crosstalk for every link, the chip's mean
        twin.offset[:] = torch.as_tensor(t["offset"])
        twin.log_eff[:] = torch.as_tensor(np.log(t["eff"]))
        twin.coupler_error[:] = torch.as_tensor(t["coupler_error"]).reshape(twin.coupler_error.shape)
        twin.crosstalk[:] = float(t["crosstalk"].mean())
    chip = SimpleNamespace(forward=partial(hw.forward, noisy=False))
    phase = external_phases(chip, twin)
    stage = phase.readings
    links = read_links(chip, twin, phase.phase_readings, phase)
    assert hw.readings == phase.readings == stage + 3 * stage // 4   # 36 settings per column to the φ stage's 48
    clear = read_link_mask(twin.layout) & _fitted_links(twin.layout)
    assert clear.sum() >= 20
    mean_err = np.abs(twin.crosstalk.numpy() - t["crosstalk"])[clear]
    fit_links(twin, links)
    k = twin.crosstalk.numpy()
    err = np.abs(k - t["crosstalk"])[clear]
    assert np.mean(err) < 0.5 * np.mean(mean_err)
    assert np.corrcoef(k[clear], t["crosstalk"][clear])[0, 1] > 0.8
    assert np.all(k[~read_link_mask(twin.layout)] == float(t["crosstalk"].mean()))  # links not read keep theirs
