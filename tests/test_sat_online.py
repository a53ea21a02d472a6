"""Physics-aware SAT online on the virtual lab: one hardware forward per step with the perturbed pass
on the twin (two with both passes on hardware), and the training options of labsat.sat."""
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from labsat.data import load_digits
from labsat.station import Station
from labsat.train import TrainConfig, accuracy, build_model, train

STATION = Path(__file__).resolve().parents[1] / "instruments.yaml"


@pytest.fixture(scope="module")
def bench():
    with Station(STATION, chip_seed=3) as st:
        layer = st.config.layers["mesh"]
        data = load_digits(layer.modes, seed=0)
        small = replace(data, x_train=data.x_train[:48], y_train=data.y_train[:48],
                        x_test=data.x_test[:64], y_test=data.y_test[:64])
        yield st, layer, small


def _model(st, layer, data, hw):
    r = st.config.instruments[layer.heaters.instrument].limits.resistance_ohm
    return build_model(layer, r, data.n_classes, seed=0, hardware=hw)


@pytest.mark.parametrize("twin_perturbed, expected", [(True, 1), (False, 2)])
def test_online_sat_hardware_queries_per_step(bench, twin_perturbed, expected):
    st, layer, data = bench
    hw = st.mesh()
    model = _model(st, layer, data, hw)
    u0 = model.physical.u.detach().clone()
    cfg = TrainConfig(mode="online", optimizer="sam", rho=0.05, epochs=2, batch_size=16,
                      twin_perturbed=twin_perturbed)
    history = train(model, data, cfg)
    assert history.step_hardware_batches == [expected] * 6  # 3 steps x 2 epochs
    assert [e.hardware_batches for e in history.epochs] == [3 * expected, 3 * expected]
    assert hw.batches == 6 * expected
    assert not torch.equal(model.physical.u.detach(), u0)  # it trained


def test_twin_perturbed_matches_manual_hybrid_step(bench):
    """The step is: gradient at w on hardware (twin backward), SAM ascent, gradient at w+e on the twin."""
    st, layer, data = bench
    hw = st.mesh()
    one = replace(data, x_train=data.x_train[:16], y_train=data.y_train[:16])
    a, b = _model(st, layer, one, hw), _model(st, layer, one, hw)
    cfg = TrainConfig(mode="online", optimizer="sam", base="sgd", rho=0.05, lr=0.1, epochs=1, batch_size=16,
                      twin_perturbed=True, perturb="all")  # the hand step below perturbs every parameter
    train(a, one, cfg)
    # by hand on b: same batch (all 16 samples, a permutation does not change the mean loss)
    loss_fn = torch.nn.CrossEntropyLoss()
    params = [p for p in b.parameters() if p.requires_grad]
    b.physical.use_hardware = True
    g = torch.autograd.grad(loss_fn(b(one.x_train), one.y_train), params)
    norm = torch.sqrt(sum((gi**2).sum() for gi in g))
    with torch.no_grad():
        for p, gi in zip(params, g):
            p.add_(0.05 * gi / norm)
    b.physical.use_hardware = False
    g2 = torch.autograd.grad(loss_fn(b(one.x_train), one.y_train), params)
    with torch.no_grad():
        for p, gi, g2i in zip(params, g, g2):
            p.sub_(0.05 * gi / norm)
            p.sub_(0.1 * g2i)  # SGD with momentum: the first step is plain SGD
        b.physical.project_()
    for pa, pb in zip(a.parameters(), b.parameters()):  # twin parameters are equal too
        assert torch.allclose(pa, pb, atol=2e-3), (pa - pb).abs().max()


@pytest.mark.parametrize("optimizer", ["saf", "mesa", "noise"])
def test_new_optimizers_train_online_with_one_query_per_step(bench, optimizer):
    st, layer, data = bench
    hw = st.mesh()
    model = _model(st, layer, data, hw)
    before = accuracy(model, data.x_train, data.y_train, on_hardware=False)
    cfg = TrainConfig(mode="online", optimizer=optimizer, epochs=3, batch_size=16, lag=1, warmup=1, sigma=0.01)
    history = train(model, data, cfg)
    assert history.step_hardware_batches == [1] * 9
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert history.epochs[-1].loss < history.epochs[0].loss or \
        accuracy(model, data.x_train, data.y_train, on_hardware=False) > before


def test_train_config_rejects_bad_sat_options():
    with pytest.raises(ValueError, match="optimizer"):
        TrainConfig(optimizer="sharp")
    with pytest.raises(ValueError, match="perturb"):
        TrainConfig(optimizer="sam", perturb="readout")
    with pytest.raises(ValueError):
        TrainConfig(optimizer="mesa", ema_decay=1.0)
    with pytest.raises(ValueError):
        TrainConfig(optimizer="saf", lam=-1)
