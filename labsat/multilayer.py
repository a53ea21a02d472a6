"""Deep hybrid networks: several physical layers with an electronic nonlinearity between them.

``DeepClassifier``: inputs -> physical layer 1 -> electronics -> physical layer 2 -> ... -> digital
linear readout. The electronics are a trainable per-channel gain and offset followed by a sigmoid:
the detector signal (a transimpedance amplifier's output) becomes the next layer's input drive in
[0, 1]. Each physical layer is a shared :class:`~labsat.physical.PhysicalLayer` (hardware forward, twin
backward), so physics-aware training chains through the layers as in Wright et al. (2022): the
gradient reaching layer 1 passes backwards through layer 2's twin, evaluated at the input layer 2
really received.

The model offers what :func:`labsat.train.train` and :func:`labsat.train.accuracy` use: ``.physical``
with ``use_hardware``, ``hardware`` (counting forwards), ``project_()``, and parameter names starting
with ``physical.`` for the physical controls.
"""
from __future__ import annotations

import torch
from torch import nn

from labsat.physical import PhysicalLayer


class _ChainHardware:
    """The hardware counters of all layers, summed (what train() reports per step and epoch)."""

    def __init__(self, layers):
        self._layers = layers

    @property
    def batches(self) -> int:
        return sum(layer.hardware.batches for layer in self._layers if layer.hardware is not None)

    @property
    def samples(self) -> int:
        return sum(layer.hardware.samples for layer in self._layers if layer.hardware is not None)

    def forget_controls(self) -> None:
        for layer in self._layers:
            if layer.hardware is not None:
                layer.hardware.forget_controls()


class PhysicalChain(nn.Module):
    def __init__(self, layers: list[PhysicalLayer]):
        super().__init__()
        self.layers = nn.ModuleList(layers)

    @property
    def use_hardware(self) -> bool:
        return all(layer.use_hardware for layer in self.layers)

    @use_hardware.setter
    def use_hardware(self, value: bool) -> None:
        for layer in self.layers:
            layer.use_hardware = bool(value)

    @property
    def hardware(self):
        if all(layer.hardware is None for layer in self.layers):
            return None
        return _ChainHardware(list(self.layers))

    @property
    def twin(self):
        return self.layers[-1].twin

    @torch.no_grad()
    def project_(self) -> None:
        for layer in self.layers:
            layer.project_()


class Electronics(nn.Module):
    """Per-channel gain and offset, then a sigmoid: a detector signal -> the next layer's drive in [0, 1]."""

    def __init__(self, n: int, gain: float = 1.0):
        super().__init__()
        self.gain = nn.Parameter(torch.full((n,), float(gain), dtype=torch.float64))
        self.offset = nn.Parameter(torch.zeros(n, dtype=torch.float64))

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.gain * (y - self.offset))


class DeepClassifier(nn.Module):
    def __init__(self, layers: list[PhysicalLayer], n_classes: int, seed: int = 0):
        super().__init__()
        for a, b in zip(layers, layers[1:]):
            if a.twin.n_outputs != b.twin.n_inputs:
                raise ValueError(f"a layer with {a.twin.n_outputs} outputs cannot feed one with "
                                 f"{b.twin.n_inputs} inputs")
        torch.manual_seed(seed)
        self.physical = PhysicalChain(layers)
        self.electronics = nn.ModuleList(Electronics(layer.twin.n_outputs) for layer in layers[:-1])
        self.readout = nn.Linear(layers[-1].twin.n_outputs, n_classes, dtype=torch.float64)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        h = x
        for k, layer in enumerate(self.physical.layers):
            h = layer(h)
            if k < len(self.electronics):
                h = self.electronics[k](h)
        return h

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.readout(self.features(x))
