"""The pulse kind's online refresh measuring more where the ensemble's members disagree (issue 17):
the trigger (disagreement on a batch over its calibration median), what it measures, how the queries are
counted, and the same through online training on a small virtual SHG station.
"""
from __future__ import annotations

import functools

import numpy as np
import pytest
import torch
import yaml
from conftest import REPO
from labsat.calibration import measure
from labsat.calibration.pulse import OnlineRefresh, fit_learned

from labsat.config import parse_config
from labsat.data import Dataset
from labsat.multilayer import DeepClassifier
from labsat.physical import PhysicalLayer
from labsat.station import Station
from labsat.train import TrainConfig, train
from labsat.twins.pulse_learned import make_ensemble


class Recorder:
    """Hardware stand-in: records every (x, u) it is asked to measure, returns ones."""

    def __init__(self, n_out: int):
        self.n_out, self.calls, self.samples = n_out, [], 0

    def forward(self, x: np.ndarray, u: np.ndarray) -> np.ndarray:
        self.calls.append((np.array(x), np.array(u)))
        self.samples += len(x)
        return np.ones((len(x), self.n_out))


def _ensemble(reference: float):
    twin = make_ensemble(3, 5, 4, members=2, hidden=16, depth=1)
    twin.reference_spread.fill_(reference)
    return twin


def test_probe_measures_around_the_batchs_parameters_only_past_the_threshold():
    x = torch.rand(6, 3, dtype=torch.float64)
    u = torch.full((5,), 0.5, dtype=torch.float64)
    y = torch.zeros(6, 4, dtype=torch.float64)
    twin = _ensemble(1.0)
    spread = float(twin.spread(x, u.expand(6, 5)).mean())
    assert spread > 0  # two differently initialised members
    hw = Recorder(4)
    # the calibration median is 2x this batch's spread: ratio 0.5, below a threshold of 1 -> nothing measured
    twin.reference_spread.fill_(2 * spread)
    r = OnlineRefresh(twin, every=10_000, window=20_000, hardware=hw, probe_threshold=1.0, probe_settings=3,
                      probe_sigma=0.05, probe_inputs=4)
    r.observe(x, u, y)
    assert hw.calls == [] and r.probes == 0 and r.disagreement == pytest.approx([0.5])
    # the same batch against half that median: ratio 2 > 1 -> 3 settings x 4 of the batch's inputs
    twin.reference_spread.fill_(0.5 * spread)
    r.observe(x, u, y)
    assert r.disagreement[-1] == pytest.approx(2.0)
    assert r.probes == 1 and r.probe_queries == 12 and hw.samples == 12 and len(hw.calls) == 3
    for xk, uk in hw.calls:
        assert xk.shape == (4, 3) and any(np.allclose(xk[0], row) for row in x.numpy())
        assert 0 < np.abs(uk - 0.5).max() < 0.3 and np.all((uk >= 0) & (uk <= 1))  # around u, not at it
    assert len({tuple(uk) for _, uk in hw.calls}) == 3
    # the extra rows join what the next refresh fits
    assert r.rows_seen == 6 + 6 + 12 and sum(len(rows[0]) for rows in r._rows) == 24


def test_probe_needs_hardware_and_sane_settings():
    twin = _ensemble(1.0)
    with pytest.raises(ValueError, match="probing needs hardware"):
        OnlineRefresh(twin, probe_threshold=1.0)
    with pytest.raises(ValueError, match="probing needs hardware"):
        OnlineRefresh(twin, hardware=Recorder(4), probe_threshold=1.0, probe_settings=0)
    # no threshold: the refresh never records disagreement nor measures (the default, as before)
    r = OnlineRefresh(twin, hardware=Recorder(4))
    r.observe(torch.rand(4, 3, dtype=torch.float64), torch.rand(5, dtype=torch.float64),
              torch.zeros(4, 4, dtype=torch.float64))
    assert r.disagreement == [] and r.probes == 0


def test_online_pat_with_probing_counts_its_extra_queries(tmp_path):
    d = yaml.safe_load((REPO / "stations" / "pulse.yaml").read_text())
    d["station"]["calibration_dir"] = str(tmp_path / "cal")
    d["station"]["runs_dir"] = str(tmp_path / "runs")
    d["instruments"]["spectrometer"]["channels"] = 12
    d["layers"]["shg"].update(n_inputs=4, n_controls=4)
    d["layers"]["shg"]["outputs"]["channels"] = "1-10"
    config = parse_config(d)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(48, 4, generator=g, dtype=torch.float64)
    data = Dataset(x, torch.randint(0, 3, (48,), generator=g), x[:8], torch.zeros(8, dtype=torch.long), None, 3, "toy")
    with Station(config) as st:
        hw = st.layer()
        cal = measure(hw, settings=40, inputs_per_setting=4, seed=0)
        twin = make_ensemble(4, 4, 10, members=2, hidden=32, depth=1)
        fit_learned(twin, cal, epochs=5)
        assert float(twin.reference_spread) > 0
        runs = {}
        for threshold in (float("inf"), 1e-9):  # never / every batch
            own = make_ensemble(4, 4, 10, members=2, hidden=32, depth=1)
            own.load_fitted_state(twin.fitted_state())
            own.refresher = functools.partial(OnlineRefresh, every=64, window=256, hardware=hw,
                                              probe_threshold=threshold, probe_settings=2, probe_inputs=3)
            model = DeepClassifier([PhysicalLayer(own, hw, seed=0), PhysicalLayer(own, hw, seed=1)], 3,
                                   between="linear")
            q0 = hw.samples
            train(model, data, TrainConfig(mode="online", optimizer="adam", epochs=1, batch_size=16, lr=0.02))
            runs[threshold] = (hw.samples - q0, own.online)
    plain, plain_r = runs[float("inf")]
    probed, probed_r = runs[1e-9]
    batches = 2 * 3  # two layers x 48 / 16 batches
    assert plain == 2 * 48 and plain_r.probes == 0 and len(plain_r.disagreement) == batches
    assert probed_r.probes == batches and probed_r.probe_queries == batches * 2 * 3
    assert probed == 2 * 48 + probed_r.probe_queries  # the hardware counted every extra query
    assert probed_r.rows_seen == probed and probed_r.refreshes == probed // 64
