"""labsat.paper.mzi: the paper's MZI-mesh protocol at CI size (plumbing, not accuracy)."""
import pytest
import torch

from labsat import paper
from labsat.paper import common, mzi
from labsat.twins import clements


def small(**kw):
    return mzi.Settings(**{"modes": 16, "epochs": 1, **kw})


def test_chip_errors_are_fixed_per_chip_and_scale_with_sigma():
    net = mzi.MeshNet(small(), seed=0)
    a, b = mzi.chip_errors(net.mesh.layout, 201, 0.15), mzi.chip_errors(net.mesh.layout, 201, 0.15)
    c = mzi.chip_errors(net.mesh.layout, 202, 0.15)
    assert all(torch.equal(a[k], b[k]) for k in a) and not torch.equal(a["theta"], c["theta"])
    assert a["bs"].shape == (net.mesh.layout.n_mzi, 2)  # two couplers per MZI, independent errors
    assert float(a["theta"].std()) == pytest.approx(0.15, rel=0.3)
    zero = mzi.chip_errors(net.mesh.layout, 201, 0.0)
    assert torch.allclose(net.mesh.matrix(zero), net.mesh.matrix(None))


def test_ideal_mesh_is_unitary_and_the_chip_differs():
    net = mzi.MeshNet(small(), seed=0)
    u = net.mesh.matrix(None).detach()
    assert torch.allclose(u @ u.conj().T, torch.eye(16, dtype=u.dtype), atol=1e-10)
    chip = net.mesh.matrix(mzi.chip_errors(net.mesh.layout, 201, 0.15)).detach()
    assert (chip - u).abs().max() > 0.05


def test_haar_init_and_paper_readout():
    net = mzi.MeshNet(small(), seed=0)
    theta = net.mesh.theta.detach().numpy()
    assert (theta >= 0).all() and (theta <= torch.pi).all()
    x = torch.randn(5, 1, 28, 28)
    net.eval()
    out = net(x).detach()
    assert out.shape == (5, 10) and float(out.min()) >= 0 and float(out.max()) <= 1  # no scale
    z = net.front(x).double()
    p = clements.powers(net.mesh.matrix(None), z)
    assert torch.allclose(out, (p / p.norm(dim=-1, keepdim=True))[:, :10])
    scaled = mzi.MeshNet(small(readout="scale"), seed=0)
    scaled.eval()
    assert torch.allclose(scaled(x).detach(), out * 10.0)  # learnable scale, starting at 10


def test_pat_forward_is_the_chip_and_backward_the_ideal_mesh():
    net = mzi.MeshNet(small(), seed=0)
    net.eval()
    net.errors = mzi.chip_errors(net.mesh.layout, 201, 0.15)
    x = torch.randn(4, 1, 28, 28)
    net.mode = "chip"
    chip = net(x).detach()
    net.mode = "pat"
    out = net(x)
    assert torch.allclose(out, chip)
    out.sum().backward()
    g_pat = net.mesh.theta.grad.clone()
    net.zero_grad()
    net.mode = "ideal"
    net(x).sum().backward()
    assert torch.allclose(g_pat, net.mesh.theta.grad)


def test_broken_couplers_give_nan_and_class_zero_like_the_authors():
    net = mzi.MeshNet(small(), seed=0)
    x, y = torch.randn(30, 1, 28, 28), torch.randint(0, 10, (30,))
    errors = mzi.chip_errors(net.mesh.layout, 201, 0.0)
    errors["bs"][0, 0] = 1.5  # |e| > 1: sqrt(1 - e) is NaN, nothing clipped
    assert mzi.accuracy(net, x, y, errors) == pytest.approx(float((y == 0).float().mean()))


def test_run_task_rows_transfer_and_model_cache(tmp_path):
    s = small(transfer_sigmas=(0.0, 0.2), transfer_chips=2)
    protocol = common.Protocol(eval_chips=(201,), seeds=(0,), n_train=64, n_test=32)
    (task,) = mzi.tasks(protocol, s, tmp_path, methods=("sat_insitu",))
    rows = mzi.run_task(task)
    assert [r["deploy"] for r in rows] == ["own chip"] + ["new chip"] * 4
    assert [r["sigma"] for r in rows] == [0.15, 0.0, 0.0, 0.2, 0.2]
    assert len({r["chip"] for r in rows}) == 5
    assert all(0.0 <= r["accuracy"] <= 1.0 for r in rows)
    assert len(list((tmp_path / "cache").glob("mzi-*.pt"))) == 1
    again = mzi.run_task(task)  # loaded from the cache: the same model, the same numbers
    assert [r["accuracy"] for r in again] == [r["accuracy"] for r in rows]
    assert again[0]["train_s"] == rows[0]["train_s"]


def test_unknown_method_and_bad_settings():
    with pytest.raises(ValueError, match="modes"):
        mzi.Settings(modes=8)
    with pytest.raises(ValueError, match="readout"):
        mzi.Settings(readout="softmax")
    with pytest.raises(ValueError, match="unknown method"):
        mzi.train(mzi.MeshNet(small(), 0), "xyz", torch.zeros(2, 1, 28, 28), torch.zeros(2, dtype=torch.long),
                  small(), 0)


def test_paper_transfer_end_to_end_writes_the_tables(tmp_path):
    result = paper.run("paper-transfer", settings=["modes=12", "epochs=1", "transfer_chips=1"], chips=1,
                       n_train=40, n_test=20, out=tmp_path, log=lambda m: None)
    d = result["directory"]
    assert d.name == "paper-transfer+modes=12+epochs=1+transfer_chips=1"
    for f in ("table.md", "results.csv", "results.json", "plot.png"):
        assert (d / f).stat().st_size > 0
    table = (d / "table.md").read_text()
    assert "SAT in situ" in table and "Transfer" in table and "(1)" in table
    assert len(result["rows"]) == 5 * (1 + 5)  # 5 methods x (own chip + 5 sigmas x 1 new chip)


def test_labsat_error_model_is_the_virtual_chips_own_physics():
    """Spread x1: the heater phases the mesh sees are those VirtualChip computes for the same chip seed
    with the heaters driven to the model's programmed phases; spread 0 is the ideal mesh."""
    import numpy as np

    from labsat.drivers.sim.chip import ChipSpec, VirtualChip

    net = mzi.MeshNet(small(), seed=0)
    layout = net.mesh.layout
    errors = mzi.chip_errors(layout, 203, 1.0, model="labsat")
    d = mzi.heater_phase_errors(net.mesh.theta, net.mesh.phi, errors).numpy()
    p = np.stack([net.mesh.theta.detach().numpy(), net.mesh.phi.detach().numpy()], -1).reshape(-1) % (2 * np.pi)
    spec = ChipSpec(modes=layout.modes)
    chip = VirtualChip(spec, seed=203)
    chip.set_heaters(np.sqrt(p / spec.eta_nominal * spec.heater_resistance_ohm))
    assert chip.temperature_change_k == 0.0
    assert np.allclose(chip.heater_phases(), p + d, atol=1e-9)
    assert np.allclose(errors["split"].numpy(), chip.truth.coupler - np.pi / 4)
    zero = mzi.chip_errors(layout, 203, 0.0, model="labsat")
    assert torch.allclose(net.mesh.matrix(zero), net.mesh.matrix(None), atol=1e-12)
    assert (net.mesh.matrix(errors) - net.mesh.matrix(None)).abs().max() > 0.05
    x, y = torch.randn(20, 1, 28, 28), torch.randint(0, 10, (20,))
    assert 0 <= mzi.accuracy(net, x, y, errors) <= 1


def test_methods_subset_and_error_model_setting_through_paper_run(tmp_path):
    out = paper.run("paper-mzi", chips=1, seeds=1, n_train=40, n_test=20, out=tmp_path, scheduler="serial",
                    settings=["modes=10", "epochs=1", "methods=bp,sat_insitu", "error_model=labsat", "sigma=0.5",
                              "transfer_sigmas=0.5", "transfer_chips=2"], log=lambda m: None)
    rows = out["rows"]
    assert {r["method"] for r in rows} == {"bp", "sat_insitu"} and {r["error_model"] for r in rows} == {"labsat"}
    assert sorted(r["deploy"] for r in rows) == ["new chip"] * 4 + ["own chip"] * 2
    assert "labsat's error model, spread × 0.5" in out["table"]
    with pytest.raises(ValueError, match="methods"):
        paper.run("paper-mzi", chips=1, seeds=1, out=tmp_path, settings=["methods=bp,xyz"], log=lambda m: None)


def test_dat_takes_the_chips_values_and_the_gradient_of_the_ideal_mesh_plus_its_error_predictor():
    net = mzi.MeshNet(small(modes=10), seed=0)
    net.eval()
    net.errors = mzi.chip_errors(net.mesh.layout, 201, 0.15)
    net.sepn = mzi.sepn(10)
    with torch.no_grad():
        net.sepn[-1].weight.normal_(0, 0.1)  # a non-zero correction, so that it shows in the gradient
    x = torch.randn(4, 1, 28, 28)
    net.mode = "chip"
    chip = net(x).detach()
    net.mode, net.sepn_weight = "dat", 1.0
    out = net(x)
    assert torch.allclose(out, chip)
    out.sum().backward()
    g_dat = net.mesh.theta.grad.clone()
    net.zero_grad()
    net._logits(net.front(x), None, 1.0).sum().backward()
    assert torch.allclose(g_dat, net.mesh.theta.grad)
    net.zero_grad()
    net._logits(net.front(x), None).sum().backward()
    assert not torch.allclose(g_dat, net.mesh.theta.grad)  # the SEPN changes the backward model


def test_dat_learns_to_predict_the_chip_and_caches_its_predictor(tmp_path):
    import torch.nn.functional as F

    s = small(modes=10, epochs=5, batch_size=32, dat_lr=0.01)  # a smaller step for 25 steps on 160 images
    net = mzi.MeshNet(s, seed=0)
    net.errors = mzi.chip_errors(net.mesh.layout, 201, 0.15)
    x, y, _, _, _ = mzi._data("digits", 160, 20)
    mzi.train(net, "dat", x, y, s, 0)
    net.eval()
    with torch.no_grad():
        z = net.front(x)
        chip = net._logits(z, net.errors)
        before, after = F.mse_loss(net._logits(z, None), chip), F.mse_loss(net._logits(z, None, 1.0), chip)
    assert after < 0.5 * before
    (task,) = mzi.tasks(common.Protocol(eval_chips=(201,), seeds=(0,), n_train=40, n_test=20),
                        small(modes=10, epochs=1), tmp_path, methods=("dat",))
    assert "dat_lr" not in task["settings"]  # a later setting at its default: the task (its stored key) as before
    rows = mzi.run_task(task)
    assert [r["accuracy"] for r in mzi.run_task(task)] == [r["accuracy"] for r in rows]  # the cached model + SEPN
