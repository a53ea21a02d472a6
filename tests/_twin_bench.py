"""A bench for online-step tests: hardware that is a differently-seeded float64 mesh twin (values that are not the
layer twin's), counting its forwards."""
from __future__ import annotations

import torch

from labsat.twins.mzi import MZIMeshTwin


class TwinBench:
    """Hardware that is a differently-seeded float64 twin: values that are not the layer twin's."""

    def __init__(self, modes: int = 6):
        self.twin, self.batches = MZIMeshTwin(modes, 9.0), 0
        with torch.no_grad():
            self.twin.offset.normal_(0, 0.2, generator=torch.Generator().manual_seed(5))

    def forward(self, x, u):
        self.batches += 1
        with torch.no_grad():
            return self.twin(torch.as_tensor(x), torch.as_tensor(u)).numpy()
