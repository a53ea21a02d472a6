"""Issue 12 at test size: the virtual chip's paper error model, the twin reproducing it exactly from
its hidden truth (so calibration can reach the noise floor), the progressive calibration reaching the
noise floor where the plain global fit does not, and the 64-mode station file."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from labsat.calibration.fit import fit_twin, rmse
from labsat.calibration.measure import Measurements, measure
from labsat.calibration.progressive import ProgressivePlan, calibrate_progressive
from labsat.config import load_config
from labsat.drivers.sim.chip import ChipSpec, VirtualChip
from labsat.twins.mzi import MZIMeshTwin

ROOT = Path(__file__).resolve().parents[1]


class Bench:
    """The chip's physics driven directly (tests only read ``chip.truth``)."""

    def __init__(self, modes, model, seed=1, v_max=6.0, v2pi=5.0, **spec):
        self.chip = VirtualChip(ChipSpec(modes=modes, v2pi=v2pi, error_model=model, **spec), seed=seed)
        self.modes, self.n_controls, self.v_max = modes, self.chip.layout.n_heaters, v_max
        self.phase_per_u = 2 * np.pi * v_max**2 / v2pi**2

    def forward(self, x, u, noisy=True):
        self.chip.set_heaters(self.v_max * np.sqrt(np.clip(u, 0, 1)))
        volts = 2 * self.chip.spec.modulator_vpi / np.pi * np.arcsin(np.clip(np.atleast_2d(x), 0, 1))
        return self.chip.output_powers(volts, noisy=noisy) / (self.chip.spec.laser_power_w / self.modes)

    def noise_floor(self, data):
        clean = np.stack([self.forward(data.x[k], data.u[k], noisy=False) for k in range(len(data))])
        return float(np.sqrt(np.mean((data.p - clean) ** 2)))


def test_paper_error_model_draws_the_papers_errors():
    chip = VirtualChip(ChipSpec(modes=32, error_model="paper", phase_error_sigma=0.15, bs_error_sigma=0.15), seed=4)
    t = chip.truth
    assert abs(np.std(t.offset) - 0.15) < 0.01 and abs(np.std(t.bs_error) - 0.15) < 0.01
    assert not np.any(t.kappa) and np.all(t.eta == chip.spec.eta_nominal) and np.all(t.port_gain == 1)
    # the couplers are B(e) = [[√(1+e), i√(1−e)], [i√(1−e), √(1+e)]]/√2, stored as splitting angles
    np.testing.assert_allclose(np.cos(t.coupler) ** 2, (1 + t.bs_error) / 2, atol=1e-12)
    with pytest.raises(ValueError, match="error_model"):
        ChipSpec(error_model="fancy")


def test_twin_with_the_paper_truth_reproduces_the_noiseless_chip():
    bench = Bench(7, "paper", seed=2)
    t = bench.chip.truth
    twin = MZIMeshTwin(7, bench.phase_per_u)
    twin.load_fitted_state({"offset": t.offset.tolist(), "log_eff": np.zeros(len(t.offset)).tolist(),
                            "crosstalk": t.kappa.tolist(), "coupler_error": (t.coupler - np.pi / 4).tolist(),
                            "log_gain": np.zeros(7).tolist()})
    rng = np.random.default_rng(0)
    x, u = rng.uniform(0, 1, (9, 7)), rng.uniform(0, 1, twin.n_controls)
    np.testing.assert_allclose(twin(torch.as_tensor(x), torch.as_tensor(u)).numpy(),
                               bench.forward(x, u, noisy=False), atol=1e-9)


def test_progressive_calibration_reaches_the_noise_floor_where_the_global_fit_stalls():
    """labsat's error model (offsets, efficiencies, crosstalk, couplers, port loss) at 10 modes."""
    bench = Bench(10, "labsat", seed=3, crosstalk_mean=0.08, efficiency_sigma=0.08)
    held = measure(bench, 8, 16, seed=99)
    floor = bench.noise_floor(held)
    plan = ProgressivePlan(settings=12, inputs=24, adam_steps=100, lbfgs_steps=80, refine_adam_steps=20)
    twin = MZIMeshTwin(10, bench.phase_per_u)
    result = calibrate_progressive(bench, twin, plan, seed=0, held=held)
    assert result.readings == plan.readings == 4 * 12 * 24
    assert rmse(twin, held) < 1.5 * floor
    # the same readings fitted in one go from the datasheet twin stay well above the floor
    plain = MZIMeshTwin(10, bench.phase_per_u)
    d = result.data
    fit_twin(plain, Measurements(d.u, d.x, d.p), adam_steps=100, lbfgs_steps=80)  # no bands: one global fit
    assert rmse(plain, held) > 2 * rmse(twin, held)


def test_paper_station_file_is_valid_and_64_modes():
    cfg = load_config(ROOT / "stations" / "paper-mzi.yaml")
    mesh = cfg.layers["mesh"]
    assert mesh.modes == 64 and len(mesh.heaters.channels) == 4032
    assert cfg.instruments["heaters"].kind == "block_dac"
    assert cfg.station.sim.error_model == "paper" and cfg.station.sim.phase_error_sigma == 0.15
