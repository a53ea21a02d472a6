"""SAM restricted to some parameter groups, with the radius measured over those groups only.

``SAM`` takes the norm of the gradient over *all* parameters, so giving a group ``rho = 0`` (e.g. the
digital readout of a hybrid physical network) shrinks the perturbation of the others below ``rho``.
:class:`PartialSAM` takes the norm over the groups with ``rho > 0`` only: the perturbed groups move
exactly ``rho`` (SAM) or ``rho`` in the adaptive metric (ASAM), the others not at all.
"""
from __future__ import annotations

import torch

from .sam import SAM


class PartialSAM(SAM):
    norm_over_perturbed = True

    def _grad_norm(self) -> torch.Tensor:
        norms = [(self._scale(p, g) * p.grad).norm(p=2)
                 for g in self.param_groups if g["rho"] > 0 for p in g["params"] if p.grad is not None]
        if not norms:
            return torch.tensor(0.0)
        return torch.stack(norms).norm(p=2)
