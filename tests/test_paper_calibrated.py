"""labsat.paper.calibrated: the paper-protocol chip calibrated in the virtual lab, its fit as paper.mzi's twin."""
import math

import numpy as np
import pytest
import torch

from labsat.paper import calibrated, common, mzi
from labsat.twins import clements

MODES = 10  # the smallest paper.mzi mesh (10 logits); a 4-band calibration in a few seconds


def net(**kw):
    return mzi.MeshNet(mzi.Settings(**{"modes": MODES, "epochs": 1, **kw}), seed=0)


@pytest.mark.parametrize("model, sigma", [("labsat", 1.0), ("paper", 0.15)])
def test_virtual_chip_is_the_paper_chip_in_the_labs_physics(model, sigma):
    """The noiseless readings of the virtual chip are the mesh of paper.mzi's chip errors (same heaters, same
    couplers, same port gains) driven at programmed phases p = u * phase_per_u."""
    layout = net().mesh.layout
    errors = mzi.chip_errors(layout, 203, sigma, model=model)
    hw = calibrated.virtual_chip(MODES, errors, seed=203)
    rng = np.random.default_rng(0)
    u = rng.uniform(0, 0.6, layout.n_heaters)
    x = rng.uniform(0, 1, (5, MODES))
    p = torch.as_tensor(u * hw.phase_per_u)
    e = calibrated.labsat_form(errors, layout.n_heaters)
    phases = p + mzi.heater_phase_errors(p[0::2], p[1::2], e)
    if model == "paper":  # the paper's errors: additive on θ, φ, nothing else
        assert torch.allclose(phases - p, torch.stack([errors["theta"], errors["phi"]], -1).reshape(-1))
    want = e["gain"] * clements.powers(clements.mesh_matrix(phases[0::2], phases[1::2], layout,
                                                            split_error=e["split"]), torch.as_tensor(x))
    assert np.allclose(hw.forward(x, u, noisy=False), want.numpy(), atol=1e-9)
    assert hw.chip.temperature_change_k == 0.0


@pytest.fixture(scope="module")
def chip201(tmp_path_factory):
    """Chip 201 (labsat's model, spread x1) calibrated once for this module: (errors, fit, report, cache file)."""
    own = mzi.chip_errors(net().mesh.layout, 201, 1.0, model="labsat")
    cache = tmp_path_factory.mktemp("cal") / "cal-labsat-1-N10-chip201.json"
    fit, report = calibrated.calibrate(MODES, own, 201, cache)
    return own, fit, report, cache


def no_recalibration(monkeypatch):
    monkeypatch.setattr("labsat.calibration.progressive.calibrate_progressive",
                        lambda *a, **k: pytest.fail("recalibrated a cached chip"))


def test_calibration_recovers_the_chip_and_is_cached(chip201, monkeypatch):
    own, fit, report, cache = chip201
    m = net(error_model="labsat", sigma=1.0)
    assert report["cal_ratio"] < 1.3 and report["cal_nominal_rmse"] > 10 * report["cal_rmse"]
    assert float((fit["offset"] - own["offset"]).abs().max()) < 0.1 < float(own["offset"].abs().max())
    assert float((fit["kappa"] - own["kappa"]).abs().max()) < 0.02
    chip = m.mesh.matrix(own).detach()
    assert (m.mesh.matrix(fit).detach() - chip).abs().max() < 0.1 * (m.mesh.matrix(None).detach() - chip).abs().max()
    no_recalibration(monkeypatch)  # calibrated once: the second call reads the file and never measures
    again, report2 = calibrated.calibrate(MODES, own, 201, cache)
    assert report2 == report and all(torch.allclose(again[k], fit[k]) for k in fit)


def test_twin_methods_train_on_the_twin_and_sat_insitu_twin_takes_its_gradient():
    m = net()
    m.eval()
    m.errors = mzi.chip_errors(m.mesh.layout, 201, 0.15)
    m.twin = calibrated.labsat_form(mzi.chip_errors(m.mesh.layout, 201, 0.1), m.mesh.layout.n_heaters)
    x = torch.randn(4, 1, 28, 28)
    m.mode = "chip"
    chip = m(x).detach()
    m.mode = "twin"
    twin_out = m(x)
    twin_out.sum().backward()
    g_twin = m.mesh.theta.grad.clone()
    assert not torch.allclose(twin_out.detach(), chip)
    m.zero_grad()
    m.mode = "pat"  # sat_insitu_twin: the chip's values, the twin's gradient
    out = m(x)
    assert torch.allclose(out, chip)
    out.sum().backward()
    assert torch.allclose(m.mesh.theta.grad, g_twin)
    xs, ys = torch.zeros(2, 1, 28, 28), torch.zeros(2, dtype=torch.long)
    with pytest.raises(ValueError, match="calibrated twin"):
        mzi.train(net(), "bp_twin", xs, ys, mzi.Settings(modes=MODES, epochs=1), 0)  # no twin set
    with pytest.raises(ValueError, match="calibrated twin"):
        mzi.train(m, "bp", xs, ys, mzi.Settings(modes=MODES, epochs=1), 0)  # a twin set for a paper method


def test_bp_twin_through_paper_run_uses_the_chips_one_calibration(tmp_path, chip201, monkeypatch):
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / chip201[3].name).write_bytes(chip201[3].read_bytes())  # chip 201 calibrated before
    no_recalibration(monkeypatch)
    out = mzi.tasks(common.Protocol(eval_chips=(201,), seeds=(0,), n_train=40, n_test=20),
                    mzi.Settings(modes=MODES, epochs=1, error_model="labsat", sigma=1.0), tmp_path,
                    methods=("bp_twin", "sat_twin"))
    rows = [mzi.run_task(t)[0] for t in out]
    assert len(list((tmp_path / "cache").glob("cal-labsat-1-N10-chip201.json"))) == 1
    assert rows[0]["cal_ratio"] == rows[1]["cal_ratio"] == chip201[2]["cal_ratio"]
    assert all(0 <= r["calibrated_twin_accuracy"] <= 1 for r in rows)
    assert {r["data"] for r in rows} == {"digits 8x8 -> 28x28, 40 train / 20 test"}
    from labsat import paper

    res = paper.run("paper-mzi", chips=1, seeds=1, n_train=40, n_test=20, out=tmp_path, log=lambda m: None,
                    settings=[f"modes={MODES}", "epochs=1", "methods=bp,bp_twin", "error_model=labsat", "sigma=1"])
    assert "BP on calibrated twin" in res["table"] and math.isfinite(res["rows"][1]["cal_cpu_s"])


def test_calibration_budget_setting_is_a_smaller_plan_with_its_own_cache(tmp_path):
    with pytest.raises(ValueError, match="cal_settings"):
        mzi.Settings(modes=MODES, cal_settings=-1)
    s = mzi.Settings(modes=MODES, epochs=1, error_model="labsat", sigma=1.0)
    (default,) = mzi.tasks(common.Protocol(eval_chips=(202,), seeds=(0,)), s, tmp_path, methods=("bp_twin",))
    assert "cal_settings" not in default["settings"]  # at its default the task (its stored key) is as before
    (small_budget,) = mzi.tasks(common.Protocol(eval_chips=(202,), seeds=(0,), n_train=20, n_test=10),
                                mzi.Settings(**{**s.__dict__, "cal_settings": 1}), tmp_path, methods=("bp_twin",))
    row = mzi.run_task(small_budget)[0]
    assert row["cal_readings"] == 4 * 1 * 16  # 4 bands x 1 setting x max(16, N²/8) inputs
    assert [p.name for p in (tmp_path / "cache").glob("cal-*")] == ["cal-labsat-1-N10-s1-chip202.json"]
