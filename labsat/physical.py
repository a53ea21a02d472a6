"""The physical layer: a torch module whose forward runs on the instruments and whose backward runs
through the digital twin (physics-aware training, Wright et al. 2022).

``y = f_hardware(x, u)`` in the forward pass; ``dL/du = (d f_twin / du)^T dL/dy`` in the backward pass,
with the twin evaluated at the same ``x`` and ``u``. With ``use_hardware = False`` the layer is the twin
alone (offline training, in silico).
"""
from __future__ import annotations

import torch
from torch import nn


class _HardwareForwardTwinBackward(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, u, twin, hardware):
        ctx.save_for_backward(x, u)
        ctx.twin = twin
        y = hardware.forward(x.detach().cpu().numpy(), u.detach().cpu().numpy())
        return torch.as_tensor(y, dtype=torch.float64)

    @staticmethod
    def backward(ctx, grad_y):
        x, u = ctx.saved_tensors
        with torch.enable_grad():
            xx = x.detach().requires_grad_(ctx.needs_input_grad[0])
            uu = u.detach().requires_grad_(True)
            y = ctx.twin(xx, uu)
            inputs = [xx, uu] if ctx.needs_input_grad[0] else [uu]
            grads = torch.autograd.grad(y, inputs, grad_y)
        gx = grads[0] if ctx.needs_input_grad[0] else None
        return gx, grads[-1], None, None


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
        g = torch.Generator().manual_seed(seed)
        self.u = nn.Parameter(0.1 + 0.7 * torch.rand(twin.n_controls, generator=g, dtype=torch.float64))

    def controls(self) -> torch.Tensor:
        return self.u.clamp(0.0, 1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u = self.controls()
        if self.use_hardware:
            if self.hardware is None:
                raise RuntimeError("this physical layer has no hardware attached (offline only)")
            y = _HardwareForwardTwinBackward.apply(x, u, self.twin, self.hardware)
            if self.training and hasattr(self.twin, "observe"):  # a learned twin refreshes itself online
                self.twin.observe(x.detach(), u.detach(), y.detach())
            return y
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
        return self.readout(self.physical(x))


MeshClassifier = HybridClassifier  # the skeleton's name
