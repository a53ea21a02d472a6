"""Loss-landscape sharpness of a trained model, measured (on whatever the model's forward runs on,
for a physical network normally the twin).

- :func:`max_loss_increase`: ``max_{||e|| <= rho} L(w + e) - L(w)`` estimated from below by the best of
  ``n_random`` random directions on the sphere of radius rho and by projected gradient ascent
  (``adversarial_steps`` steps, started from the SAM direction ``rho g / ||g||``).
- :func:`top_hessian_eigenvalue`: the largest-magnitude eigenvalue of the Hessian of the loss in the
  chosen parameters, by power iteration on Hessian-vector products (double backward).

``params`` selects the parameters (default: all that require grad). The model's parameters are left
exactly as they were.
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import nn

LossFn = Callable[[], torch.Tensor]


def _params(model: nn.Module, params: Sequence[torch.Tensor] | None) -> list[torch.Tensor]:
    ps = list(params) if params is not None else [p for p in model.parameters() if p.requires_grad]
    if not ps:
        raise ValueError("no parameters to measure sharpness in")
    return ps


def _norm(vs: Sequence[torch.Tensor]) -> torch.Tensor:
    return torch.sqrt(sum((v.double() ** 2).sum() for v in vs))


@torch.no_grad()
def _restore(ps: Sequence[torch.Tensor], saved: Sequence[torch.Tensor]) -> None:
    for p, v in zip(ps, saved):
        p.copy_(v)


@torch.no_grad()
def _shift(ps: Sequence[torch.Tensor], vs: Sequence[torch.Tensor], alpha: float = 1.0) -> None:
    for p, v in zip(ps, vs):
        p.add_(v, alpha=alpha)


def max_loss_increase(model: nn.Module, loss_fn: LossFn, rho: float, n_random: int = 20,
                      adversarial_steps: int = 5, params: Sequence[torch.Tensor] | None = None,
                      seed: int = 0) -> dict[str, float]:
    """Loss increase within the L2 ball of radius ``rho``: ``{'base', 'random', 'adversarial'}``."""
    if rho < 0:
        raise ValueError(f"rho must be non-negative, got {rho}")
    ps = _params(model, params)
    g = torch.Generator().manual_seed(seed)
    saved = [p.detach().clone() for p in ps]
    with torch.no_grad():
        base = float(loss_fn())
    worst_random = 0.0
    for _ in range(n_random):
        d = [torch.randn(p.shape, generator=g, dtype=p.dtype) for p in ps]
        scale = rho / float(_norm(d))
        d = [v * scale for v in d]
        _shift(ps, d)
        try:
            with torch.no_grad():
                worst_random = max(worst_random, float(loss_fn()) - base)
        finally:
            _restore(ps, saved)
    # projected gradient ascent in the ball
    e = [torch.zeros_like(p) for p in ps]
    worst_adv = 0.0
    step = rho if adversarial_steps <= 1 else 2.0 * rho / adversarial_steps
    for k in range(adversarial_steps):
        _shift(ps, e)
        try:
            with torch.enable_grad():
                loss = loss_fn()
                grads = torch.autograd.grad(loss, ps, allow_unused=True)
            worst_adv = max(worst_adv, float(loss.detach()) - base)
        finally:
            _restore(ps, saved)
        grads = [torch.zeros_like(p) if gr is None else gr for p, gr in zip(ps, grads)]
        gn = float(_norm(grads))
        if gn == 0.0:
            break
        lr = rho if k == 0 else step
        e = [ei + lr * gi / gn for ei, gi in zip(e, grads)]
        en = float(_norm(e))
        if en > rho:
            e = [ei * (rho / en) for ei in e]
    if adversarial_steps:
        _shift(ps, e)
        try:
            with torch.no_grad():
                worst_adv = max(worst_adv, float(loss_fn()) - base)
        finally:
            _restore(ps, saved)
    return {"base": base, "random": worst_random, "adversarial": worst_adv}


def hessian_vector_product(loss_fn: LossFn, ps: Sequence[torch.Tensor], vs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    with torch.enable_grad():
        loss = loss_fn()
        grads = torch.autograd.grad(loss, ps, create_graph=True, allow_unused=True)
        pairs = [(gr, v) for gr, v in zip(grads, vs) if gr is not None and gr.requires_grad]
        if not pairs:
            return [torch.zeros_like(p) for p in ps]
        dot = sum((gr * v).sum() for gr, v in pairs)
        hv = torch.autograd.grad(dot, ps, allow_unused=True)
    return [torch.zeros_like(p) if h is None else h.detach() for p, h in zip(ps, hv)]


def top_hessian_eigenvalue(model: nn.Module, loss_fn: LossFn, iters: int = 30, tol: float = 1e-4,
                           params: Sequence[torch.Tensor] | None = None, seed: int = 0) -> float:
    """Largest-magnitude Hessian eigenvalue (signed) by power iteration."""
    ps = _params(model, params)
    g = torch.Generator().manual_seed(seed)
    v = [torch.randn(p.shape, generator=g, dtype=p.dtype) for p in ps]
    n = float(_norm(v))
    v = [x / n for x in v]
    eig = 0.0
    for i in range(iters):
        hv = hessian_vector_product(loss_fn, ps, v)
        new = float(sum((a * b).sum() for a, b in zip(hv, v)))  # Rayleigh quotient
        n = float(_norm(hv))
        if n == 0.0:
            return 0.0
        v = [x / n for x in hv]
        if i > 0 and abs(new - eig) <= tol * max(1.0, abs(eig)):
            return new
        eig = new
    return eig
