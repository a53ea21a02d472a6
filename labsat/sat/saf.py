"""Sharpness-Aware training for Free (SAF) and its memory-efficient form MESA (Du et al., NeurIPS 2022).

Both replace SAM's second gradient evaluation with a *trajectory loss*: the current outputs are pulled
towards soft targets that the model itself produced earlier on its trajectory,

    L = CE + lam * tau^2 * KL( softmax(y_past / tau) || softmax(y / tau) ),

which penalises the directions in which the loss changes fast (the sharp ones), at about the cost of
one forward/backward per step.

- :class:`SAF`: ``y_past`` is what the *same sample* produced ``lag`` epochs earlier. The outputs of
  every sample are kept in a ring buffer of ``lag + 1`` epochs (memory grows with the data set), so
  the training loop must pass the samples' indices.
- :class:`MESA`: ``y_past`` is the output of an exponential moving average (EMA) of the weights on the
  current batch (one extra forward, no per-sample memory). :meth:`MESA.averaged` swaps the EMA weights
  in for that forward, so the caller chooses where it runs (for a physical network: on the twin).

Both are wrappers around any torch optimizer, like :class:`labsat.sat.SAM`: ``step()`` is the base
optimizer's step (MESA also updates the EMA). The loss is active from the epoch after ``warmup``
(the paper's ``kl_start_epoch``); call :meth:`set_epoch` at the start of every epoch (1-based).
"""
from __future__ import annotations

import contextlib
from typing import Callable

import torch
import torch.nn.functional as F


def trajectory_kl(outputs: torch.Tensor, past: torch.Tensor, tau: float) -> torch.Tensor:
    """``tau^2 * KL(softmax(past/tau) || softmax(outputs/tau))``, summed over classes, mean over rows.

    Zero when ``outputs == past``; gradients flow into ``outputs`` only.
    """
    if outputs.shape != past.shape:
        raise ValueError(f"outputs {tuple(outputs.shape)} and past outputs {tuple(past.shape)} differ in shape")
    if len(outputs) == 0:
        return outputs.sum() * 0.0
    log_q = F.log_softmax(outputs / tau, dim=-1)
    log_p = F.log_softmax(past.detach().to(outputs.dtype) / tau, dim=-1)
    kl = (log_p.exp() * (log_p - log_q)).sum(-1).mean()
    return kl * tau**2


class _Wrapper(torch.optim.Optimizer):
    """Shared part: wrap a base optimizer built on the same parameter groups."""

    def __init__(self, params, base_optimizer: Callable[..., torch.optim.Optimizer], defaults: dict,
                 base_kwargs: dict):
        super().__init__(params, {**defaults, **base_kwargs})
        self.base_optimizer = base_optimizer(self.param_groups, **base_kwargs)
        self.param_groups = self.base_optimizer.param_groups
        self.defaults.update(self.base_optimizer.defaults)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Tell the optimizer which epoch (1-based) the next steps belong to."""
        if epoch < 0:
            raise ValueError(f"epoch must be >= 0, got {epoch}")
        self.epoch = int(epoch)

    @property
    def active(self) -> bool:
        """Whether the trajectory loss is on (after the warm-up epochs)."""
        return self.epoch > self.defaults["warmup"]

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        self.base_optimizer.step()
        return loss


class SAF(_Wrapper):
    """SAF: trajectory loss against the same sample's outputs from ``lag`` epochs before.

    ``n_samples``: size of the training set (indices run over ``0..n_samples-1``);
    ``n_outputs``: width of the model's output (classes). ``lam`` and ``tau`` as in the paper (defaults
    0.3 and 5); ``lag`` is the paper's ``E~`` (2 or 3); ``warmup``: epochs without the loss.
    """

    def __init__(self, params, base_optimizer, n_samples: int, n_outputs: int, lam: float = 0.3,
                 tau: float = 5.0, lag: int = 2, warmup: int = 1, **base_kwargs):
        if n_samples < 1 or n_outputs < 1:
            raise ValueError("n_samples and n_outputs must be positive")
        if lam < 0 or tau <= 0 or lag < 1 or warmup < 0:
            raise ValueError("SAF needs lam >= 0, tau > 0, lag >= 1 and warmup >= 0")
        super().__init__(params, base_optimizer, dict(lam=lam, tau=tau, lag=lag, warmup=warmup), base_kwargs)
        self.memory = torch.zeros(n_samples, lag + 1, n_outputs, dtype=torch.float64)
        self.recorded_epoch = torch.full((n_samples, lag + 1), -1, dtype=torch.long)

    def trajectory_loss(self, outputs: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
        """Record ``outputs`` for these samples and return ``lam * tau^2 * KL`` (0 before it starts).

        Only samples whose outputs were recorded exactly ``lag`` epochs ago contribute.
        """
        indices = torch.as_tensor(indices, dtype=torch.long)
        if outputs.shape[0] != indices.shape[0]:
            raise ValueError("SAF needs one index per output row")
        if len(indices) and (int(indices.min()) < 0 or int(indices.max()) >= len(self.memory)):
            raise IndexError(f"sample index out of range 0..{len(self.memory) - 1}")
        lag, tau, lam = self.defaults["lag"], self.defaults["tau"], self.defaults["lam"]
        slots = lag + 1
        past_slot = (self.epoch - lag) % slots
        loss = outputs.sum() * 0.0
        if self.active and lam > 0:
            valid = self.recorded_epoch[indices, past_slot] == self.epoch - lag
            if bool(valid.any()):
                past = self.memory[indices[valid], past_slot]
                loss = lam * trajectory_kl(outputs[valid], past, tau) * valid.float().mean()
        slot = self.epoch % slots
        self.memory[indices, slot] = outputs.detach().to(self.memory.dtype)
        self.recorded_epoch[indices, slot] = self.epoch
        return loss

    def step_batch(self, batch):
        """The step protocol (:mod:`labsat.sat.step`): loss + trajectory loss, one pass, base step."""
        loss, out = batch.forward_backward(self, extra=lambda out: self.trajectory_loss(out, batch.idx))
        self.step()
        return loss, out.detach()


class MESA(_Wrapper):
    """MESA: trajectory loss against an exponential moving average of the weights.

    ``decay``: EMA decay per step (the paper uses 0.9998 over ImageNet's ~5000 steps per epoch; with
    a few tens of steps per epoch something like 0.9-0.99 spans a similar number of epochs).
    """

    def __init__(self, params, base_optimizer, decay: float = 0.95, lam: float = 0.8, tau: float = 5.0,
                 warmup: int = 1, **base_kwargs):
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"decay must lie in [0, 1), got {decay}")
        if lam < 0 or tau <= 0 or warmup < 0:
            raise ValueError("MESA needs lam >= 0, tau > 0 and warmup >= 0")
        super().__init__(params, base_optimizer, dict(decay=decay, lam=lam, tau=tau, warmup=warmup), base_kwargs)
        for group in self.param_groups:
            for p in group["params"]:
                self.state[p]["ema"] = p.detach().clone()

    @torch.no_grad()
    def update_ema(self) -> None:
        d = self.defaults["decay"]
        for group in self.param_groups:
            for p in group["params"]:
                self.state[p]["ema"].mul_(d).add_(p.detach(), alpha=1 - d)

    @torch.no_grad()
    def step(self, closure=None):
        loss = super().step(closure)
        self.update_ema()
        return loss

    @contextlib.contextmanager
    def averaged(self):
        """Within the block the parameters hold the EMA weights (use under ``torch.no_grad()``).

        The weights are swapped in place: run the EMA forward *before* the forward whose graph will
        be differentiated, not between it and its ``backward()``."""
        saved = []
        with torch.no_grad():
            for group in self.param_groups:
                for p in group["params"]:
                    saved.append((p, p.detach().clone()))
                    p.copy_(self.state[p]["ema"])
        try:
            yield
        finally:
            with torch.no_grad():
                for p, value in saved:
                    p.copy_(value)

    def trajectory_loss(self, outputs: torch.Tensor, ema_outputs: torch.Tensor) -> torch.Tensor:
        """``lam * tau^2 * KL(softmax(ema/tau) || softmax(outputs/tau))`` once past the warm-up, else 0."""
        if not self.active or self.defaults["lam"] == 0:
            return outputs.sum() * 0.0
        return self.defaults["lam"] * trajectory_kl(outputs, ema_outputs, self.defaults["tau"])

    def step_batch(self, batch):
        """The step protocol (:mod:`labsat.sat.step`): the EMA target runs first, on the twin (a soft target,
        not a measurement) and before the forward whose graph is differentiated, since the weights are
        swapped in place; then loss + trajectory loss, one pass, base step, EMA update."""
        extra = None
        if self.active:
            with batch.on_twin(), torch.no_grad(), self.averaged():
                target = batch.model(batch.x)
            extra = lambda out: self.trajectory_loss(out, target)  # noqa: E731
        loss, out = batch.forward_backward(self, extra=extra)
        self.step()
        return loss, out.detach()
