"""The physical layer: a torch module whose forward runs on the instruments and whose backward runs
through the digital twin (physics-aware training, Wright et al. 2022).

``y = f_hardware(x, u)`` in the forward pass; ``dL/du = (d f_twin / du)^T dL/dy`` in the backward pass,
with the twin evaluated at the same ``x`` and ``u``. With ``use_hardware = False`` the layer is the twin
alone (offline training, in silico).
"""
from __future__ import annotations

import functools
import inspect
from concurrent.futures import ThreadPoolExecutor

import torch
from torch import nn
from torch.nn import functional as F

from labsat import defaults

_TWIN_THREAD = ThreadPoolExecutor(max_workers=1, thread_name_prefix="labsat-twin")


@functools.cache
def _takes(cls: type, name: str) -> bool:
    return name in inspect.signature(cls.forward).parameters


def _gradient_twin(twin, x: torch.Tensor, u: torch.Tensor, dtype: torch.dtype | None) -> torch.Tensor:
    """The twin's forward for a pass whose gradient alone is used: computed in ``dtype`` (None: the twin's
    own precision), and its result left in ``dtype`` where the twin offers that (``result_dtype=``: the
    mesh twin; no cast of the (B, N) outputs either way, the gains folded into its matrix)."""
    if dtype is None:
        return twin(x, u)
    if _takes(type(twin), "result_dtype"):
        return twin(x, u, dtype=dtype, result_dtype=dtype)
    return twin(x, u, dtype=dtype)


def _twin_graph(twin, x: torch.Tensor, u: torch.Tensor, grad_x: bool, dtype: torch.dtype | None = None):
    """The twin's forward at (x, u) with its autograd graph: ``(inputs, outputs)`` for the backward;
    computed in ``dtype`` when given (a twin whose forward takes ``dtype=``)."""
    with torch.enable_grad():
        xx = x.detach().requires_grad_(grad_x)
        uu = u.detach().requires_grad_(True)
        return ([xx, uu] if grad_x else [uu]), _gradient_twin(twin, xx, uu, dtype)


def backward_dtype(twin) -> torch.dtype | None:
    """The precision of the twin's pass behind a hardware forward (:data:`labsat.defaults.BACKWARD_DTYPE`),
    for a twin whose ``forward`` takes ``dtype=``; None (the twin's own) for the others."""
    if defaults.BACKWARD_DTYPE is None or not _takes(type(twin), "dtype"):
        return None
    return getattr(torch, defaults.BACKWARD_DTYPE)


class _HardwareForwardTwinBackward(torch.autograd.Function):
    """Hardware forward, twin backward. With ``overlap`` the twin's forward at the same (x, u), which
    the backward needs anyway, is computed on a worker thread while the instruments measure (the client
    mostly waits on the sockets then); the backward only differentiates it. Same numbers either way."""

    @staticmethod
    def forward(ctx, x, u, twin, hardware, overlap=False, dtype=None, out_dtype=torch.float64):
        ctx.save_for_backward(x, u)
        ctx.twin, ctx.dtype = twin, dtype
        ctx.pending = (_TWIN_THREAD.submit(_twin_graph, twin, x, u, ctx.needs_input_grad[0], dtype) if overlap
                       else None)
        try:
            y = hardware.forward(x.detach().cpu().numpy(), u.detach().cpu().numpy())
        except BaseException:
            if ctx.pending is not None:
                ctx.pending.cancel()
            raise
        return torch.as_tensor(y, dtype=out_dtype)

    @staticmethod
    def backward(ctx, grad_y):
        x, u = ctx.saved_tensors
        if ctx.pending is not None:
            inputs, y = ctx.pending.result()
            ctx.pending = None
        else:
            inputs, y = _twin_graph(ctx.twin, x, u, ctx.needs_input_grad[0], ctx.dtype)
        with torch.enable_grad():
            grads = torch.autograd.grad(y, inputs, grad_y.to(y.dtype))
        gx = grads[0] if ctx.needs_input_grad[0] else None
        return gx, grads[-1], None, None, None, None, None


class PhysicalLayer(nn.Module):
    """Trainable controls ``u`` in [0, 1] of one physical system (for a mesh: normalised heater powers).

    ``twin`` is any module with ``forward(x, u)`` and ``n_controls``/``n_inputs``/``n_outputs``;
    ``hardware`` any object with ``forward(x_numpy, u_numpy) -> y_numpy`` (see :mod:`labsat.kinds`).
    """

    def __init__(self, twin: nn.Module, hardware=None, seed: int = 0):
        super().__init__()
        self.twin = twin
        self.hardware = hardware
        self.use_hardware = False
        # compute the twin's forward while the hardware measures (same numbers). Off by default: on the
        # loaded 2-core box it did not pay (N = 64, batch 64: wall 75 vs 52 ms per online step, process CPU
        # 15.4 vs 14.0 ms; benchmarks/README.md "Python's share"); worth a try on a bench with idle cores
        self.overlap_twin = False
        # the twin's pass behind a hardware forward only supplies a gradient: float32 for a mesh twin
        # (gradients within ~1e-5 relative of float64, the twin pass 2.4x less CPU at N = 64, batch 6000;
        # benchmarks/README.md "Round 4: the twin's pass in float32"); None: the twin's own precision
        self.backward_dtype = backward_dtype(twin)
        # True in a pass whose gradient serves as a direction only (online SAM: the perturbed pass, on the twin,
        # labsat.sat.step.Batch.on_twin; the clean pass, whose gradient only sets the ascent e, Batch.ascent):
        # the layer's output comes in backward_dtype (the twin computes it so; the hardware's readings are
        # cast), and so is what follows it (HybridClassifier's readout and the loss)
        self.gradient_pass = False
        g = torch.Generator().manual_seed(seed)
        self.u = nn.Parameter(0.1 + 0.7 * torch.rand(twin.n_controls, generator=g, dtype=torch.float64))

    def controls(self) -> torch.Tensor:
        return self.u.clamp(0.0, 1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u = self.controls()
        if self.use_hardware:
            if self.hardware is None:
                raise RuntimeError("this physical layer has no hardware attached (offline only)")
            # the twin's forward overlaps the measurement when a backward will follow and the twin stays
            # as it is until then (a learned twin may refresh itself on this very reading: not then)
            overlap = (self.overlap_twin and torch.is_grad_enabled() and (x.requires_grad or u.requires_grad)
                       and not hasattr(self.twin, "observe"))
            out = self.backward_dtype if self.gradient_pass and self.backward_dtype is not None else torch.float64
            y = _HardwareForwardTwinBackward.apply(x, u, self.twin, self.hardware, overlap, self.backward_dtype, out)
            if self.training and hasattr(self.twin, "observe"):  # a learned twin refreshes itself online
                self.twin.observe(x.detach(), u.detach(), y.detach())
            return y
        if self.gradient_pass:
            return _gradient_twin(self.twin, x, u, self.backward_dtype)
        return self.twin(x, u)

    @torch.no_grad()
    def project_(self) -> None:
        """Keep the controls inside the instrument's range after an optimizer step."""
        self.u.clamp_(0.0, 1.0)


class HybridClassifier(nn.Module):
    """Inputs -> physical layer -> detected outputs -> digital linear readout (a hybrid PNN)."""

    def __init__(self, physical: PhysicalLayer, n_classes: int, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.physical = physical
        self.readout = nn.Linear(physical.twin.n_outputs, n_classes, dtype=torch.float64)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.physical(x)
        if y.dtype != self.readout.weight.dtype:  # a gradient-only pass in the layer's backward_dtype: so is this
            return F.linear(y, self.readout.weight.to(y.dtype), self.readout.bias.to(y.dtype))
        return self.readout(y)


MeshClassifier = HybridClassifier  # the skeleton's name
