"""The step protocol every optimizer of labsat shares, so the training loop has no per-optimizer branch.

``train()`` hands each optimizer a :class:`Batch` and calls :func:`step_batch`: an optimizer with a
``step_batch(batch) -> (loss, outputs)`` method (SAM/ASAM, SAF, MESA, noise injection) takes its own
passes; any other torch optimizer gets :func:`plain_step` (one forward, one backward, one step). The
returned outputs are those of the unperturbed (first) pass, for the training accuracy.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable, Iterator

import torch


@dataclass
class Batch:
    model: torch.nn.Module
    x: torch.Tensor
    y: torch.Tensor
    idx: torch.Tensor  # the samples' indices in the training set (SAF remembers outputs per sample)
    loss_fn: Callable

    @contextlib.contextmanager
    def on_twin(self, gradient_only: bool = False) -> Iterator[None]:
        """Within the block the physical layer runs on its twin (no hardware forward). ``gradient_only``:
        the pass stands in for a hardware one and only its gradient is used (SAM's perturbed pass), so the
        twin may compute it in the layer's ``backward_dtype``."""
        physical = getattr(self.model, "physical", None)
        if physical is None:
            yield
            return
        flag, grad_only = physical.use_hardware, getattr(physical, "gradient_pass", None)
        physical.use_hardware = False
        if flag and grad_only is not None:
            physical.gradient_pass = gradient_only
        try:
            yield
        finally:
            physical.use_hardware = flag
            if flag and grad_only is not None:
                physical.gradient_pass = grad_only

    @contextlib.contextmanager
    def ascent(self) -> Iterator[None]:
        """Within the block the pass's gradient only sets SAM's ascent direction e (the clean pass): on the
        hardware, the layer hands its readings on in its ``backward_dtype`` (float32 for a mesh) and the readout
        and loss follow in it, as in the perturbed pass. The pass's loss (reported) and outputs (training
        accuracy) then carry float32 rounding, ~1e-7 relative, far below the detectors' noise (~1e-2)."""
        physical = getattr(self.model, "physical", None)
        if physical is None or not physical.use_hardware or getattr(physical, "gradient_pass", None) is None:
            yield
            return
        grad_only, physical.gradient_pass = physical.gradient_pass, True
        try:
            yield
        finally:
            physical.gradient_pass = grad_only

    def forward_backward(self, opt, extra: Callable | None = None):
        """Zero the gradients, forward, loss (+ ``extra(outputs)``), backward: ``(loss, outputs)``."""
        opt.zero_grad()
        with torch.enable_grad():
            out = self.model(self.x)
            loss = self.loss_fn(out, self.y)
            if extra is not None:
                loss = loss + extra(out)
            loss.backward()
        return loss, out


def plain_step(opt: torch.optim.Optimizer, batch: Batch):
    loss, out = batch.forward_backward(opt)
    opt.step()
    return loss, out.detach()


def step_batch(opt: torch.optim.Optimizer, batch: Batch):
    """One optimisation step on ``batch``: ``(loss, outputs of the unperturbed pass)``."""
    own = getattr(opt, "step_batch", None)
    return own(batch) if own is not None else plain_step(opt, batch)
