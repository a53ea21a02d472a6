"""Calibrate a system with unknown physics: collect (x, u) -> y pairs and train a neural twin.

Works with any hardware object with ``.forward(x, u)``, ``.n_controls`` and ``.modes`` (the number of
inputs; outputs are counted from the first reading). Two ways to sample controls:

* **global**: ``u`` uniform in [0, 1] -- a twin of the whole control space (hard for a mesh, whose
  outputs oscillate several times across the range of each of its heaters);
* **active / local**: ``u`` Gaussian around the controls being trained (clipped to [0, 1]), as
  physics-aware training needs an accurate gradient *where it trains*. :func:`refine_near` adds such
  readings and fine-tunes the twin.

Every report has the held-out RMSE next to that of a constant predictor (the training mean), so a
twin that learned nothing shows it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from labsat.twins.learned import LearnedTwin

from .measure import Measurements
from .sweeps import concat


def collect(hardware, settings: int, inputs_per_setting: int, seed: int = 0,
            center: np.ndarray | None = None, sigma: float = 0.05,
            progress: Callable[[int, int], None] | None = None) -> Measurements:
    """Random control settings (uniform, or Gaussian around ``center``) x random inputs in [0, 1]."""
    if settings < 1 or inputs_per_setting < 1:
        raise ValueError("collect needs at least one setting and one input per setting")
    rng = np.random.default_rng(seed)
    h, n = hardware.n_controls, hardware.modes
    if center is None:
        us = rng.uniform(0.0, 1.0, (settings, h))
    else:
        center = np.asarray(center, dtype=float)
        if center.shape != (h,):
            raise ValueError(f"center must have {h} controls, got shape {center.shape}")
        if sigma <= 0:
            raise ValueError(f"sigma must be > 0, got {sigma}")
        us = np.clip(center + sigma * rng.standard_normal((settings, h)), 0.0, 1.0)
    xs = rng.uniform(0.0, 1.0, (settings, inputs_per_setting, n))
    ps = []
    for k in range(settings):
        ps.append(np.asarray(hardware.forward(xs[k], us[k]), dtype=float))
        if progress:
            progress(k + 1, settings)
    return Measurements(us, xs, np.stack(ps))


def _flat(data: Measurements) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    k, b, _ = data.x.shape
    x = torch.as_tensor(data.x.reshape(k * b, -1), dtype=torch.float64)
    u = torch.as_tensor(np.repeat(data.u, b, 0), dtype=torch.float64)
    y = torch.as_tensor(data.p.reshape(k * b, -1), dtype=torch.float64)
    return x, u, y


def predict(twin: LearnedTwin, data: Measurements) -> np.ndarray:
    x, u, _ = _flat(data)
    with torch.no_grad():
        out = torch.cat([twin(x[i:i + 4096].unsqueeze(1), u[i:i + 4096]).squeeze(1)
                         for i in range(0, len(x), 4096)])
    return out.numpy().reshape(data.p.shape)


def heldout_report(twin: LearnedTwin, train: Measurements, held: Measurements) -> dict[str, float]:
    """Held-out RMSE of the twin and of a constant predictor (mean of the training outputs)."""
    err = predict(twin, held) - held.p
    const = held.p - train.p.reshape(-1, train.p.shape[-1]).mean(0)
    return {"rmse": float(np.sqrt(np.mean(err**2))), "constant_rmse": float(np.sqrt(np.mean(const**2))),
            "max_abs": float(np.max(np.abs(err))), "n": int(err.size)}


@dataclass
class LearnedFit:
    twin: LearnedTwin
    train: Measurements
    held: Measurements
    report: dict
    history: list[float] = field(default_factory=list)


def train_twin(twin: LearnedTwin, data: Measurements, epochs: int = 200, lr: float = 3e-3,
               batch_size: int = 64, seed: int = 0, weight_decay: float = 1e-6,
               progress: Callable[[int, int, float], None] | None = None) -> list[float]:
    """Fit ``twin`` to ``data`` (MSE, Adam with cosine decay); returns the per-epoch loss."""
    x, u, y = _flat(data)
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    opt = torch.optim.AdamW(twin.parameters(), lr=lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(1, epochs))
    history = []
    scale = twin.out_std
    for epoch in range(epochs):
        order = torch.randperm(len(x), generator=gen)
        total = 0.0
        for start in range(0, len(x), batch_size):
            idx = order[start:start + batch_size]
            opt.zero_grad()
            pred = twin(x[idx].unsqueeze(1), u[idx]).squeeze(1)
            loss = torch.mean(((pred - y[idx]) / scale) ** 2)
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        sched.step()
        history.append(total / len(x))
        if progress:
            progress(epoch + 1, epochs, history[-1])
    return history


def fit_learned_twin(data: Measurements, holdout: float = 0.2, hidden: int = 128, depth: int = 3,
                     epochs: int = 200, lr: float = 3e-3, seed: int = 0,
                     progress: Callable[[int, int, float], None] | None = None) -> LearnedFit:
    """Train a fresh MLP twin on ``data`` (settings split into train / held-out)."""
    train, held = data.split(holdout, seed=seed)
    torch.manual_seed(seed)
    twin = LearnedTwin(data.x.shape[-1], data.u.shape[-1], data.p.shape[-1], hidden, depth)
    x, u, y = _flat(train)
    twin.set_normalisation(twin.features(x.unsqueeze(1), u).squeeze(1), y)
    history = train_twin(twin, train, epochs=epochs, lr=lr, seed=seed, progress=progress)
    return LearnedFit(twin, train, held, heldout_report(twin, train, held), history)


def refine_near(fit: LearnedFit, hardware, center: np.ndarray, settings: int = 32, inputs_per_setting: int = 16,
                sigma: float = 0.05, epochs: int = 100, lr: float = 1e-3, seed: int = 1) -> dict:
    """Active sampling: add readings Gaussian around ``center``, fine-tune, report the local error.

    Returns the local held-out RMSE (fresh readings near ``center``, not used in training) before
    and after, and that of a constant predictor.
    """
    local = collect(hardware, settings, inputs_per_setting, seed=seed, center=center, sigma=sigma)
    local_train, local_held = local.split(0.25, seed=seed)
    before = heldout_report(fit.twin, fit.train, local_held)
    joined = concat(fit.train, local_train)
    train_twin(fit.twin, joined, epochs=epochs, lr=lr, seed=seed)
    after = heldout_report(fit.twin, local_train, local_held)
    fit.train = joined
    return {"before": before, "after": after, "sigma": sigma, "readings": settings * inputs_per_setting}
