"""Physics-aware training on the pulse kind at CI size: the learned-twin ensemble (training, uncertainty,
round trip), the trust factor, the online refresh from training's own measurements (through PhysicalLayer,
so every front door gets it), the two-layer network and the CLI's online run.

Small layers (4 input and 4 parameter macro-pixels, 10 outputs) keep the queries few.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import yaml
from typer.testing import CliRunner

from conftest import REPO, write_yaml
from labsat import cli
from labsat.calibration import measure
from labsat.config import parse_config
from labsat.data import Dataset
from labsat.multilayer import DeepClassifier
from labsat.physical import HybridClassifier, PhysicalLayer
from labsat.station import Station
from labsat.train import TrainConfig, accuracy, train
from labsat.twins.pulse_learned import (OnlineRefresh, SplitTwin, TwinEnsemble, fit_learned, make_ensemble,
                                        prediction_error, twin_for_layer)

runner = CliRunner()


def pulse_station(tmp_path, n_in: int = 4, n_ctrl: int = 4, pixels: int = 12) -> dict:
    d = yaml.safe_load((REPO / "stations" / "pulse.yaml").read_text())
    d["station"]["calibration_dir"] = str(tmp_path / "cal")
    d["station"]["runs_dir"] = str(tmp_path / "runs")
    d["instruments"]["spectrometer"]["channels"] = pixels
    d["layers"]["shg"].update(n_inputs=n_in, n_controls=n_ctrl)
    d["layers"]["shg"]["outputs"]["channels"] = f"1-{pixels - 2}"
    return d


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory):
    """A small SHG station, 800 calibration queries, a fitted 2-member ensemble (shared by the tests)."""
    tmp = tmp_path_factory.mktemp("pulse")
    d = pulse_station(tmp)
    # the MLP ensemble's mechanics (spread, trust, refresh); at this size an MLP fits the layout whose inputs
    # sit at the band's edge (weak input dependence); the kind's own twin is tested in test_pulse_twin.py
    d["layers"]["shg"]["input_layout"] = "first"
    config = parse_config(d)
    with Station(config) as st:
        data = measure(st.layer(), settings=200, inputs_per_setting=4, seed=0)
    fit_set, held = data.split(0.2, seed=0)
    twin = make_ensemble(4, 4, 10, members=2, hidden=64, depth=2)
    history = fit_learned(twin, fit_set, epochs=80)
    return config, twin, fit_set, held, history


def test_ensemble_twin_learns_and_knows_its_spread(calibrated):
    _, twin, fit_set, held, history = calibrated
    assert history[-1] < 0.5 * history[0]
    err = prediction_error(twin, held)
    assert err["r2"] > 0.5 and err["rmse"] < 0.7 * err["constant_rmse"]
    # the members differ (own seeds) and the mean is the prediction
    x, u = torch.rand(5, 4, dtype=torch.float64), torch.rand(4, dtype=torch.float64)
    ys = twin.all_members(x, u)
    assert ys.shape == (2, 5, 10) and not torch.allclose(ys[0], ys[1])
    torch.testing.assert_close(twin(x, u), ys.mean(0))
    assert float(twin.reference_spread) > 0
    # the spread grows away from the data: inputs outside [0, 1] are extrapolation
    inside = twin.spread(torch.rand(64, 4, dtype=torch.float64), u).mean()
    outside = twin.spread(3 + torch.rand(64, 4, dtype=torch.float64), u).mean()
    assert outside > inside
    # round trip through the calibration file's JSON-able state, and a clear error for a wrong shape
    clone = make_ensemble(4, 4, 10, members=2, hidden=64, depth=2, seed=9)
    clone.load_fitted_state(yaml.safe_load(yaml.safe_dump(twin.fitted_state())))
    torch.testing.assert_close(clone(x, u), twin(x, u))
    assert float(clone.reference_spread) == pytest.approx(float(twin.reference_spread))
    with pytest.raises(ValueError, match="2 members does not fit this layer \\(3 members\\)"):
        make_ensemble(4, 4, 10, members=3, hidden=64, depth=2).load_fitted_state(twin.fitted_state())


def test_trust_factor_scales_the_gradient_where_members_disagree():
    twin = make_ensemble(3, 2, 4, members=3, hidden=16, depth=1)
    x = torch.rand(6, 3, dtype=torch.float64)
    u = torch.rand(2, dtype=torch.float64, requires_grad=True)

    def grad(cautious: bool) -> torch.Tensor:
        twin.cautious = cautious
        uu = u.detach().clone().requires_grad_(True)
        twin(x, uu).sum().backward()
        return uu.grad

    plain = grad(False)
    spread = twin.spread(x, u)
    twin.reference_spread.fill_(float(spread.max()) * 10)  # members agree better than the reference
    torch.testing.assert_close(grad(True), plain)
    assert twin.last_trust == pytest.approx(1.0)
    twin.reference_spread.fill_(float(spread.min()) / 4)  # they disagree 4x or more: steps shrink
    cautious = grad(True)
    assert twin.last_trust <= 0.25
    assert cautious.norm() < 0.3 * plain.norm()
    # the forward value is never changed
    twin.cautious = True
    torch.testing.assert_close(twin(x, u), make_ensemble(3, 2, 4, members=3, hidden=16, depth=1)(x, u))


def test_split_network_matches_its_batched_form():
    net = SplitTwin(3, 5, 4, hidden=16, internal=8, layers=2, seed=1)
    x = torch.rand(7, 3, dtype=torch.float64)
    u = torch.rand(5, dtype=torch.float64)
    shared = net(x, u)  # one setting for the batch
    per_row = net(x, u.expand(7, 5))  # one setting per row
    torch.testing.assert_close(shared, per_row)
    xs, us = torch.rand(2, 7, 3, dtype=torch.float64), torch.rand(2, 5, dtype=torch.float64)
    torch.testing.assert_close(net(xs, us)[1], net(xs[1], us[1]))


def _tiny_vowels(n_train: int = 96, n_test: int = 32) -> Dataset:
    from labsat.vowels import load_vowels

    d = load_vowels(4, seed=0)
    return Dataset(d.x_train[:n_train], d.y_train[:n_train], d.x_test[:n_test], d.y_test[:n_test], d.encoder,
                   d.n_classes, "vowels")


def test_online_training_refreshes_the_twin_from_its_own_measurements(calibrated):
    config, fitted, _, _, _ = calibrated
    twin = make_ensemble(4, 4, 10, members=2, hidden=64, depth=2)
    twin.load_fitted_state(fitted.fitted_state())
    data = _tiny_vowels()
    with Station(config) as st:
        hw = st.layer()
        model = HybridClassifier(PhysicalLayer(twin, hw, seed=0), data.n_classes, seed=0)
        twin.online = OnlineRefresh(twin, every=48, window=192, epochs=3, lr=1e-3)
        before = [p.clone() for p in twin.parameters()]
        q0 = hw.samples
        train(model, data, TrainConfig(mode="online", optimizer="adam", epochs=2, batch_size=16, lr=0.02))
        used = hw.samples - q0
        assert used == 2 * 96 and twin.online.rows_seen == used  # every training measurement, no extra query
        assert twin.online.refreshes == used // 48
        assert any(not torch.equal(a, b) for a, b in zip(before, twin.parameters()))
        # the refreshed twin predicts the device near the parameters in use better than the calibrated one did
        errors = twin.online.errors
        assert np.mean(errors[-2:]) < errors[0]
        seen = twin.online.rows_seen
        accuracy(model, data.x_test, data.y_test, on_hardware=True)  # evaluation: measured, not learned from
        assert twin.online.rows_seen == seen


def test_two_physical_layers_share_one_device_and_its_twin(calibrated):
    config, fitted, _, _, _ = calibrated
    data = _tiny_vowels(64, 16)
    with Station(config) as st:
        hw = st.layer()
        twin = make_ensemble(4, 4, 10, members=2, hidden=64, depth=2)
        twin.load_fitted_state(fitted.fitted_state())
        twin.refresh_online = False
        layers = [PhysicalLayer(twin, hw, seed=0), PhysicalLayer(twin, hw, seed=1)]
        model = DeepClassifier(layers, data.n_classes, between="linear")
        assert model(data.x_train[:5]).shape == (5, 10)  # 10 outputs -> digital layer -> 4 inputs
        train(model, data, TrainConfig(mode="online", optimizer="adam", epochs=1, batch_size=32))
        assert model.physical.hardware.samples == hw.samples == 2 * 64  # one device, counted once
        assert not torch.equal(layers[0].u, layers[1].u)
    with pytest.raises(ValueError, match="cannot feed"):
        DeepClassifier(layers, 10)  # per-channel electronics need matching sizes


def test_cli_online_pat_on_the_pulse_kind_refreshes_its_twin(tmp_path, monkeypatch):
    monkeypatch.setattr(cli.console, "_width", 250)
    path = write_yaml(tmp_path / "pulse.yaml", pulse_station(tmp_path))
    result = runner.invoke(cli.app, ["calibrate", "--kind", "pulse", "--station", str(path), "--settings", "60",
                                     "--inputs", "4"])
    assert result.exit_code == 0, result.output
    out = tmp_path / "online.pt"
    result = runner.invoke(cli.app, ["train", "--kind", "pulse", "--station", str(path), "--mode", "online",
                                     "--optimizer", "adam", "--epochs", "1", "--batch-size", "256",
                                     "--out", str(out)])
    assert result.exit_code == 0, result.output
    meta = torch.load(out, weights_only=False)["meta"]
    assert meta["dataset"] == "vowels"  # the pulse kind's own task
    assert meta["twin_refreshes"] >= 1 and meta["hardware_batches"] > 0


def test_pulse_kind_twin_is_an_ensemble():
    config = parse_config(pulse_station(REPO / "runs" / "unused"))
    twin = twin_for_layer(config.layers["shg"])
    assert isinstance(twin, TwinEnsemble) and len(twin.members) == 3
    assert (twin.n_inputs, twin.n_controls, twin.n_outputs) == (4, 4, 10)
    assert twin.load_data(0).name == "vowels"
    with pytest.raises(ValueError, match="'split', 'mlp' or 'shg'"):
        make_ensemble(4, 4, 10, arch="cnn")
    with pytest.raises(ValueError, match="online refresh"):
        OnlineRefresh(twin, every=0)
    json.dumps(twin.fitted_state())  # JSON-able (the calibration store writes JSON)
