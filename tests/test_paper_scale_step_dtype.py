"""The twin's pass behind a hardware forward runs in labsat.defaults.BACKWARD_DTYPE (float32) for a twin that
takes ``dtype=`` (issue 12: the online step's Python share at N = 64); the value is the hardware's, the gradient
the twin's in that precision, within ~1e-5 of float64's; offline passes stay float64."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from labsat import defaults
from labsat.physical import HybridClassifier, PhysicalLayer
from labsat.sat.step import Batch, step_batch
from labsat.train import TrainConfig, make_optimizer
from labsat.twins.mzi import MZIMeshTwin

from _twin_bench import TwinBench


class SpyTwin(MZIMeshTwin):
    """The mesh twin, recording the precision of every pass."""

    def __init__(self, *args):
        super().__init__(*args)
        self.dtypes = []

    def forward(self, amplitudes, u, dtype=torch.float64):
        self.dtypes.append(dtype)
        return super().forward(amplitudes, u, dtype=dtype)


def online_layer(modes=6, twin_cls=MZIMeshTwin):
    layer = PhysicalLayer(twin_cls(modes, 9.0), TwinBench(modes), seed=0)
    layer.use_hardware = True
    x = torch.rand(8, modes, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    w = torch.randn(8, modes, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    return layer, x, w


def twin_grad(layer, x, w, dtype):
    u = layer.controls().detach().requires_grad_(True)
    return torch.autograd.grad((layer.twin(x, u, dtype=dtype) * w).sum(), u)[0]


def test_backward_in_float32_value_from_the_hardware():
    assert defaults.BACKWARD_DTYPE == "float32"
    layer, x, w = online_layer()
    assert layer.backward_dtype is torch.float32
    y = layer(x)
    np.testing.assert_array_equal(y.detach().numpy(), layer.hardware.forward(x.numpy(), layer.controls().detach().numpy()))
    (y * w).sum().backward()
    g32, g64 = twin_grad(layer, x, w, torch.float32), twin_grad(layer, x, w, torch.float64)
    torch.testing.assert_close(layer.u.grad, g32, rtol=0, atol=0)  # exactly the float32 pass
    assert not torch.equal(g32, g64)  # it really is another precision ...
    torch.testing.assert_close(layer.u.grad, g64, rtol=1e-4, atol=1e-6)  # ... that agrees with float64
    cos = torch.dot(layer.u.grad, g64) / (layer.u.grad.norm() * g64.norm())
    assert cos > 1 - 1e-9


def test_float64_when_asked_and_for_twins_without_dtype():
    layer, x, w = online_layer()
    layer.backward_dtype = None
    (layer(x) * w).sum().backward()
    torch.testing.assert_close(layer.u.grad, twin_grad(layer, x, w, torch.float64), rtol=0, atol=0)

    class PlainTwin(nn.Module):  # another kind's twin: no dtype= option, computes as it does
        n_controls, n_inputs, n_outputs = 3, 2, 2

        def forward(self, x, u):
            return x * u[:2].sum()

    assert PhysicalLayer(PlainTwin()).backward_dtype is None


@pytest.mark.parametrize("mode", ["online", "offline"])
def test_sam_perturbed_pass_on_the_twin_uses_the_backward_dtype_online_only(mode):
    layer = PhysicalLayer(SpyTwin(4, 9.0), TwinBench(4), seed=0)
    model = HybridClassifier(layer, 3, seed=0)
    cfg = TrainConfig(mode=mode, optimizer="sam", lr=0.01)
    opt = make_optimizer(model.parameters(), cfg, model=model)
    layer.use_hardware = mode == "online"
    x = torch.rand(8, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    y = torch.randint(0, 3, (8,), generator=torch.Generator().manual_seed(2))
    step_batch(opt, Batch(model, x, y, torch.arange(8), nn.CrossEntropyLoss()))
    if mode == "online":  # twin backward of the hardware pass, then the perturbed pass: both float32
        assert layer.twin.dtypes == [torch.float32, torch.float32]
        assert layer.hardware.batches == 1
    else:  # offline the twin's values are the model's: float64 for both passes
        assert layer.twin.dtypes == [torch.float64, torch.float64]
    assert layer.gradient_pass is False and layer.use_hardware == (mode == "online")  # restored
