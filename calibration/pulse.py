"""Fits of the pulse kind's learned twins (:mod:`labsat.twins.pulse_learned`): train a twin or an ensemble on
measured ``(x, u) -> y`` rows (:func:`fit_learned`, the pulse kind's ``Kind.fit``; :func:`train_twin`),
the variable-projection fit of the SHG-structured twin (:func:`fit_shg`), the held-out error
(:func:`prediction_error`), and the refits during online training: :class:`OnlineRefresh` (from training's own
measurements, the pulse kind's default; started by the twin through its ``refresher``) and
:class:`TwinRefresher` (extra measurements near the parameters in use).
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from labsat.twins.pulse_learned import ShgTwin, TwinEnsemble

from .fit import fitting


def _flatten(data) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Measurements (u (K, H), x (K, B, N), p (K, B, M)) -> per-sample rows."""
    k, b = data.x.shape[:2]
    x = torch.as_tensor(data.x.reshape(k * b, -1), dtype=torch.float64)
    u = torch.as_tensor(np.repeat(data.u, b, axis=0), dtype=torch.float64)
    y = torch.as_tensor(data.p.reshape(k * b, -1), dtype=torch.float64)
    return x, u, y


def train_twin(twin: nn.Module, x: torch.Tensor, u: torch.Tensor, y: torch.Tensor, epochs: int = 200,
               lr: float = 3e-3, batch_size: int = 256, seed: int = 0, renormalise: bool = True,
               weight_decay: float = 0.0,
               progress: Callable[[int, int, float], None] | None = None) -> list[float]:
    """Fit a learned twin to rows ``(x, u) -> y`` (mean squared error in standardised units).

    An ensemble trains each member in turn (its own seed: initialisation differs, and so does the data
    order); the returned history is the members' mean loss per epoch.
    """
    if isinstance(twin, TwinEnsemble):
        runs = [train_twin(m, x, u, y, epochs, lr, batch_size, seed + 7919 * k, renormalise, weight_decay,
                           None if progress is None else
                           (lambda e, n, loss, k=k: progress(k * n + e, n * len(twin.members), loss)))
                for k, m in enumerate(twin.members)]
        return [float(np.mean(v)) for v in zip(*runs)]
    if renormalise:
        with torch.no_grad():
            twin.y_mean.copy_(y.mean(0))
            twin.y_std.copy_(y.std(0).clamp_min(1e-6))
    target = (y - twin.y_mean) / twin.y_std
    if isinstance(twin, ShgTwin):  # few parameters of its own: variable projection, not epochs of Adam
        if renormalise:  # a calibration: the whole fit
            return fit_shg(twin, x, u, target, steps=min(max(epochs, 1), 6), seed=seed, progress=progress)
        # a refresh (online, on a window near the parameters in use): the detector map only, ridge toward
        # the present one. The pulse spectrum stays: fitted to a narrow window it overfits (on the CI
        # station one L-BFGS step on 96 rows raised the error near those parameters by 60 %); what drifts
        # on a bench (phase matching with the crystal's temperature, detector gains) is in the detector map.
        return fit_shg(twin, x, u, target, steps=0, ridge=1e-2, keep_detector=True, seed=seed)
    params = list(twin.parameters())
    history: list[float] = []
    with fitting(params):
        opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(epochs, 1))
        g = torch.Generator().manual_seed(seed)
        n = len(x)
        for epoch in range(epochs):
            order = torch.randperm(n, generator=g)
            total = 0.0
            for s in range(0, n, batch_size):
                idx = order[s:s + batch_size]
                opt.zero_grad()
                loss = torch.mean((twin.standardised(x[idx], u[idx]) - target[idx]) ** 2)
                loss.backward()
                opt.step()
                total += loss.item() * len(idx)
            sched.step()
            history.append(total / n)
            if progress:
                progress(epoch + 1, epochs, history[-1])
    return history


@torch.no_grad()
def _median_spread(twin: TwinEnsemble, x: torch.Tensor, u: torch.Tensor) -> float:
    return float(torch.cat([twin.spread(x[i:i + 4096], u[i:i + 4096]) for i in range(0, len(x), 4096)]).median())


def fit_learned(twin: nn.Module, data, epochs: int = 200, progress=None, **options) -> list[float]:
    """Fit a learned twin (or ensemble) to calibration measurements (:class:`labsat.calibration.Measurements`).

    An ensemble's ``reference_spread`` becomes the members' median disagreement on these measurements.
    """
    x, u, y = _flatten(data)
    history = train_twin(twin, x, u, y, epochs=epochs, progress=progress, **options)
    if isinstance(twin, TwinEnsemble):
        twin.reference_spread.fill_(_median_spread(twin, x, u))
    return history


@torch.no_grad()
def prediction_error(twin: nn.Module, data) -> dict[str, float]:
    """Held-out error of the twin, and of the best constant predictor (the data's mean) for scale.

    ``r2`` is pooled over all outputs: 1 - sum of squared errors / sum of squared deviations from each
    output's mean.
    """
    x, u, y = _flatten(data)
    pred = torch.cat([twin(x[i:i + 4096], u[i:i + 4096]) for i in range(0, len(x), 4096)])
    err = pred - y
    const = y - y.mean(0)
    return {"rmse": float(err.pow(2).mean().sqrt()), "constant_rmse": float(const.pow(2).mean().sqrt()),
            "r2": float(1 - err.pow(2).sum() / const.pow(2).sum())}


class OnlineRefresh:
    """Refresh a learned twin from the measurements online training makes anyway.

    Every hardware forward of a training step hands its ``(x, u, y)`` to :meth:`observe` (through
    :class:`labsat.physical.PhysicalLayer`); once ``every`` new rows have come in, the twin is fine-tuned
    for ``epochs`` epochs on the newest ``window`` rows (all measured near the parameters in use), at a
    small learning rate so it does not forget what calibration taught it. No extra queries are made.

    ``errors`` records, per refresh, the twin's error on the new rows before fine-tuning (standardised
    units); ``refreshes`` and ``rows_seen`` count.

    **Measure more where the members disagree** (optional: ``hardware`` and ``probe_threshold``): for each
    observed batch the ensemble's disagreement (:meth:`TwinEnsemble.spread`, mean over the batch) is compared
    with its ``reference_spread`` (the median on the calibration data); ``disagreement`` records the ratio.
    When it exceeds ``probe_threshold``, ``probe_settings`` extra settings ``u + N(0, probe_sigma)`` (clipped
    to [0, 1]) are measured on ``hardware`` at ``probe_inputs`` of the batch's inputs and join the rows the
    next refresh fits; ``probes`` and ``probe_queries`` count them (the hardware counts them as queries too).
    """

    def __init__(self, twin: nn.Module, every: int = 512, window: int = 4096, epochs: int = 4, lr: float = 3e-4,
                 seed: int = 0, hardware=None, probe_threshold: float | None = None, probe_settings: int = 4,
                 probe_sigma: float = 0.02, probe_inputs: int = 8):
        if every < 1 or window < every or epochs < 1 or lr <= 0:
            raise ValueError("online refresh: every >= 1, window >= every, epochs >= 1 and lr > 0 are required")
        if probe_threshold is not None and (hardware is None or probe_threshold <= 0 or probe_settings < 1
                                            or probe_inputs < 1 or probe_sigma <= 0):
            raise ValueError("online refresh: probing needs hardware, probe_threshold > 0, probe_settings >= 1, "
                             "probe_inputs >= 1 and probe_sigma > 0")
        self.twin, self.every, self.window, self.epochs, self.lr = twin, int(every), int(window), int(epochs), lr
        self.seed = seed
        self.hardware, self.probe_threshold = hardware, probe_threshold
        self.probe_settings, self.probe_sigma, self.probe_inputs = int(probe_settings), probe_sigma, int(probe_inputs)
        self._rng = np.random.default_rng(seed + 7919)
        self._rows: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
        self._pending = 0
        self.rows_seen = 0
        self.refreshes = 0
        self.errors: list[float] = []
        self.disagreement: list[float] = []
        self.probes = 0
        self.probe_queries = 0

    def observe(self, x: torch.Tensor, u: torch.Tensor, y: torch.Tensor) -> None:
        x = x.detach().to(torch.float64).reshape(-1, x.shape[-1])
        uu = u.detach().to(torch.float64)
        uu = uu.expand(len(x), uu.shape[-1]) if uu.dim() == 1 else uu.reshape(-1, uu.shape[-1])
        y = torch.as_tensor(y, dtype=torch.float64).detach().reshape(len(x), -1)
        self._rows.append((x, uu.clone(), y))
        if self.probe_threshold is not None:
            self._probe(x, uu)
        self._pending += len(x)
        self.rows_seen += len(x)
        kept, total = [], 0
        for rows in reversed(self._rows):
            if total >= self.window:
                break
            kept.append(rows)
            total += len(rows[0])
        self._rows = kept[::-1]
        if self._pending >= self.every:
            self.refresh()

    def _probe(self, x: torch.Tensor, u: torch.Tensor) -> None:
        """Record the members' disagreement on this batch; past the threshold, measure around its parameters."""
        ref = float(getattr(self.twin, "reference_spread", 0.0))
        if ref <= 0 or not hasattr(self.twin, "spread"):
            return
        ratio = float(self.twin.spread(x, u).mean()) / ref
        self.disagreement.append(ratio)
        if ratio <= self.probe_threshold:
            return
        rows = measure_near(self.hardware, u[0].numpy(), x.numpy(), self.probe_settings, self.probe_inputs,
                            self.probe_sigma, self._rng)
        self._rows.append(rows)
        self._pending += len(rows[0])
        self.rows_seen += len(rows[0])
        self.probes += 1
        self.probe_queries += len(rows[0])

    def refresh(self) -> None:
        x, u, y = (torch.cat(t)[-self.window:] for t in zip(*self._rows))
        new = slice(len(x) - self._pending, len(x))
        with torch.no_grad():
            std = self.twin.y_std
            self.errors.append(float((((self.twin(x[new], u[new]) - y[new]) / std) ** 2).mean()))
        train_twin(self.twin, x, u, y, epochs=self.epochs, lr=self.lr, batch_size=128, renormalise=False,
                   seed=self.seed + self.refreshes)
        self._pending = 0
        self.refreshes += 1


class TwinRefresher:
    """Refresh a learned twin during online training: measure near the current parameters, fine-tune.

    ``refresh(u, x_pool)``: ``settings`` parameter vectors ``u + N(0, spread)`` (clipped to [0, 1]), each
    with ``inputs`` inputs drawn from ``x_pool``, measured on ``hardware``; the new rows join a replay
    buffer (old calibration rows kept) and the twin is fine-tuned for ``epochs`` epochs on it.
    """

    def __init__(self, twin: nn.Module, hardware, calibration=None, settings: int = 8, inputs: int = 16,
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
        x, uu, y = measure_near(self.hardware, np.asarray(u, dtype=float), x_pool, self.settings, self.inputs,
                                self.spread, self.rng)
        self.samples += len(x)
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


def measure_near(hardware, u: np.ndarray, x_pool: np.ndarray, settings: int, inputs: int, spread: float,
                 rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``settings`` parameter vectors ``u + N(0, spread)`` (clipped to [0, 1]), each measured on ``hardware`` at
    ``inputs`` rows of ``x_pool`` (without replacement; all of them if fewer): per-sample rows ``(x, u, y)``."""
    xs, us, ys = [], [], []
    for _ in range(settings):
        uk = np.clip(u + spread * rng.standard_normal(u.shape), 0.0, 1.0)
        xk = np.asarray(x_pool)[rng.choice(len(x_pool), min(inputs, len(x_pool)), replace=False)]
        ys.append(np.asarray(hardware.forward(xk, uk)))
        xs.append(xk)
        us.append(np.repeat(uk[None], len(xk), axis=0))
    return tuple(torch.as_tensor(np.concatenate(a), dtype=torch.float64) for a in (xs, us, ys))


def _solve_detector(f: torch.Tensor, target: torch.Tensor, ridge: float, prior: torch.Tensor | None):
    """Least-squares detector map (weights and bias, (S + 1, M)) for SH powers ``f``, ridge toward ``prior``."""
    a = torch.cat([f, torch.ones(len(f), 1, dtype=f.dtype)], 1)
    gram = a.T @ a
    # toward a prior: relative to the data's own scale (a window near one setting has few directions)
    lam = ridge * float(gram.diagonal().mean()) if prior is not None else ridge * len(f)
    rhs = a.T @ target + (lam * prior if prior is not None else 0.0)
    return torch.linalg.solve(gram + lam * torch.eye(a.shape[1], dtype=f.dtype), rhs)


def fit_shg(twin: ShgTwin, x: torch.Tensor, u: torch.Tensor, target: torch.Tensor, steps: int = 6,
            rows: int = 2048, ridge: float = 1e-4, keep_detector: bool = False, seed: int = 0,
            progress: Callable[[int, int, float], None] | None = None) -> list[float]:
    """Fit an :class:`ShgTwin` to standardised targets by variable projection: L-BFGS on the spectrum and
    leakage, with the detector map solved in closed form (ridge least squares) at every evaluation, on
    ``rows`` rows drawn at random; then the detector on all rows. ``keep_detector``: ridge toward the present
    detector instead of toward zero (an online refresh on a narrow window should not forget the rest)."""
    g = torch.Generator().manual_seed(seed)
    sub = torch.randperm(len(x), generator=g)[:rows]
    xs, us, ts = x[sub], u[sub], target[sub]
    prior = (torch.cat([twin.detector.weight.T, twin.detector.bias[None]]).detach().clone()
             if keep_detector else None)
    params = [twin.env_re, twin.env_im, twin.leak]
    opt = torch.optim.LBFGS(params, lr=1, max_iter=20, history_size=20, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        f = twin.sh_power(xs, us)
        w = _solve_detector(f.detach(), ts, ridge, prior)  # variable projection: the optimum's gradient
        loss = ((torch.cat([f, torch.ones(len(f), 1, dtype=f.dtype)], 1) @ w - ts) ** 2).mean()
        loss.backward()
        return loss

    history: list[float] = []
    with fitting(params):
        for step in range(steps):
            history.append(float(opt.step(closure).detach()))
            if progress:
                progress(step + 1, steps, history[-1])
        with torch.no_grad():  # the detector on all rows
            f = torch.cat([twin.sh_power(x[i:i + 4096], u[i:i + 4096]) for i in range(0, len(x), 4096)])
            w = _solve_detector(f, target, ridge, prior)
            twin.detector.weight.copy_(w[:-1].T)
            twin.detector.bias.copy_(w[-1])
            history.append(float(((twin.detector(f) - target) ** 2).mean()))
    return history
