"""Round 5b of issue 12: the φ stage's own bias and its fix (calibration/selfconfig.py, ``external_phases(sweeps=)``).

On the noiseless chip, with a twin holding every one of the chip's parameters but the φ offsets, one sweep of
"measured fringe phase minus the twin's predicted phase" leaves loop phases off by ~0.03 / 0.12–0.14 rad
(median / p90, N = 12): the fringe-phase estimate's slope in the φ offset is not 1 (three ψ steps of a fringe
that the φ heater's efficiency, its neighbours' crosstalk and the leaked paths make not quite a sinusoid at
2π/3 steps), so one correction takes each loop phase only part of the way; the round-5 extrapolation doubles
that slope error. The fix sweeps the corrections over the same stored readings until they agree. Scored
against the virtual chip's hidden truth (tests only)."""
from __future__ import annotations

import numpy as np
import torch

from labsat.calibration.selfconfig import external_phases, loop_phases
from labsat.calibration.simchip import DirectHardware
from labsat.twins.mzi import MZIMeshTwin


class Noiseless:
    def __init__(self, hw: DirectHardware):
        self.hw, self.readings = hw, 0

    def forward(self, x, u):
        self.readings += len(np.atleast_2d(x))
        return self.hw.forward(x, u, noisy=False)


def true_twin_but_phi(hw: DirectHardware) -> MZIMeshTwin:
    t = hw.truth()
    twin = MZIMeshTwin(hw.modes, hw.phase_per_u)
    with torch.no_grad():
        twin.offset.copy_(torch.as_tensor(t["offset"].copy()))
        twin.offset[1::2] = 0.0
        twin.log_eff.copy_(torch.as_tensor(np.log(t["eff"])))
        twin.crosstalk.copy_(torch.as_tensor(t["crosstalk"].copy()))
        twin.coupler_error.copy_(torch.as_tensor(t["coupler_error"].copy()).reshape(twin.coupler_error.shape))
        twin.log_gain.copy_(torch.as_tensor(np.log(t["gain"])))
    return twin


def loop_error(hw: DirectHardware, twin: MZIMeshTwin) -> np.ndarray:
    d = np.angle(np.exp(1j * (twin.offset.numpy() - hw.truth()["offset"])))[1::2]
    return np.abs(np.angle(np.exp(1j * loop_phases(twin.layout, d))))


def test_phase_stage_finds_the_true_loop_phases_from_the_true_twin():
    """The default φ stage (four ψ steps, 4 sweeps) recovers the loop phases of a noiseless chip from a twin with
    every other parameter true; one sweep (round 5) does not. The sweeps take no reading more."""
    errors, readings = {1: [], None: []}, {1: [], None: []}
    for seed in (1, 2):
        hw = DirectHardware(seed=seed, modes=12)
        for sweeps in (1, None):
            twin, bench = true_twin_but_phi(hw), Noiseless(hw)
            result = external_phases(bench, twin) if sweeps is None else external_phases(bench, twin, sweeps=sweeps)
            assert result.readings == bench.readings
            errors[sweeps].append(loop_error(hw, twin))
            readings[sweeps].append(result.readings)
    one, default = np.concatenate(errors[1]), np.concatenate(errors[None])
    assert readings[1] == readings[None]
    assert np.quantile(one, 0.9) > 0.1                  # the bias this fixes (0.12–0.14 rad)
    assert np.quantile(default, 0.9) < 0.03, np.quantile(default, 0.9)
    assert np.median(default) < 0.005, np.median(default)
