"""Round 6 of issue 12 item 4: the per-element parameters the self-configuring start reads before / within the
φ stage (calibration/selfconfig.py: ``self_configure(couplers=, elements=)``), no reading more.

The θ stage's fringes give each MZI's two coupler errors (the light sent across, s_a c_b e^{iθ} + c_a s_b, against
the light kept on the row); the φ stage's stored readings, fitted per MZI with the couplers in the twin, give the φ
heaters' efficiencies and the crosstalk links around them. Scored against the virtual chip's hidden truth (tests
only): each must land well inside the datasheet's error (datasheet: couplers ideal, efficiency 1, no crosstalk)."""
from __future__ import annotations

import numpy as np

from labsat.calibration.selfconfig import self_configure
from labsat.calibration.simchip import DirectHardware
from labsat.twins.mzi import MZIMeshTwin


class Counting:
    def __init__(self, hw: DirectHardware):
        self.hw, self.readings = hw, 0

    def forward(self, x, u):
        self.readings += len(np.atleast_2d(x))
        return self.hw.forward(x, u)


def errors(hw: DirectHardware, twin: MZIMeshTwin) -> dict:
    t = hw.truth()
    k = twin.crosstalk.numpy()
    read = twin.coupler_error.numpy().reshape(-1, 2)
    return {"couplers": np.mean(np.abs(read - t["coupler_error"].reshape(-1, 2)), 0),
            "eff_phi": np.mean(np.abs(np.exp(twin.log_eff.numpy()[1::2]) - t["eff"][1::2])),
            "kappa": np.array([np.mean(np.abs(k[0::2] - t["crosstalk"][0::2])),
                               np.mean(np.abs(k[1::2] - t["crosstalk"][1::2]))])}


def test_start_reads_couplers_efficiencies_and_crosstalk_without_more_readings():
    for seed in (1, 2):
        hw = DirectHardware(seed=seed, modes=12)
        datasheet = errors(hw, MZIMeshTwin(12, hw.phase_per_u))
        read, bench_read = MZIMeshTwin(12, hw.phase_per_u), Counting(hw)
        r_read = self_configure(bench_read, read, elements=True)
        assert r_read.readings == bench_read.readings
        if seed == 1:  # no reading more than the default start, which leaves the elements at the datasheet's
            plain = MZIMeshTwin(12, hw.phase_per_u)
            assert self_configure(hw, plain).readings == r_read.readings
            assert np.allclose(errors(hw, plain)["couplers"], datasheet["couplers"])
        got = errors(hw, read)
        # measured (N = 12, chips 1 / 2): couplers 0.030 → 0.014, κ 0.059 → 0.025, φ efficiency 0.036–0.041 → 0.026–0.030
        assert np.all(got["couplers"] < 0.6 * datasheet["couplers"]), (seed, got, datasheet)
        assert np.all(got["kappa"] < 0.6 * datasheet["kappa"]), (seed, got, datasheet)
        assert got["eff_phi"] < 0.85 * datasheet["eff_phi"], (seed, got, datasheet)
        assert len(r_read.elements) == 4 and r_read.couplers.shape == (hw.chip.layout.n_mzi, 2)
