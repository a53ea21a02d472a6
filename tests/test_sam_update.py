"""SAM's step follows the paper's update whatever the closure does about gradients; ASAM's eta default."""
from __future__ import annotations

import torch

from labsat.sat import SAM

A = torch.tensor([[3.0, 0.5], [0.5, 1.0]], dtype=torch.float64)
B = torch.tensor([1.0, -2.0], dtype=torch.float64)


def loss_of(w):
    return 0.5 * w @ A @ w - B @ w


def grad_of(w):
    return A @ w - B


def paper_sam(w0, steps, rho=0.1, lr=0.1):
    """Foret et al.: e = rho g/||g||, w <- w - lr grad L(w + e); plain SGD base."""
    w = w0.clone()
    for _ in range(steps):
        g = grad_of(w)
        e = rho * g / g.norm()
        w = w - lr * grad_of(w + e)
    return w


def test_closure_that_does_not_zero_matches_the_paper_update():
    w0 = torch.tensor([0.3, 1.7], dtype=torch.float64)
    w = w0.clone().requires_grad_(True)
    opt = SAM([w], torch.optim.SGD, rho=0.1, lr=0.1)

    def closure():  # no zero_grad: the step must do it
        loss = loss_of(w)
        loss.backward()
        return loss

    for _ in range(5):
        opt.step(closure)
    torch.testing.assert_close(w.detach(), paper_sam(w0, 5), rtol=0, atol=1e-12)


def test_asam_default_eta_perturbs_a_parameter_at_zero():
    w = torch.tensor([0.0, 1.0], dtype=torch.float64, requires_grad=True)  # grad at w0: -0.5
    opt = SAM([w], torch.optim.SGD, rho=0.1, adaptive=True, lr=0.1)
    assert opt.param_groups[0]["eta"] == 0.01  # Kwon et al. 2021
    loss_of(w).backward()
    opt.first_step()
    assert w[0].item() != 0.0  # T = |0| + eta > 0: the zero control moves
