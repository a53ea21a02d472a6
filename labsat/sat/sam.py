"""Sharpness-Aware Minimization (Foret et al. 2021) and its adaptive form ASAM (Kwon et al. 2021).

A wrapper around any torch optimizer. Per step:

1. ``g = grad L(w)``; ``e = rho * g / ||g||`` (SAM) or ``e = rho * T^2 g / ||T g||`` with
   ``T = |w| + eta`` (ASAM); ``w <- w + e``  (:meth:`first_step`)
2. ``g_sam = grad L(w + e)``; ``w <- w - e``; base optimizer step with ``g_sam``  (:meth:`second_step`)

The norm is global over all parameters. Two gradient evaluations per step. ASAM's ``eta`` defaults
to 0.01 (Kwon et al. 2021), so a parameter at exactly 0 is still perturbed.
"""
from __future__ import annotations

import contextlib
from typing import Callable

import torch


class SAM(torch.optim.Optimizer):
    norm_over_perturbed = False  # the ascent's norm over all groups (PartialSAM: over those with rho > 0)

    def __init__(self, params, base_optimizer: Callable[..., torch.optim.Optimizer], rho: float = 0.05,
                 adaptive: bool = False, eta: float = 0.01, **base_kwargs):
        if rho < 0:
            raise ValueError(f"rho must be non-negative, got {rho}")
        defaults = dict(rho=rho, adaptive=adaptive, eta=eta, **base_kwargs)
        super().__init__(params, defaults)
        # online physics-aware training: take the perturbed (w + e) pass on the twin, not the hardware
        # (one hardware forward per step); offline it makes no difference
        self.twin_perturbed = False
        self.base_optimizer = base_optimizer(self.param_groups, **base_kwargs)
        self.param_groups = self.base_optimizer.param_groups
        self.defaults.update(self.base_optimizer.defaults)

    def _scale(self, p: torch.Tensor, group: dict) -> torch.Tensor:
        return (p.abs() + group["eta"]) if group["adaptive"] else torch.ones_like(p)

    def _grad_norm(self) -> torch.Tensor:
        norms = [(self._scale(p, g) * p.grad).norm(p=2)
                 for g in self.param_groups for p in g["params"] if p.grad is not None]
        if not norms:
            return torch.tensor(0.0)
        return torch.stack(norms).norm(p=2)

    @torch.no_grad()
    def first_step(self, zero_grad: bool = False) -> None:
        """Move to the worst case within radius rho, remembering where we were."""
        norm = self._grad_norm()
        for group in self.param_groups:
            factor = group["rho"] / (norm + 1e-12)
            for p in group["params"]:
                if p.grad is None:
                    continue
                e = self._scale(p, group) ** 2 * p.grad * factor
                p.add_(e)
                self.state[p]["e"] = e
        if zero_grad:
            self.zero_grad()

    @torch.no_grad()
    def second_step(self, zero_grad: bool = False) -> None:
        """Return to the original weights and step with the gradient taken at the perturbed ones."""
        for group in self.param_groups:
            for p in group["params"]:
                e = self.state[p].pop("e", None)
                if e is not None:
                    p.sub_(e)
        self.base_optimizer.step()
        if zero_grad:
            self.zero_grad()

    def step(self, closure=None):
        """Full SAM step. ``closure`` computes the loss and calls ``backward()``; it need not zero the
        gradients: the step zeroes them before each of its two passes, so neither the previous step's
        perturbed gradient nor the clean gradient leaks into the update (the paper's update exactly)."""
        if closure is None:
            raise ValueError("SAM needs a closure that recomputes the loss and its gradient")
        closure = torch.enable_grad()(closure)
        self.zero_grad()
        loss = closure()
        self.first_step(zero_grad=True)
        closure()
        self.second_step()
        return loss

    @contextlib.contextmanager
    def _ascent_only(self):
        """The clean pass's gradient only sets the ascent e; with the norm over the perturbed groups
        (PartialSAM) a group with ``rho = 0`` (the digital readout) plays no part in it, so its gradient is
        not computed there (batch 6000, the readout's float64 weight gradient: one (10, 6000) x (6000, 64)
        matmul per step). Its e is 0 either way; the updates are the same bit for bit."""
        fixed = [p for g in self.param_groups if g["rho"] == 0 for p in g["params"] if p.requires_grad]
        if not self.norm_over_perturbed:  # SAM's norm counts every group's gradient: all are needed
            fixed = []
        for p in fixed:
            p.requires_grad_(False)
        try:
            yield
        finally:
            for p in fixed:
                p.requires_grad_(True)

    def step_batch(self, batch):
        """The step protocol (:mod:`labsat.sat.step`): clean pass (its gradient sets the ascent only:
        ``batch.ascent``), ascent, perturbed pass (on the twin when ``twin_perturbed``), descent from the
        original weights."""
        with self._ascent_only(), batch.ascent():
            loss, out = batch.forward_backward(self)
        self.first_step(zero_grad=True)
        with batch.on_twin(gradient_only=True) if self.twin_perturbed else contextlib.nullcontext():
            batch.forward_backward(self)
        self.second_step()
        return loss, out.detach()
