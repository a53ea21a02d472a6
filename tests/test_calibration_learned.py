"""Learned (MLP) twin: trained from (x, u) -> y readings of any hardware, beats a constant predictor."""
import numpy as np
import pytest
import torch

from _calibration_hw import DirectHardware
from labsat.calibration.learned import collect, fit_learned_twin, refine_near
from labsat.twins.learned import LearnedTwin


def test_learned_twin_beats_constant_on_held_out_local_data():
    torch.set_num_threads(1)
    hw = DirectHardware(seed=1, modes=4)
    center = np.full(hw.n_controls, 0.5)
    data = collect(hw, 48, 16, seed=0, center=center, sigma=0.05)
    fit = fit_learned_twin(data, hidden=32, depth=2, epochs=40)
    r = fit.report
    assert r["rmse"] < 0.8 * r["constant_rmse"], r
    # active sampling near new controls: fine-tuning lowers the local held-out error
    report = refine_near(fit, hw, center + 0.1, settings=24, inputs_per_setting=16, epochs=30)
    assert report["after"]["rmse"] < report["before"]["rmse"]
    assert report["after"]["rmse"] < report["after"]["constant_rmse"]


def test_learned_twin_shapes_and_round_trip(tmp_path):
    twin = LearnedTwin(3, 5, 2, hidden=8, depth=1)
    x = torch.rand(7, 3, dtype=torch.float64)
    assert twin(x, torch.rand(5, dtype=torch.float64)).shape == (7, 2)
    assert twin(torch.rand(4, 7, 3, dtype=torch.float64), torch.rand(4, 5, dtype=torch.float64)).shape == (4, 7, 2)
    with pytest.raises(ValueError, match="controls"):
        twin(x, torch.rand(4, dtype=torch.float64))
    path = twin.save(tmp_path / "t.pt", {"note": "x"})
    again, meta = LearnedTwin.load(path)
    u = torch.rand(5, dtype=torch.float64)
    assert torch.allclose(again(x, u), twin(x, u)) and meta == {"note": "x"}


def test_collect_refuses_bad_center():
    hw = DirectHardware(seed=1, modes=4)
    with pytest.raises(ValueError, match="center"):
        collect(hw, 2, 2, center=np.zeros(3))
