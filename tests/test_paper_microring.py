"""labsat.paper.microring: the paper's ring-bank protocol at CI size (plumbing, not accuracy)."""
import pytest
import torch

from labsat.paper import common, microring as mr


def test_lorentzian_weight():
    d = torch.tensor([0.0, mr.GAMMA, 1e6])
    assert torch.allclose(mr.lorentz(d), torch.tensor([-1.0, 0.0, 1.0]), atol=1e-6)


def test_bank_starts_at_the_default_linear_init_and_drift_moves_the_weights():
    bank = mr.RingBank(20, 6, seed=3)
    w = bank.weight(False).detach()
    assert float(w.abs().max()) <= 1 / 20 ** 0.5 + 1e-6  # torch's Linear init, read back through the ring
    bank.drift_k = -1.0
    shifted = bank.weight(True).detach()
    assert torch.allclose(mr.lorentz(bank.x.detach() - mr.DRIFT_NM_PER_K), shifted)
    assert (shifted - w).abs().max() > 0.05


def test_chip_offsets_are_fixed_per_chip():
    a, b, c = mr.RingLeNet(0), mr.RingLeNet(1), mr.RingLeNet(0)
    a.load_chip(201, 0.08), b.load_chip(201, 0.08), c.load_chip(202, 0.08)
    assert torch.equal(a.fc2.offset, b.fc2.offset) and not torch.equal(a.fc2.offset, c.fc2.offset)
    assert float(a.fc2.offset.std()) == pytest.approx(0.08, rel=0.2)
    a.load_chip(201, 0.0)
    assert float(a.fc3.offset.abs().max()) == 0.0


def test_pat_forward_is_the_chip_and_backward_the_ideal_bank():
    net = mr.RingLeNet(0)
    net.load_chip(201, 0.08)
    net.eval()
    x = torch.rand(8, 1, 28, 28)
    net.set(mode="chip")
    chip = net(x).detach()
    net.set(mode="pat")
    assert torch.allclose(net(x), chip, atol=1e-6)  # the whole network's forward is the chip's
    bank, inp = net.fc3, torch.rand(8, 84)
    out = bank(inp)
    out.sum().backward()
    g = bank.x.grad.clone()
    bank.x.grad = None
    bank.mode = "ideal"
    ideal = bank(inp)
    ideal.sum().backward()
    assert not torch.allclose(ideal, out)
    assert torch.allclose(g, bank.x.grad)  # ... and its gradient the ideal bank's


@pytest.mark.parametrize("method", mr.METHODS)
def test_run_task_rows_per_drift(method):
    s = mr.Settings(epochs=1, drifts=(0.0, -2.0))
    protocol = common.Protocol(eval_chips=(201,), seeds=(0,), n_train=64, n_test=32)
    (task,) = mr.tasks(protocol, s, methods=(method,))
    rows = mr.run_task(task)
    assert [r["drift_k"] for r in rows] == [0.0, -2.0]
    assert all(r["method"] == method and r["chip"] == 201 and 0 <= r["accuracy"] <= 1 for r in rows)
    table, fig = mr.report(rows, s)
    assert "(1)" in table and mr.LABELS[method] in table
    common.plt().close(fig)


def test_unknown_method():
    with pytest.raises(ValueError, match="unknown method"):
        mr.train(mr.RingLeNet(0), "dat", torch.zeros(4, 1, 28, 28), torch.zeros(4, dtype=torch.long), mr.Settings(), 0)


def test_choose_rho_reads_only_tuning_rows_at_the_criterion_drift():
    rows = [{"set": "tuning", "rho": 0.1, "drift_k": -2.0, "accuracy": 0.4},
            {"set": "tuning", "rho": 0.5, "drift_k": -2.0, "accuracy": 0.6},
            {"set": "tuning", "rho": 1.0, "drift_k": -2.0, "accuracy": 0.6},  # a tie: the smaller rho
            {"set": "tuning", "rho": 0.1, "drift_k": 0.0, "accuracy": 0.99},
            {"set": "evaluation", "rho": 2.0, "drift_k": -2.0, "accuracy": 0.9}]  # never read
    assert mr.choose_rho(rows, -2.0) == 0.5
    assert mr.choose_rho(rows, 0.0) == 0.1
    with pytest.raises(ValueError, match="no tuning runs"):
        mr.choose_rho(rows, -1.0)


def test_rho_is_tuned_on_the_tuning_chips_then_used_on_the_evaluation_chips(tmp_path):
    from labsat import paper

    out = paper.run("paper-microring", chips=1, seeds=1, n_train=48, n_test=24, out=tmp_path, scheduler="serial",
                    settings=["epochs=1", "drifts=0,-2", "rho_grid=0.05,2"], log=lambda m: None)
    tuning = [r for r in out["rows"] if r["set"] == "tuning"]
    evaluation = [r for r in out["rows"] if r["set"] == "evaluation"]
    assert {r["chip"] for r in tuning} == set(common.TUNING_CHIPS) and {r["rho"] for r in tuning} == {0.05, 2.0}
    assert {r["chip"] for r in evaluation} == {common.EVAL_CHIPS[0]}
    chosen = mr.choose_rho(tuning, -2.0)
    assert {r["rho"] for r in evaluation if r["method"] == "sat"} == {chosen}
    assert "Tuning SAT's ρ" in out["table"] and f"{chosen:g} (chosen)" in out["table"]
    assert "tuning" in (out["directory"] / "results.csv").read_text()  # every run kept
