"""A learned (neural) digital twin for a physical system with no trusted model: an MLP ``(x, u) -> y``.

It has the same call convention as the analytic twins -- ``twin(x, u)`` with ``x`` (B, N_in) and ``u``
(H,), or ``x`` (K, B, N_in) and ``u`` (K, H) -- so :class:`labsat.physical.PhysicalLayer` can take its
backward pass through it. Inputs and outputs are standardised with statistics of the training data,
stored with the weights. Trained by :mod:`labsat.calibration.learned`.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn


class LearnedTwin(nn.Module):
    def __init__(self, n_inputs: int, n_controls: int, n_outputs: int, hidden: int = 128, depth: int = 3):
        super().__init__()
        if min(n_inputs, n_controls, n_outputs, hidden, depth) < 1:
            raise ValueError("a learned twin needs positive sizes and at least one hidden layer")
        self.n_inputs, self.n_controls, self.n_outputs = n_inputs, n_controls, n_outputs
        self.hidden, self.depth = hidden, depth
        layers: list[nn.Module] = []
        width = n_inputs + n_controls
        for _ in range(depth):
            layers += [nn.Linear(width, hidden, dtype=torch.float64), nn.SiLU()]
            width = hidden
        layers.append(nn.Linear(width, n_outputs, dtype=torch.float64))
        self.net = nn.Sequential(*layers)
        d = n_inputs + n_controls
        self.register_buffer("in_mean", torch.zeros(d, dtype=torch.float64))
        self.register_buffer("in_std", torch.ones(d, dtype=torch.float64))
        self.register_buffer("out_mean", torch.zeros(n_outputs, dtype=torch.float64))
        self.register_buffer("out_std", torch.ones(n_outputs, dtype=torch.float64))

    @property
    def modes(self) -> int:
        return self.n_outputs

    def set_normalisation(self, features: torch.Tensor, targets: torch.Tensor) -> None:
        """Standardise with the statistics of ``features`` (M, N_in + H) and ``targets`` (M, N_out)."""
        with torch.no_grad():
            self.in_mean.copy_(features.mean(0))
            self.in_std.copy_(features.std(0).clamp_min(1e-6))
            self.out_mean.copy_(targets.mean(0))
            self.out_std.copy_(targets.std(0).clamp_min(1e-6))

    def features(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        x = x.to(torch.float64)
        u = u.to(torch.float64)
        if x.shape[-1] != self.n_inputs or u.shape[-1] != self.n_controls:
            raise ValueError(f"learned twin expects inputs (..., {self.n_inputs}) and controls "
                             f"(..., {self.n_controls}), got {tuple(x.shape)} and {tuple(u.shape)}")
        uu = u.unsqueeze(-2).expand(*x.shape[:-1], self.n_controls)
        return torch.cat([x, uu], -1)

    def forward(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        z = (self.features(x, u) - self.in_mean) / self.in_std
        return self.net(z) * self.out_std + self.out_mean

    # --- persistence ---
    def save(self, path: str | Path, meta: dict | None = None) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        blob = {"format": "labsat-learned-twin", "version": 1,
                "sizes": [self.n_inputs, self.n_controls, self.n_outputs, self.hidden, self.depth],
                "state_dict": self.state_dict(), "meta": meta or {}}
        tmp = path.with_suffix(path.suffix + ".tmp")
        torch.save(blob, tmp)
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> tuple["LearnedTwin", dict]:
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"{path}: no such learned twin file")
        blob = torch.load(path, map_location="cpu", weights_only=False)
        if not isinstance(blob, dict) or blob.get("format") != "labsat-learned-twin":
            raise ValueError(f"{path}: not a labsat learned twin file")
        twin = cls(*blob["sizes"])
        twin.load_state_dict(blob["state_dict"])
        return twin, blob["meta"]
