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

    def _distinct(self) -> list:
        """Each hardware object once (layers may share one device, used in turn, as in the paper)."""
        seen: dict[int, object] = {}
        for layer in self._layers:
            if layer.hardware is not None:
                seen.setdefault(id(layer.hardware), layer.hardware)
        return list(seen.values())

    @property
    def batches(self) -> int:
        return sum(hw.batches for hw in self._distinct())

    @property
    def samples(self) -> int:
        return sum(hw.samples for hw in self._distinct())

    def forget_controls(self) -> None:
        for hw in self._distinct():
            hw.forget_controls()


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


def Standardise(twin, n: int) -> nn.Module:  # noqa: N802 (a layer factory)
    """Batch normalisation (no affine part) of a physical layer's outputs: the part of the detector signals
    that varies with the input can be small next to their level (the pulse kind's SHG spectra), and a
    linear layer after it learns slowly unless it is brought to unit scale. Identity when ``twin`` is None."""
    if twin is None:
        return nn.Identity()
    return nn.BatchNorm1d(n, affine=False, dtype=torch.float64)


class DigitalLayer(nn.Module):
    """A trainable linear map, then a sigmoid: one layer's detector signals -> the next layer's drive in [0, 1]
    (the digital layers between physical layers in Wright et al. 2022's multi-layer networks). The signals
    are batch-normalised first so that the default initialisation fits them. ``hidden > 0``: a wider digital
    part, linear -> ReLU (``hidden`` units) -> linear -> sigmoid."""

    def __init__(self, n_in: int, n_out: int, twin=None, hidden: int = 0):
        super().__init__()
        if hidden < 0:
            raise ValueError(f"hidden must be >= 0, got {hidden}")
        self.standardise = Standardise(twin, n_in)
        self.hidden = None if not hidden else nn.Sequential(nn.Linear(n_in, hidden, dtype=torch.float64), nn.ReLU())
        self.linear = nn.Linear(hidden or n_in, n_out, dtype=torch.float64)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        h = self.standardise(y)
        if self.hidden is not None:
            h = self.hidden(h)
        return torch.sigmoid(self.linear(h))


class DeepClassifier(nn.Module):
    """``between='electronics'``: per-channel gain/offset (layer sizes must chain); ``'linear'``: a digital
    linear layer + sigmoid, so a layer with M outputs can feed one with any number of inputs; with ``hidden > 0``
    each digital layer between has a hidden layer of that width (:class:`DigitalLayer`)."""

    def __init__(self, layers: list[PhysicalLayer], n_classes: int, seed: int = 0, between: str = "electronics",
                 hidden: int = 0):
        super().__init__()
        if between not in ("electronics", "linear"):
            raise ValueError(f"between must be 'electronics' or 'linear', got {between!r}")
        if hidden and between != "linear":
            raise ValueError("a hidden digital layer needs between='linear'")
        for a, b in zip(layers, layers[1:]):
            if between == "electronics" and a.twin.n_outputs != b.twin.n_inputs:
                raise ValueError(f"a layer with {a.twin.n_outputs} outputs cannot feed one with "
                                 f"{b.twin.n_inputs} inputs")
        torch.manual_seed(seed)
        self.physical = PhysicalChain(layers)
        if between == "linear":
            self.electronics = nn.ModuleList(DigitalLayer(a.twin.n_outputs, b.twin.n_inputs, a.twin, hidden)
                                             for a, b in zip(layers, layers[1:]))
        else:
            self.electronics = nn.ModuleList(Electronics(layer.twin.n_outputs) for layer in layers[:-1])
        self.readout = nn.Linear(layers[-1].twin.n_outputs, n_classes, dtype=torch.float64)
        self.standardise = Standardise(layers[-1].twin if between == "linear" else None, layers[-1].twin.n_outputs)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        h = x
        for k, layer in enumerate(self.physical.layers):
            h = layer(h)
            if k < len(self.electronics):
                h = self.electronics[k](h)
        return h

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.readout(self.standardise(self.features(x)))

    @torch.no_grad()
    def recalibrate_norms(self, x: torch.Tensor, on_hardware: bool, batch_size: int = 512) -> None:
        """Re-estimate the batch-norm statistics at the final parameters from inputs ``x`` (training data).

        The running averages gathered during training lag behind the parameters, and the physical outputs'
        level moves with the parameters far more than it varies with the input, so stale statistics put
        every input in the same place. One pass (on the hardware or on the twin) fixes them for evaluation."""
        norms = [m for m in self.modules() if isinstance(m, nn.BatchNorm1d)]
        if not norms:
            return
        physical, previous, mode = self.physical, self.physical.use_hardware, self.training
        for m in norms:
            m.reset_running_stats()
            m.momentum = None  # a cumulative average over this pass
        physical.use_hardware = on_hardware
        self.train()
        try:
            for start in range(0, len(x), batch_size):
                self(x[start:start + batch_size])
        finally:
            physical.use_hardware = previous
            self.train(mode)
            for m in norms:
                m.momentum = 0.1
