"""The twin's forward computed while the hardware measures (labsat/physical.py, issue 12 item 3): the
same outputs and gradients as computing it in the backward, and a hardware error still surfaces."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from labsat.physical import PhysicalLayer
from labsat.twins.mzi import MZIMeshTwin


class ChipLike:
    """Hardware stand-in: another twin (offsets on) evaluated in numpy, counting forwards."""

    def __init__(self, modes: int, fail: bool = False):
        self.chip = MZIMeshTwin(modes, 7.0)
        with torch.no_grad():
            self.chip.offset.copy_(torch.linspace(-0.3, 0.3, self.chip.n_controls))
        self.fail, self.batches = fail, 0

    def forward(self, x, u):
        if self.fail:
            raise RuntimeError("instrument timeout (test)")
        self.batches += 1
        with torch.no_grad():
            return self.chip(torch.as_tensor(x), torch.as_tensor(u)).numpy()


def _step(overlap: bool, modes: int = 6):
    layer = PhysicalLayer(MZIMeshTwin(modes, 7.6), ChipLike(modes), seed=3)
    layer.use_hardware, layer.overlap_twin = True, overlap
    x = torch.rand(5, modes, dtype=torch.float64, generator=torch.Generator().manual_seed(1)).requires_grad_(True)
    y = layer(x)
    (y * torch.arange(modes, dtype=torch.float64)).sum().backward()
    return y.detach(), layer.u.grad.clone(), x.grad.clone(), layer.hardware.batches


def test_overlapped_twin_forward_gives_the_same_gradients():
    y0, gu0, gx0, n0 = _step(False)
    y1, gu1, gx1, n1 = _step(True)
    assert n0 == n1 == 1
    assert torch.equal(y0, y1)  # the hardware's readings
    assert torch.equal(gu0, gu1) and torch.equal(gx0, gx1)  # the twin's backward, bit for bit
    assert gu1.abs().sum() > 0


def test_a_hardware_error_surfaces_with_the_overlap_on():
    layer = PhysicalLayer(MZIMeshTwin(4, 7.6), ChipLike(4, fail=True))
    layer.use_hardware, layer.overlap_twin = True, True
    u = layer.controls().detach().clone()
    with pytest.raises(RuntimeError, match="instrument timeout"):
        layer(torch.rand(3, 4, dtype=torch.float64))
    assert torch.equal(layer.controls().detach(), u)


def test_the_twin_runs_ahead_only_when_a_backward_will_follow(monkeypatch):
    """Evaluation (no grad) does not spend the twin's forward; training does, once per forward."""
    import labsat.physical as physical

    submitted = []
    real = physical._TWIN_THREAD

    class Counting:
        def submit(self, *args):
            submitted.append(args[0])
            return real.submit(*args)

    monkeypatch.setattr(physical, "_TWIN_THREAD", Counting())
    layer = PhysicalLayer(MZIMeshTwin(4, 7.6), ChipLike(4))
    layer.use_hardware, layer.overlap_twin = True, True
    with torch.no_grad():
        y = layer(torch.rand(3, 4, dtype=torch.float64))
    assert y.shape == (3, 4) and np.isfinite(y.numpy()).all() and submitted == []
    layer(torch.rand(3, 4, dtype=torch.float64)).sum().backward()
    assert len(submitted) == 1 and layer.u.grad is not None
