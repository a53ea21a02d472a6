"""Sharpness-aware training over non-differentiable system parameters: an adversarial finite-difference
step on the alignment of a free-space network (rotation, shift, scale), as in the SAT paper's
free-space experiments (random probe, then ascent along the finite-difference slope, reset after the
step).

Per training step, for one alignment parameter at a time (round robin):

1. probe: ``d ~ U[-probe, probe]`` (``U[0, probe]`` for a one-sided parameter such as scale);
   ``slope = (L(a0 + d) - L(a0)) / d`` on the current batch, two forwards without gradients;
2. ascent: ``a_adv = clip(a0 + d + step * slope, lo, hi)``, a misalignment that raises the loss;
3. the optimizer's step (plain or SAM) runs with the twin at ``a_adv``; then the twin is put back at
   ``a0`` (the calibrated alignment).

The paper's settings (free-space PNN): angle probe U[0, 2] deg with step 50, shift probe U[0, 2] px with
step 50, scale probe U[0, 0.1] with step 0.001 clipped to [1, 1.1].
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch


@dataclass
class AlignmentProbe:
    name: str  # the twin parameter (rotation_deg, shift_x_px, shift_y_px, scale)
    probe: float  # largest random probe
    step: float  # ascent step along the finite-difference slope
    lo: float  # bounds of the adversarial value, relative to the calibrated one
    hi: float
    symmetric: bool = True  # probe in [-probe, probe]; else [0, probe]


def paper_probes(max_rotation_deg: float = 2.0, max_shift_px: float = 2.0, max_scale: float = 0.1,
                 rotation_step: float = 50.0, shift_step: float = 50.0, scale_step: float = 0.001) -> list[AlignmentProbe]:
    """The SAT paper's free-space settings, with shift split into x and y."""
    return [AlignmentProbe("rotation_deg", max_rotation_deg, rotation_step, -max_rotation_deg, max_rotation_deg),
            AlignmentProbe("shift_x_px", max_shift_px, shift_step, -max_shift_px, max_shift_px),
            AlignmentProbe("shift_y_px", max_shift_px, shift_step, -max_shift_px, max_shift_px),
            AlignmentProbe("scale", max_scale, scale_step, 0.0, max_scale, symmetric=False)]


@dataclass
class AdversarialAlignment:
    """Finite-difference adversary over a twin's alignment parameters (``twin.misaligned(**values)``)."""

    twin: torch.nn.Module
    probes: list[AlignmentProbe] = field(default_factory=paper_probes)
    seed: int = 0
    steps: int = 0
    last: dict = field(default_factory=dict)

    def __post_init__(self):
        self.rng = np.random.default_rng(self.seed)
        for p in self.probes:
            if not hasattr(self.twin, p.name):
                raise ValueError(f"the twin has no alignment parameter '{p.name}'")

    @torch.no_grad()
    def adversarial_value(self, loss_fn: Callable[[], torch.Tensor], probe: AlignmentProbe) -> tuple[float, dict]:
        """The adversarial value of one parameter for the present batch (``loss_fn`` evaluates the loss
        with the twin as it is), and what was measured."""
        a0 = float(getattr(self.twin, probe.name))
        d = float(self.rng.uniform(-probe.probe if probe.symmetric else 0.0, probe.probe))
        if d == 0.0:
            d = probe.probe * 1e-3
        l0 = float(loss_fn())
        with self.twin.misaligned(**{probe.name: a0 + d}):
            l1 = float(loss_fn())
        slope = (l1 - l0) / d
        adv = float(np.clip(a0 + d + probe.step * slope, a0 + probe.lo, a0 + probe.hi))
        info = {"name": probe.name, "a0": a0, "probe": d, "loss0": l0, "loss_probe": l1, "slope": slope,
                "adversarial": adv}
        return adv, info

    def next_probe(self) -> AlignmentProbe:
        return self.probes[self.steps % len(self.probes)]

    def step(self, loss_fn: Callable[[], torch.Tensor], update: Callable[[], torch.Tensor]) -> torch.Tensor:
        """One adversarial step: find the adversarial alignment of the next parameter, run ``update``
        (the optimizer step, with its own forward/backward) there, restore the alignment."""
        probe = self.next_probe()
        adv, self.last = self.adversarial_value(loss_fn, probe)
        self.steps += 1
        with self.twin.misaligned(**{probe.name: adv}):
            return update()


def train_alignment_sat(model, data, epochs: int = 10, lr: float = 0.03, rho: float = 0.05,
                        batch_size: int = 64, seed: int = 0, sam: bool = True, adversary: bool = True,
                        probes: list[AlignmentProbe] | None = None,
                        on_epoch: Callable[[int, float, float], None] | None = None) -> list[dict]:
    """Offline training on the twin of ``model`` (a HybridClassifier over a free-space twin).

    ``sam``: SAM (rho) on all parameters, else Adam; ``adversary``: the finite-difference alignment
    step before each update. Both False is plain training; both True the paper's SAT.
    """
    from labsat.sat.sam import SAM

    twin = model.physical.twin
    model.physical.use_hardware = False
    loss_fn_ = torch.nn.CrossEntropyLoss()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = SAM(params, torch.optim.Adam, rho=rho, lr=lr) if sam else torch.optim.Adam(params, lr=lr)
    adv = AdversarialAlignment(twin, probes or paper_probes(), seed=seed + 1) if adversary else None
    gen = torch.Generator().manual_seed(seed)
    n = len(data.x_train)
    history = []
    for epoch in range(1, epochs + 1):
        order = torch.randperm(n, generator=gen)
        total, correct = 0.0, 0
        for start in range(0, n, batch_size):
            idx = order[start:start + batch_size]
            xb, yb = data.x_train[idx], data.y_train[idx]

            def closure():
                opt.zero_grad()
                out = model(xb)
                loss = loss_fn_(out, yb)
                loss.backward()
                if not hasattr(closure, "out"):
                    closure.out = out.detach()
                return loss

            def update():
                if sam:
                    return opt.step(closure)
                loss = closure()
                opt.step()
                return loss

            if adv is not None:
                loss = adv.step(lambda: loss_fn_(model(xb), yb), update)
            else:
                loss = update()
            model.physical.project_()
            total += float(loss.detach()) * len(idx)
            correct += int((closure.out.argmax(1) == yb).sum())
        history.append({"epoch": epoch, "loss": total / n, "train_accuracy": correct / n})
        if on_epoch:
            on_epoch(epoch, total / n, correct / n)
    return history
