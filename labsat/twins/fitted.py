"""Persistence of a twin's fitted imperfections: the tensors named in ``fit_parameters``."""
from __future__ import annotations

import torch


class FittedTensors:
    """Mixin for twins whose calibration is a set of named float64 tensors.

    Subclasses set ``fit_parameters`` (names of their nn.Parameters), ``twin_name`` (for messages) and
    ``describe()`` (what shape of device the twin models, for messages).
    """

    fit_parameters: tuple[str, ...] = ()
    twin_name = "twin"

    def describe(self) -> str:
        raise NotImplementedError

    def fitted_state(self) -> dict[str, list]:
        return {k: getattr(self, k).detach().cpu().tolist() for k in self.fit_parameters}

    def load_fitted_state(self, state: dict[str, list]) -> None:
        for k in self.fit_parameters:
            if k not in state:
                raise KeyError(f"calibration is missing {self.twin_name} parameter '{k}'")
            value = torch.as_tensor(state[k], dtype=torch.float64)
            target = getattr(self, k)
            if value.shape != target.shape:
                raise ValueError(f"twin parameter '{k}' has shape {tuple(value.shape)}, "
                                 f"expected {tuple(target.shape)} for a {self.describe()}")
            with torch.no_grad():
                target.copy_(value)
