"""Noise-injection training: the usual robustness baseline in analog computing.

Each step draws a random perturbation ``n ~ N(0, sigma^2)`` per parameter element (``sigma`` per
parameter group, so the digital parts of a hybrid network can be left clean with ``sigma = 0``),
evaluates the gradient at ``w + n``, restores ``w`` and lets the base optimizer step with that
gradient. One gradient evaluation per step (SAM's perturbation is the worst case; this one is random).
"""
from __future__ import annotations

from typing import Callable

import torch


class NoiseInjection(torch.optim.Optimizer):
    def __init__(self, params, base_optimizer: Callable[..., torch.optim.Optimizer], sigma: float = 0.01,
                 generator: torch.Generator | None = None, **base_kwargs):
        if sigma < 0:
            raise ValueError(f"sigma must be non-negative, got {sigma}")
        super().__init__(params, dict(sigma=sigma, **base_kwargs))
        self.base_optimizer = base_optimizer(self.param_groups, **base_kwargs)
        self.param_groups = self.base_optimizer.param_groups
        self.defaults.update(self.base_optimizer.defaults)
        self.generator = generator

    @torch.no_grad()
    def perturb(self) -> None:
        """Add fresh noise to every parameter (remembered, so :meth:`restore` removes exactly it)."""
        for group in self.param_groups:
            for p in group["params"]:
                if group["sigma"] == 0:
                    continue
                n = torch.randn(p.shape, generator=self.generator, dtype=p.dtype, device=p.device) * group["sigma"]
                p.add_(n)
                self.state[p]["noise"] = n

    @torch.no_grad()
    def restore(self) -> None:
        for group in self.param_groups:
            for p in group["params"]:
                n = self.state[p].pop("noise", None)
                if n is not None:
                    p.sub_(n)

    def step(self, closure=None):
        """``closure`` must zero the gradients, compute the loss and call ``backward()``."""
        if closure is None:
            raise ValueError("NoiseInjection needs a closure that computes the loss and its gradient")
        self.perturb()
        try:
            with torch.enable_grad():
                loss = closure()
        finally:
            self.restore()
        self.base_optimizer.step()
        return loss

    def step_batch(self, batch):
        """The step protocol (:mod:`labsat.sat.step`): one pass at ``w + n``, base step at ``w``."""
        seen = {}

        def closure():
            loss, seen["out"] = batch.forward_backward(self)
            return loss

        loss = self.step(closure)
        return loss, seen["out"].detach()
