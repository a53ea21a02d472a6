"""SAM / ASAM steps against a hand-computed two-parameter example.

L(w) = 0.5 w^T A w with A = [[3, 1], [1, 2]], w = (1, -2), rho = 0.1, SGD base with lr = 0.1.
  g = A w = (1, -3), ||g|| = sqrt(10)
SAM:  e = rho g / ||g|| = (0.1 / sqrt(10)) (1, -3);  A e = (0.1 / sqrt(10)) (0, -5)
      g_sam = g + A e = (1, -3 - 0.5 / sqrt(10)) = (1, -3.158113883)
      w' = w - lr g_sam = (0.9, -1.684188612)
ASAM (eta = 0): T = |w| = (1, 2); T g = (1, -6), ||T g|| = sqrt(37); e = rho T^2 g / ||T g|| = (0.1 / sqrt(37)) (1, -12)
      A e = (0.1 / sqrt(37)) (-9, -23) = (-0.147959, -0.378118)
      g_sam = (0.852040909, -3.378117671);  w' = (0.914795909, -1.662188233)
"""
from __future__ import annotations

import pytest
import torch

from labsat.sat import SAM

A = torch.tensor([[3.0, 1.0], [1.0, 2.0]], dtype=torch.float64)
W0 = (1.0, -2.0)


def loss_of(*params):
    w = torch.cat([p.reshape(-1) for p in params])
    return 0.5 * w @ A @ w


def make_closure(opt, params, calls=None):
    def closure():
        opt.zero_grad()
        loss = loss_of(*params)
        loss.backward()
        if calls is not None:
            calls.append([p.detach().clone() for p in params])
        return loss
    return closure


def test_sam_step_hand_computed():
    w = torch.tensor(W0, dtype=torch.float64, requires_grad=True)
    opt = SAM([w], torch.optim.SGD, rho=0.1, lr=0.1)
    calls = []
    loss = opt.step(make_closure(opt, [w], calls))
    assert loss.item() == pytest.approx(0.5 * (3 * 1 + 2 * 1 * (-2) + 2 * 4))  # L(w0) = 3.5
    # the second gradient was taken at w + e
    e = 0.1 / 10**0.5 * torch.tensor([1.0, -3.0], dtype=torch.float64)
    assert len(calls) == 2
    torch.testing.assert_close(calls[0][0], torch.tensor(W0, dtype=torch.float64))
    torch.testing.assert_close(calls[1][0], torch.tensor(W0, dtype=torch.float64) + e)
    torch.testing.assert_close(w.detach(), torch.tensor([0.9, -1.684188612], dtype=torch.float64),
                               rtol=0, atol=1e-9)


def test_asam_step_hand_computed():
    w = torch.tensor(W0, dtype=torch.float64, requires_grad=True)
    opt = SAM([w], torch.optim.SGD, rho=0.1, adaptive=True, eta=0.0, lr=0.1)
    calls = []
    opt.step(make_closure(opt, [w], calls))
    e = 0.1 / 37**0.5 * torch.tensor([1.0, -12.0], dtype=torch.float64)
    torch.testing.assert_close(calls[1][0], torch.tensor(W0, dtype=torch.float64) + e)
    torch.testing.assert_close(w.detach(), torch.tensor([0.914795909, -1.662188233], dtype=torch.float64),
                               rtol=0, atol=1e-9)


def test_asam_eta_offsets_the_scale():
    """eta = 1: T = |w| + 1 = (2, 3); T g = (2, -9); e = rho (4, -27) / sqrt(85)."""
    w = torch.tensor(W0, dtype=torch.float64, requires_grad=True)
    opt = SAM([w], torch.optim.SGD, rho=0.1, adaptive=True, eta=1.0, lr=0.1)
    calls = []
    opt.step(make_closure(opt, [w], calls))
    e = 0.1 / 85**0.5 * torch.tensor([4.0, -27.0], dtype=torch.float64)
    torch.testing.assert_close(calls[1][0], torch.tensor(W0, dtype=torch.float64) + e)
    g_sam = A @ (torch.tensor(W0, dtype=torch.float64) + e)
    torch.testing.assert_close(w.detach(), torch.tensor(W0, dtype=torch.float64) - 0.1 * g_sam)


def test_norm_is_global_over_parameters():
    """Splitting w into two tensors (and two param groups) gives the same step as one tensor."""
    w1 = torch.tensor([W0[0]], dtype=torch.float64, requires_grad=True)
    w2 = torch.tensor([W0[1]], dtype=torch.float64, requires_grad=True)
    opt = SAM([{"params": [w1]}, {"params": [w2]}], torch.optim.SGD, rho=0.1, lr=0.1)
    opt.step(make_closure(opt, [w1, w2]))
    torch.testing.assert_close(torch.cat([w1, w2]).detach(),
                               torch.tensor([0.9, -1.684188612], dtype=torch.float64), rtol=0, atol=1e-9)


@pytest.mark.parametrize("base, kwargs", [(torch.optim.SGD, dict(lr=0.1, momentum=0.9)),
                                          (torch.optim.Adam, dict(lr=0.05))])
def test_rho_zero_is_the_base_optimizer(base, kwargs):
    w_sam = torch.tensor(W0, dtype=torch.float64, requires_grad=True)
    w_ref = torch.tensor(W0, dtype=torch.float64, requires_grad=True)
    sam = SAM([w_sam], base, rho=0.0, **kwargs)
    ref = base([w_ref], **kwargs)
    for _ in range(4):
        sam.step(make_closure(sam, [w_sam]))
        make_closure(ref, [w_ref])()
        ref.step()
    torch.testing.assert_close(w_sam.detach(), w_ref.detach(), rtol=0, atol=1e-12)
    assert not torch.equal(w_sam.detach(), torch.tensor(W0, dtype=torch.float64))  # it did move


def test_sam_differs_from_base_when_rho_positive():
    w_sam = torch.tensor(W0, dtype=torch.float64, requires_grad=True)
    w_ref = torch.tensor(W0, dtype=torch.float64, requires_grad=True)
    sam = SAM([w_sam], torch.optim.SGD, rho=0.1, lr=0.1)
    ref = torch.optim.SGD([w_ref], lr=0.1)
    sam.step(make_closure(sam, [w_sam]))
    make_closure(ref, [w_ref])()
    ref.step()
    torch.testing.assert_close(w_ref.detach(), torch.tensor([0.9, -1.7], dtype=torch.float64))
    assert abs(w_sam[1].item() - w_ref[1].item()) > 0.01


def test_closure_required():
    w = torch.tensor(W0, dtype=torch.float64, requires_grad=True)
    opt = SAM([w], torch.optim.SGD, lr=0.1)
    with pytest.raises(ValueError, match="closure"):
        opt.step()


def test_negative_rho_refused():
    w = torch.tensor(W0, dtype=torch.float64, requires_grad=True)
    with pytest.raises(ValueError, match="rho must be non-negative"):
        SAM([w], torch.optim.SGD, rho=-0.1, lr=0.1)


def test_zero_gradient_is_a_fixed_point():
    w = torch.zeros(2, dtype=torch.float64, requires_grad=True)
    opt = SAM([w], torch.optim.SGD, rho=0.1, lr=0.1)
    opt.step(make_closure(opt, [w]))
    assert torch.all(torch.isfinite(w)) and torch.equal(w.detach(), torch.zeros(2, dtype=torch.float64))


def test_two_step_api_and_param_without_grad():
    """first_step / second_step return to w before the base step; a parameter without grad is left alone."""
    w = torch.tensor(W0, dtype=torch.float64, requires_grad=True)
    frozen = torch.tensor([5.0], dtype=torch.float64, requires_grad=True)
    opt = SAM([w, frozen], torch.optim.SGD, rho=0.1, lr=0.0)  # lr = 0: the base step is a no-op
    loss_of(w).backward()
    opt.first_step(zero_grad=True)
    assert not torch.equal(w.detach(), torch.tensor(W0, dtype=torch.float64))
    loss_of(w).backward()
    opt.second_step(zero_grad=True)
    torch.testing.assert_close(w.detach(), torch.tensor(W0, dtype=torch.float64))
    assert frozen.item() == 5.0 and frozen.grad is None
    assert w.grad is None or torch.all(w.grad == 0)
