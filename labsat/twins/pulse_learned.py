"""A learned (neural network) twin for a physical system whose physics is treated as unknown.

As in physics-aware training (Wright et al., Nature 2022), the twin is a multilayer perceptron fitted to
measured ``(input x, parameters u) -> output y`` triples; it only has to give useful gradients near the
parameters in use, and is refreshed during online training with data measured near the current
parameters (:func:`refresh`).

Inputs to the network: ``x``, ``cos/sin(pi x)``, ``cos/sin(2 pi u)`` (the parameters are spectral phases,
so a period of one control unit is the one thing assumed); outputs are standardised with the
measured mean and spread. Works with any hardware object offering ``forward(x, u) -> y`` (numpy).
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch
from torch import nn


class LearnedTwin(nn.Module):
    def __init__(self, n_inputs: int, n_controls: int, n_outputs: int, hidden: int = 128, depth: int = 3,
                 seed: int = 0):
        super().__init__()
        self._n_in, self._n_ctrl, self._n_out = int(n_inputs), int(n_controls), int(n_outputs)
        self.hidden, self.depth = int(hidden), int(depth)
        g = torch.Generator().manual_seed(seed)
        width = 3 * self._n_in + 2 * self._n_ctrl
        layers: list[nn.Module] = []
        for k in range(depth):
            lin = nn.Linear(width if k == 0 else hidden, hidden, dtype=torch.float64)
            layers += [lin, nn.SiLU()]
        layers.append(nn.Linear(hidden, self._n_out, dtype=torch.float64))
        self.net = nn.Sequential(*layers)
        with torch.no_grad():  # reproducible initialisation
            for p in self.net.parameters():
                bound = 1 / math.sqrt(p.shape[-1]) if p.dim() > 1 else 0.05
                p.uniform_(-bound, bound, generator=g)
        self.register_buffer("y_mean", torch.zeros(self._n_out, dtype=torch.float64))
        self.register_buffer("y_std", torch.ones(self._n_out, dtype=torch.float64))
        self.requires_grad_(False)  # fitted from measurements, not by training

    # --- the interface every twin offers (labsat.kinds) ---
    @property
    def n_controls(self) -> int:
        return self._n_ctrl

    @property
    def n_inputs(self) -> int:
        return self._n_in

    @property
    def n_outputs(self) -> int:
        return self._n_out

    def features(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        x = x.to(torch.float64)
        u = u.to(torch.float64)
        if u.dim() == x.dim() - 1:  # one control setting per batch of inputs
            u = u.unsqueeze(-2).expand(*x.shape[:-1], u.shape[-1])
        return torch.cat([x, torch.cos(math.pi * x), torch.sin(math.pi * x),
                          torch.cos(2 * math.pi * u), torch.sin(2 * math.pi * u)], -1)

    def forward(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """Outputs (B, M) for x (B, N), u (H,); or (K, B, M) for x (K, B, N), u (K, H)."""
        return self.y_mean + self.y_std * self.net(self.features(x, u))

    # --- persistence ---
    def fitted_state(self) -> dict:
        state = {k: v.detach().cpu().tolist() for k, v in self.state_dict().items()}
        return {"arch": [self._n_in, self._n_ctrl, self._n_out, self.hidden, self.depth], "weights": state}

    def load_fitted_state(self, state: dict) -> None:
        if "arch" not in state or "weights" not in state:
            raise KeyError("calibration is not a learned twin (needs 'arch' and 'weights')")
        mine = [self._n_in, self._n_ctrl, self._n_out, self.hidden, self.depth]
        if list(state["arch"]) != mine:
            raise ValueError(f"learned twin of shape {state['arch']} does not fit this layer ({mine}: inputs, "
                             f"controls, outputs, hidden, depth)")
        self.load_state_dict({k: torch.as_tensor(v, dtype=torch.float64) for k, v in state["weights"].items()})


def _flatten(data) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Measurements (u (K, H), x (K, B, N), p (K, B, M)) -> per-sample rows."""
    k, b = data.x.shape[:2]
    x = torch.as_tensor(data.x.reshape(k * b, -1), dtype=torch.float64)
    u = torch.as_tensor(np.repeat(data.u, b, axis=0), dtype=torch.float64)
    y = torch.as_tensor(data.p.reshape(k * b, -1), dtype=torch.float64)
    return x, u, y


def train_twin(twin: LearnedTwin, x: torch.Tensor, u: torch.Tensor, y: torch.Tensor, epochs: int = 200,
               lr: float = 3e-3, batch_size: int = 256, seed: int = 0, renormalise: bool = True,
               progress: Callable[[int, int, float], None] | None = None) -> list[float]:
    """Fit the network to rows ``(x, u) -> y`` (mean squared error in standardised units)."""
    if renormalise:
        with torch.no_grad():
            twin.y_mean.copy_(y.mean(0))
            twin.y_std.copy_(y.std(0).clamp_min(1e-6))
    params = list(twin.net.parameters())
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small matrices: extra threads only fight over the cores
    for p in params:
        p.requires_grad_(True)
    history: list[float] = []
    try:
        opt = torch.optim.Adam(params, lr=lr)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(epochs, 1))
        g = torch.Generator().manual_seed(seed)
        feats = twin.features(x, u)
        target = (y - twin.y_mean) / twin.y_std
        n = len(x)
        for epoch in range(epochs):
            order = torch.randperm(n, generator=g)
            total = 0.0
            for s in range(0, n, batch_size):
                idx = order[s:s + batch_size]
                opt.zero_grad()
                loss = torch.mean((twin.net(feats[idx]) - target[idx]) ** 2)
                loss.backward()
                opt.step()
                total += loss.item() * len(idx)
            sched.step()
            history.append(total / n)
            if progress:
                progress(epoch + 1, epochs, history[-1])
    finally:
        torch.set_num_threads(threads)
        for p in params:
            p.requires_grad_(False)
            p.grad = None
    return history


def fit_learned(twin: LearnedTwin, data, epochs: int = 200, progress=None) -> list[float]:
    """Fit a learned twin to calibration measurements (:class:`labsat.calibration.Measurements`)."""
    x, u, y = _flatten(data)
    return train_twin(twin, x, u, y, epochs=epochs, progress=progress)


@torch.no_grad()
def prediction_error(twin: LearnedTwin, data) -> dict[str, float]:
    """Held-out error of the twin, and of the best constant predictor (the data's mean) for scale."""
    x, u, y = _flatten(data)
    err = twin(x, u) - y
    const = y - y.mean(0)
    return {"rmse": float(err.pow(2).mean().sqrt()), "constant_rmse": float(const.pow(2).mean().sqrt()),
            "r2": float(1 - err.pow(2).sum() / const.pow(2).sum())}


class TwinRefresher:
    """Refresh a learned twin during online training: measure near the current parameters, fine-tune.

    ``refresh(u, x_pool)``: ``settings`` parameter vectors ``u + N(0, spread)`` (clipped to [0, 1]), each
    with ``inputs`` inputs drawn from ``x_pool``, measured on ``hardware``; the new rows join a replay
    buffer (old calibration rows kept) and the twin is fine-tuned for ``epochs`` epochs on it.
    """

    def __init__(self, twin: LearnedTwin, hardware, calibration=None, settings: int = 8, inputs: int = 16,
                 spread: float = 0.05, epochs: int = 30, max_rows: int = 20000, seed: int = 0):
        self.twin, self.hardware = twin, hardware
        self.settings, self.inputs, self.spread, self.epochs = settings, inputs, spread, epochs
        self.max_rows = max_rows
        self.rng = np.random.default_rng(seed)
        self.rows = _flatten(calibration) if calibration is not None else None
        self.refreshes = 0
        self.samples = 0

    def refresh(self, u: np.ndarray, x_pool: np.ndarray) -> float:
        """One refresh; returns the twin's error on the new measurements before fine-tuning (std units)."""
        u = np.asarray(u, dtype=float)
        xs, us, ys = [], [], []
        for _ in range(self.settings):
            uk = np.clip(u + self.spread * self.rng.standard_normal(u.shape), 0.0, 1.0)
            xk = x_pool[self.rng.choice(len(x_pool), self.inputs, replace=False)]
            ys.append(self.hardware.forward(xk, uk))
            xs.append(xk)
            us.append(np.repeat(uk[None], len(xk), axis=0))
            self.samples += len(xk)
        x = torch.as_tensor(np.concatenate(xs), dtype=torch.float64)
        uu = torch.as_tensor(np.concatenate(us), dtype=torch.float64)
        y = torch.as_tensor(np.concatenate(ys), dtype=torch.float64)
        with torch.no_grad():
            before = float((((self.twin(x, uu) - y) / self.twin.y_std) ** 2).mean())
        if self.rows is None:
            self.rows = (x, uu, y)
        else:  # new rows first, oldest dropped beyond max_rows; the new data weigh twice
            self.rows = tuple(torch.cat([new, new, old])[:self.max_rows] for new, old in zip((x, uu, y), self.rows))
        train_twin(self.twin, *self.rows, epochs=self.epochs, lr=1e-3, renormalise=False,
                   seed=int(self.rng.integers(1 << 30)))
        self.refreshes += 1
        return before
