"""labsat.sat optimizers against hand-computed two-parameter examples, and the sharpness measures."""
import math

import numpy as np
import pytest
import torch

from labsat.sat import MESA, SAF, SAM, NoiseInjection, trajectory_kl
from labsat.sat.sharpness import max_loss_increase, top_hessian_eigenvalue


def _w(*values):
    return torch.nn.Parameter(torch.tensor(values, dtype=torch.float64))


def test_trajectory_kl_hand_value_and_zero_when_unchanged():
    out = torch.tensor([[1.0, 0.0]], dtype=torch.float64)
    past = torch.zeros(1, 2, dtype=torch.float64)
    # KL(p || q) with p = (1/2, 1/2), q = softmax(1, 0): log 1/2 - (log q1 + log q2) / 2
    log_q1, log_q2 = 1 - math.log(1 + math.e), -math.log(1 + math.e)
    expected = math.log(0.5) - 0.5 * (log_q1 + log_q2)
    assert float(trajectory_kl(out, past, tau=1.0)) == pytest.approx(expected, rel=1e-12)
    # tau scales the logits and multiplies by tau^2
    tau = 2.0
    lq1, lq2 = 0.5 - math.log(1 + math.exp(0.5)), -math.log(1 + math.exp(0.5))
    assert float(trajectory_kl(out, past, tau)) == pytest.approx(tau**2 * (math.log(0.5) - 0.5 * (lq1 + lq2)))
    assert float(trajectory_kl(out, out.clone(), 5.0)) == pytest.approx(0.0, abs=1e-15)


def test_saf_step_hand_example():
    w = _w(0.0, 0.0)  # the "model" outputs its two parameters as logits for one sample
    opt = SAF([w], torch.optim.SGD, n_samples=1, n_outputs=2, lam=1.0, tau=1.0, lag=1, warmup=0, lr=0.1)
    opt.set_epoch(1)
    loss = opt.trajectory_loss(w[None], torch.tensor([0]))  # nothing recorded yet: no loss
    assert float(loss.detach()) == 0.0
    with torch.no_grad():
        w.copy_(torch.tensor([1.0, 0.0]))
    opt.set_epoch(2)  # compares with the outputs recorded one epoch before: (0, 0)
    opt.zero_grad()
    loss = opt.trajectory_loss(w[None], torch.tensor([0]))
    loss.backward()
    q1 = math.e / (1 + math.e)
    # d/dz KL(p || softmax(z)) = softmax(z) - p
    assert w.grad.tolist() == pytest.approx([q1 - 0.5, 0.5 - q1], rel=1e-12)
    opt.step()
    assert w.tolist() == pytest.approx([1 - 0.1 * (q1 - 0.5), -0.1 * (0.5 - q1)], rel=1e-12)


def test_saf_loss_zero_when_outputs_do_not_change():
    out = torch.tensor([[0.3, -1.2, 2.0], [1.0, 0.5, -0.5]], dtype=torch.float64, requires_grad=True)
    opt = SAF([torch.nn.Parameter(torch.zeros(1))], torch.optim.SGD, n_samples=2, n_outputs=3, lag=2,
              warmup=1, lr=0.1)
    for epoch in range(1, 6):
        opt.set_epoch(epoch)
        loss = opt.trajectory_loss(out, torch.tensor([1, 0]))
        assert float(loss.detach()) == pytest.approx(0.0, abs=1e-14)
        (g,) = torch.autograd.grad(loss, out, allow_unused=True, materialize_grads=True)
        assert torch.allclose(g, torch.zeros_like(g), atol=1e-14)
    # and not zero once they do change
    opt.set_epoch(6)
    assert float(opt.trajectory_loss(out * 2, torch.tensor([1, 0])).detach()) > 1e-3


def test_saf_rejects_bad_indices():
    opt = SAF([torch.nn.Parameter(torch.zeros(1))], torch.optim.SGD, n_samples=2, n_outputs=3, lr=0.1)
    with pytest.raises(IndexError):
        opt.trajectory_loss(torch.zeros(1, 3), torch.tensor([5]))
    with pytest.raises(ValueError):
        opt.trajectory_loss(torch.zeros(2, 3), torch.tensor([0]))


def test_mesa_step_ema_and_loss_hand_example():
    w = _w(1.0, 0.0)
    opt = MESA([w], torch.optim.SGD, decay=0.5, lam=1.0, tau=1.0, warmup=0, lr=0.1)
    opt.set_epoch(1)
    opt.zero_grad()
    loss = 0.5 * ((w - torch.tensor([0.0, 2.0], dtype=torch.float64)) ** 2).sum()  # grad = w - (0, 2)
    loss.backward()
    opt.step()
    assert w.tolist() == pytest.approx([0.9, 0.2])
    ema = opt.state[w]["ema"]
    assert ema.tolist() == pytest.approx([0.95, 0.1])  # 0.5 * (1, 0) + 0.5 * (0.9, 0.2)
    with torch.no_grad(), opt.averaged():
        assert w.tolist() == pytest.approx([0.95, 0.1])
        target = w[None].clone()
    assert w.tolist() == pytest.approx([0.9, 0.2])  # restored
    kl = float(opt.trajectory_loss(w[None], target).detach())
    p = np.exp([0.95, 0.1]) / np.exp([0.95, 0.1]).sum()
    q = np.exp([0.9, 0.2]) / np.exp([0.9, 0.2]).sum()
    assert kl == pytest.approx(float((p * np.log(p / q)).sum()), rel=1e-10)
    assert float(opt.trajectory_loss(w[None], w[None].detach()).detach()) == pytest.approx(0.0, abs=1e-15)


def test_mesa_inactive_during_warmup():
    w = _w(1.0, 0.0)
    opt = MESA([w], torch.optim.SGD, warmup=2, lr=0.1)
    opt.set_epoch(2)
    assert float(opt.trajectory_loss(w[None], torch.zeros(1, 2, dtype=torch.float64)).detach()) == 0.0
    opt.set_epoch(3)
    assert float(opt.trajectory_loss(w[None], torch.zeros(1, 2, dtype=torch.float64)).detach()) > 0.0


def test_noise_injection_step_hand_example():
    w = _w(1.0, -2.0)
    clean = _w(3.0, 4.0)
    sigma = 0.1
    opt = NoiseInjection([{"params": [w]}, {"params": [clean], "sigma": 0.0}], torch.optim.SGD, sigma=sigma,
                         generator=torch.Generator().manual_seed(123), lr=0.1)
    seen = {}

    def closure():
        opt.zero_grad()
        seen["w"], seen["clean"] = w.detach().clone(), clean.detach().clone()
        loss = 0.5 * (w**2).sum() + 0.5 * (clean**2).sum()  # gradient = the (perturbed) parameters
        loss.backward()
        return loss

    opt.step(closure)
    n = torch.randn(2, generator=torch.Generator().manual_seed(123), dtype=torch.float64) * sigma
    assert seen["w"].tolist() == pytest.approx((torch.tensor([1.0, -2.0], dtype=torch.float64) + n).tolist())
    assert seen["clean"].tolist() == [3.0, 4.0]
    # restored before the step, then stepped with the gradient taken at w + n
    expected = torch.tensor([1.0, -2.0], dtype=torch.float64) - 0.1 * (torch.tensor([1.0, -2.0], dtype=torch.float64) + n)
    assert w.tolist() == pytest.approx(expected.tolist(), rel=1e-12)
    assert clean.tolist() == pytest.approx([3.0 - 0.3, 4.0 - 0.4])
    with pytest.raises(ValueError):
        opt.step()


def test_asam_step_hand_example():
    # L = 0.5 (2 w1^2 + w2^2) at w = (1, 2): g = (2, 2); ASAM e = rho w^2 g / ||w g|| = rho (2, 8) / sqrt(20)
    w = _w(1.0, 2.0)
    rho = 0.1
    opt = SAM([w], torch.optim.SGD, rho=rho, adaptive=True, eta=0.0, lr=0.5)  # the hand example is for eta = 0

    def closure():
        opt.zero_grad()
        loss = 0.5 * (2 * w[0] ** 2 + w[1] ** 2)
        loss.backward()
        return loss

    opt.step(closure)
    e = rho * np.array([2.0, 8.0]) / math.sqrt(20.0)
    g_sam = np.array([2 * (1 + e[0]), 2 + e[1]])
    assert w.tolist() == pytest.approx((np.array([1.0, 2.0]) - 0.5 * g_sam).tolist(), rel=1e-12)


def test_sharpness_on_a_quadratic():
    w = _w(0.1, 0.1)
    model = torch.nn.Module()
    model.w = w
    h = torch.tensor([3.0, 1.0], dtype=torch.float64)
    loss_fn = lambda: 0.5 * (h * w**2).sum()  # noqa: E731
    assert top_hessian_eigenvalue(model, loss_fn, iters=50) == pytest.approx(3.0, rel=1e-3)
    rho = 0.5
    r = max_loss_increase(model, loss_fn, rho, n_random=10, adversarial_steps=10)
    g = float(torch.linalg.norm(h * w.detach()))
    sam_value = float(0.5 * (h * (w.detach() + rho * h * w.detach() / g) ** 2).sum()) - r["base"]
    assert r["base"] == pytest.approx(0.5 * (3 * 0.01 + 0.01))
    assert r["adversarial"] >= sam_value - 1e-12
    assert r["adversarial"] <= g * rho + 0.5 * 3 * rho**2 + 1e-12
    assert 0 < r["random"] <= r["adversarial"] + 1e-12
    assert w.tolist() == [0.1, 0.1]  # parameters untouched


def test_partial_sam_radius_over_perturbed_groups_only():
    # L = 0.5 (w^2 + 4 v^2) at w = 3, v = 1: g = (3, 4). Only w is perturbed, by exactly rho (not rho*3/5).
    from labsat.sat import PartialSAM

    w, v = _w(3.0), _w(1.0)
    rho = 0.2
    opt = PartialSAM([{"params": [w]}, {"params": [v], "rho": 0.0}], torch.optim.SGD, rho=rho, lr=0.1)
    seen = []

    def closure():
        opt.zero_grad()
        seen.append((w.item(), v.item()))
        loss = 0.5 * (w[0] ** 2 + 4 * v[0] ** 2)
        loss.backward()
        return loss

    opt.step(closure)
    assert seen[1] == pytest.approx((3.0 + rho, 1.0))
    assert w.item() == pytest.approx(3.0 - 0.1 * (3.0 + rho))
    assert v.item() == pytest.approx(1.0 - 0.1 * 4.0)
