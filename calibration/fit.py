"""Fit the twin's imperfections to measurements (global least squares in torch).

Starts from the twin's present values (nominal for a fresh twin) and minimises the mean squared error
between predicted and measured normalised powers, with Adam then L-BFGS. The heaters' thermal crosstalk is
clamped to >= 0 after the fit and the fit is repeated where that clamp costs accuracy (``_physical``, round 8).
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Callable

import numpy as np
import torch

from labsat.twins.mzi import FIT_PARAMETERS, MZIMeshTwin

from .measure import Measurements


def predict(twin: MZIMeshTwin, data: Measurements) -> torch.Tensor:
    x = torch.as_tensor(data.x, dtype=torch.float64)
    u = torch.as_tensor(data.u, dtype=torch.float64)
    return twin(x, u)


def _loss(twin: MZIMeshTwin, data: Measurements, dtype: torch.dtype) -> Callable[[], torch.Tensor]:
    """Mean squared error of ``twin`` on ``data``, the mesh computed in ``dtype`` (tensors made once)."""
    x = torch.as_tensor(data.x).to(dtype)
    u = torch.as_tensor(data.u, dtype=torch.float64)
    target = torch.as_tensor(data.p, dtype=torch.float64)
    if dtype == torch.float64:
        return lambda: torch.mean((twin(x, u) - target) ** 2)
    return lambda: torch.mean((twin(x, u, dtype=dtype) - target) ** 2)


def rmse(twin: MZIMeshTwin, data: Measurements) -> float:
    with torch.no_grad():
        return float(torch.sqrt(torch.mean((predict(twin, data) - torch.as_tensor(data.p)) ** 2)))


@contextmanager
def fitting(params: list[torch.Tensor], threads: int = 1):
    """While a fit runs: ``params`` trainable, gradients on (also inside a hardware forward's no-grad mode), torch
    on ``threads`` intra-op threads (1 for small tensors, where extra threads only fight over the cores).
    Afterwards the parameters are frozen again without gradients, as the twins keep them (fitted by
    calibration, not by training), and the thread count is restored. Every fit in calibration/ runs inside it."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    for p in params:
        p.requires_grad_(True)
    try:
        with torch.enable_grad():
            yield
    finally:
        torch.set_num_threads(before)
        for p in params:
            p.requires_grad_(False)
            p.grad = None


def least_squares(params: list[torch.Tensor], loss_fn: Callable[[], torch.Tensor], adam_steps: int = 300,
                  lbfgs_steps: int = 100, lr: float = 0.02,
                  progress: Callable[[int, int, float], None] | None = None,
                  elements_per_op: int = 0, grad_masks: list[torch.Tensor | None] | None = None) -> list[float]:
    """Minimise ``loss_fn()`` over ``params`` in place: Adam from their present values, then L-BFGS.

    The fit every analytic twin uses; returns the loss history. The parameters are left without
    gradients, as the twins keep them (twins are fitted by calibration, not by training).
    ``elements_per_op``: the size of the loss's largest tensors; the intra-op thread count follows it
    (:func:`labsat.defaults.torch_threads`: 1 for small tensors, where extra threads only fight over the
    cores; every core for a 64-mode mesh's K × N × N transfer matrices).
    ``grad_masks``: per parameter, 0/1 weights of its gradient (None: all of it), so that only part of a
    tensor moves (the windowed fit, calibration/windowed.py).
    """
    from labsat.defaults import torch_threads

    def backward(loss):
        loss.backward()
        for p, m in zip(params, grad_masks or ()):
            if m is not None and p.grad is not None:
                p.grad.mul_(m)

    history: list[float] = []
    total = adam_steps + (1 if lbfgs_steps else 0)
    with fitting(params, threads=torch_threads(elements_per_op)):
        opt = torch.optim.Adam(params, lr=lr)
        for i in range(adam_steps):
            opt.zero_grad()
            loss = loss_fn()
            backward(loss)
            opt.step()
            history.append(loss.item())
            if progress:
                progress(i + 1, total, history[-1])
        if lbfgs_steps:
            lbfgs = torch.optim.LBFGS(params, lr=1.0, max_iter=lbfgs_steps, line_search_fn="strong_wolfe")

            def closure():
                lbfgs.zero_grad()
                loss = loss_fn()
                backward(loss)
                return loss

            lbfgs.step(closure)
            with torch.no_grad():
                history.append(loss_fn().item())
            if progress:
                progress(total, total, history[-1])
    return history


def fit_twin(twin: MZIMeshTwin, data: Measurements, adam_steps: int = 300, lbfgs_steps: int = 100,
             lr: float = 0.02, progress: Callable[[int, int, float], None] | None = None,
             parameters: tuple[str, ...] = FIT_PARAMETERS, dtype: torch.dtype | None = None) -> list[float]:
    """Fit in place, starting from the twin's present values; returns the loss history.

    Readings measured in control bands (``data.band``, meshes above 8 modes) are fitted band by band
    (:func:`fit_in_bands`).

    ``parameters``: which of the twin's imperfections to fit (the others stay as they are).
    ``dtype``: precision of the mesh in the fit; default float64, float32 for banded readings
    (:func:`fit_in_bands`).
    """
    unknown = set(parameters) - set(FIT_PARAMETERS)
    if unknown:
        raise ValueError(f"unknown twin parameters {sorted(unknown)}; choose from {', '.join(FIT_PARAMETERS)}")
    if getattr(data, "band", None) is not None and len(np.unique(data.band)) > 1:
        # readings in control bands: fit band by band (large meshes; calibration/progressive.py)
        return fit_in_bands(twin, data, adam_steps=adam_steps, lbfgs_steps=lbfgs_steps, lr=lr,
                            progress=progress, parameters=parameters,
                            dtype=dtype or torch.float32)
    params = [getattr(twin, k) for k in parameters]
    loss_fn = _loss(twin, data, dtype or torch.float64)
    size = len(data.u) * twin.modes * twin.modes
    history = least_squares(params, loss_fn, adam_steps, lbfgs_steps, lr, progress, elements_per_op=size)
    # a refit reports its steps through ``progress`` too (counted afresh: the bar starts again rather than stalling)
    history += _physical(twin, loss_fn, lambda: least_squares(params, loss_fn, min(REFIT_ADAM_STEPS, adam_steps),
                                                                  lbfgs_steps, REFIT_LR, progress, elements_per_op=size))
    return history


# A fit may pay a heater pair's thermal crosstalk negative (unphysical: heat only spreads) to make up for an offset
# stuck on the wrong side of a fringe; clamping it to 0 afterwards can then undo most of the fit (N = 64, labsat's
# model, round 8: train RMSE 1.25x -> 2.29x the noise floor). ``_physical`` clamps and, where that costs more than
# REFIT_TOLERANCE of the RMSE, fits again from the clamped point (small Adam steps, then L-BFGS: the bands'
# refinement) and clamps again, up to REFITS times while each refit gains REFIT_TOLERANCE, keeping the best clamped fit.
REFITS = 3
REFIT_TOLERANCE = 0.02
REFIT_ADAM_STEPS = 40
REFIT_LR = 0.003


def _physical(twin: MZIMeshTwin, loss_fn: Callable[[], torch.Tensor], refit: Callable[[], list[float]],
              refits: int | None = None) -> list[float]:
    """Crosstalk clamped to >= 0, refitted while the clamp costs RMSE; returns the losses it adds to the history
    (the last one: the clamped twin's loss)."""
    history: list[float] = []
    best = None
    refits = REFITS if refits is None else refits
    for attempt in range(refits + 1):
        with torch.no_grad():
            fitted = float(loss_fn())
            twin.crosstalk.clamp_(min=0.0)
            clamped = float(loss_fn())
        stalled = best is not None and clamped > best[0] * (1 - REFIT_TOLERANCE) ** 2  # the refit gained < 2 %
        if best is None or clamped < best[0]:
            best = (clamped, {k: getattr(twin, k).detach().clone() for k in twin.fit_parameters})
        if clamped <= fitted * (1 + REFIT_TOLERANCE) ** 2 or stalled or attempt == refits:
            break
        history += refit()
    with torch.no_grad():
        for k, v in best[1].items():
            getattr(twin, k).copy_(v)
    history.append(best[0])
    return history


def residual_summary(twin: MZIMeshTwin, data: Measurements) -> dict[str, float]:
    with torch.no_grad():
        r = (predict(twin, data) - torch.as_tensor(data.p)).numpy().ravel()
    return {"rmse": float(np.sqrt(np.mean(r**2))), "max_abs": float(np.max(np.abs(r))),
            "mean": float(np.mean(r)), "n": int(r.size)}


def fit_in_bands(twin, data: Measurements, adam_steps: int = 150, lbfgs_steps: int = 150, lr: float = 0.02,
                 refine_adam_steps: int = 40, refine_lr: float = 0.003, progress=None,
                 parameters=None, after_band=None, dtype: torch.dtype = torch.float32) -> list[float]:
    """Fit ``twin`` to banded readings (``data.band``), band by band on all readings up to that band:
    the first from the twin's present values with ``adam_steps`` at ``lr``, the others with small Adam
    steps then L-BFGS. ``after_band(band, history)`` is called after each band.

    ``dtype``: the mesh is computed in float32 by default (~2.5× faster at N = 64 than float64; its
    rounding, ~1e-6 of a reading, is far below the detector noise of ~1e-2; the fitted parameters and
    the loss stay float64)."""
    history: list[float] = []
    extra = {} if parameters is None else {"parameters": parameters}
    bands = np.unique(data.band)
    for i, top in enumerate(bands):
        pick = data.band <= top
        sub = Measurements(data.u[pick], data.x[pick], data.p[pick])
        history += fit_twin(twin, sub, adam_steps=adam_steps if i == 0 else refine_adam_steps,
                            lbfgs_steps=lbfgs_steps, lr=lr if i == 0 else refine_lr, progress=progress,
                            dtype=dtype, **extra)
        if after_band is not None:
            after_band(float(top), history)
    return history
