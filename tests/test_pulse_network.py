"""The pulse kind's deeper networks (issue 17, round 4): a hidden layer in the digital layers between the physical
layers, a third physical layer, the benchmark's averaging override, and the twin + noise diagnostic's averaging.
No hardware: a small learned-twin ensemble stands in for the device (the chain's gradients are the twin's)."""
from __future__ import annotations

import importlib.util
from types import SimpleNamespace

import pytest
import torch
from conftest import REPO

from labsat.multilayer import DeepClassifier, DigitalLayer
from labsat.physical import PhysicalLayer
from labsat.twins.pulse_learned import make_ensemble


def _pulse_pat():
    spec = importlib.util.spec_from_file_location("pulse_pat", REPO / "benchmarks" / "pulse_pat.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _twin():
    twin = make_ensemble(4, 6, 10, members=2, hidden=16, depth=1)
    twin.refresh_online = False
    return twin


def test_hidden_digital_layer_shapes_and_the_plain_layer_unchanged():
    plain = DigitalLayer(10, 4, twin=None)
    assert plain.hidden is None and plain.linear.weight.shape == (4, 10)
    wide = DigitalLayer(10, 4, twin=None, hidden=32)
    assert wide.hidden[0].weight.shape == (32, 10) and wide.linear.weight.shape == (4, 32)
    y = wide(torch.randn(5, 10, dtype=torch.float64))
    assert y.shape == (5, 4) and ((y > 0) & (y < 1)).all()  # a drive in [0, 1]
    with pytest.raises(ValueError, match="hidden"):
        DigitalLayer(10, 4, hidden=-1)
    twin = _twin()
    with pytest.raises(ValueError, match="between='linear'"):
        DeepClassifier([PhysicalLayer(twin), PhysicalLayer(twin)], 3, hidden=8)
    # hidden=0 builds the same network as before the option existed (same parameters, same initial values)
    a = DeepClassifier([PhysicalLayer(twin), PhysicalLayer(twin)], 3, seed=5, between="linear")
    b = DeepClassifier([PhysicalLayer(twin), PhysicalLayer(twin)], 3, seed=5, between="linear", hidden=0)
    assert a.state_dict().keys() == b.state_dict().keys()
    for k in a.state_dict():
        torch.testing.assert_close(a.state_dict()[k], b.state_dict()[k])


def test_three_physical_layers_train_through_every_layer():
    bench = _pulse_pat()
    twin = _twin()
    model = bench.build(twin, None, seed=0, n_classes=3, physical=3, hidden=16)
    assert len(model.physical.layers) == 3 and len(model.electronics) == 2
    assert model.electronics[0].hidden[0].weight.shape == (16, 10)
    x = torch.rand(24, 4, dtype=torch.float64)
    inputs = bench.layer_inputs(model, x)
    assert [a.shape for a in inputs] == [(24, 4)] * 3
    assert not torch.allclose(torch.as_tensor(inputs[1]), torch.as_tensor(inputs[2]))
    loss = torch.nn.functional.cross_entropy(model(x), torch.arange(24) % 3)
    loss.backward()
    for layer in model.physical.layers:  # the gradient reaches the first layer through the other two twins
        assert layer.u.grad is not None and layer.u.grad.abs().sum() > 0


def test_averaging_override_and_the_noise_diagnostic_follow_the_count(tmp_path):
    bench = _pulse_pat()
    station = REPO / "stations" / "pulse.yaml"
    cfg = bench.station_config(station, None, tmp_path, averages=16)
    assert bench.detector_averages(cfg, next(iter(cfg.layers))) == 16
    base = bench.station_config(station, None, tmp_path)
    assert bench.detector_averages(base, next(iter(base.layers))) == base.instruments["spectrometer"].averages
    # the twin + detector-noise score: more exposures, less noise, an accuracy at least as close to the
    # noiseless one (a tiny model whose classes differ by less than single-exposure noise)
    twin = _twin()
    torch.manual_seed(0)
    model = bench.build(twin, None, seed=0, n_classes=2, physical=2)
    x = torch.rand(400, 4, dtype=torch.float64)
    with torch.no_grad():
        model.recalibrate_norms(x, on_hardware=False)
        model.eval()
        y = model(x).argmax(1)
    data = SimpleNamespace(x_test=x, y_test=y)  # labels: the noiseless twin's own predictions (accuracy 1)
    noisy = [bench.noisy_twin_accuracy(model, twin, data, seed=0, averages=n) for n in (1, 100, 10_000)]
    assert noisy[0] < noisy[1] < noisy[2] and noisy[2] > 0.97
