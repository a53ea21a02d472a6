"""Clements (rectangular) mesh layout: which MZI sits on which pair of modes, which heater is which.

This is the chip's *design* (what a lab gets from the layout file), shared by the virtual chip and the
twin. It holds no fabrication error: those live hidden in the virtual chip and fitted in the twin.
A neutral module (numpy only): the drivers' virtual lab and the twins both import it, neither imports
the other. ``labsat.twins.layout.MeshLayout`` is the same class.

It also holds the mesh's transfer matrix in numpy (:func:`mzi_matrices`, :func:`mesh_matrix`): what the
virtual chip (``drivers/sim/chip.py``) computes with, since the drivers never import torch. It follows the
torch core :mod:`labsat.twins.clements` exactly (same conventions, same error models, same MZI and column
order; ``tests/test_clements.py`` holds them equal to 1e-12): all MZIs' 2×2 matrices at once, then one
whole-column update of the rows of ``U`` per column.
"""
from __future__ import annotations

from dataclasses import dataclass

import math

import numpy as np

CONVENTIONS = ("heater", "bloch")


@dataclass(frozen=True)
class MeshLayout:
    """Rectangular MZI mesh on ``modes`` waveguides (Clements et al. 2016).

    Column ``c`` holds MZIs on mode pairs ``(i, i+1)`` for ``i = c % 2, c % 2 + 2, ...``.
    MZI ``m`` has two heaters: ``2m`` (internal phase theta) and ``2m + 1`` (external phase phi).
    Heaters are numbered in their physical order on the chip; neighbours in that order share heat.
    """

    modes: int

    def __post_init__(self):
        if not 2 <= self.modes <= 64:
            raise ValueError(f"mesh modes must be between 2 and 64, got {self.modes}")

    @property
    def columns(self) -> list[np.ndarray]:
        """Top mode index of each MZI, per column."""
        return [np.arange(c % 2, self.modes - 1, 2) for c in range(self.modes)]

    @property
    def column_slices(self) -> list[slice]:
        """MZI index range of each column (MZIs are numbered column by column)."""
        out, start = [], 0
        for tops in self.columns:
            out.append(slice(start, start + len(tops)))
            start += len(tops)
        return out

    @property
    def n_mzi(self) -> int:
        return self.modes * (self.modes - 1) // 2

    @property
    def n_heaters(self) -> int:
        return 2 * self.n_mzi

    @property
    def n_couplers(self) -> int:
        return 2 * self.n_mzi


# --- the mesh's transfer matrix, numpy (the virtual chip's physics; mirrors labsat.twins.clements) ---

def _couplers(split_error, bs_error):
    """(c, s) of both couplers of every MZI, each (..., M, 2), or scalars for ideal 50:50 couplers."""
    if split_error is not None and bs_error is not None:
        raise ValueError("give split_error or bs_error, not both")
    if split_error is not None:
        split = math.pi / 4 + np.asarray(split_error, dtype=np.float64)
        return np.cos(split), np.sin(split)
    if bs_error is not None:
        e = np.asarray(bs_error, dtype=np.float64)
        with np.errstate(invalid="ignore"):  # NaN for |e| > 1, as the SAT authors' code (nothing clipped)
            return np.sqrt((1 + e) / 2), np.sqrt((1 - e) / 2)
    r = 1 / math.sqrt(2)
    return np.full((1, 2), r), np.full((1, 2), r)


def mzi_matrices(theta, phi, *, convention: str = "heater", split_error=None, bs_error=None) -> np.ndarray:
    """2×2 transfer matrices (..., M, 2, 2), complex128, of all MZIs at once.

    ``"heater"``: ``T = C₁ · diag(e^{iθ}, 1) · C₀ · diag(e^{iφ}, 1)``; ``"bloch"``: the internal phase split
    ``diag(e^{iθ/2}, e^{-iθ/2})``. Couplers ``[[c, i s], [i s, c]]``: ``split_error`` δ gives
    ``c, s = cos, sin(π/4 + δ)``, ``bs_error`` e gives ``√(1±e)/√2``; ``[..., 0]`` input side, ``[..., 1]``
    output side. See :mod:`labsat.twins.clements` (the same numbers, in torch).
    """
    if convention not in CONVENTIONS:
        raise ValueError(f"unknown MZI convention '{convention}', expected one of {CONVENTIONS}")
    theta = np.asarray(theta, dtype=np.float64)
    phi = np.asarray(phi, dtype=np.float64)
    c, s = _couplers(split_error, bs_error)
    c0, c1, s0, s1 = c[..., 0], c[..., 1], s[..., 0], s[..., 1]
    cc, ss, cs, sc = c1 * c0, s1 * s0, c1 * s0, s1 * c0
    if convention == "heater":
        eu = np.exp(1j * theta)                       # top arm e^{iθ}, bottom arm 1
        p00 = cc * eu - ss
        p01 = 1j * (cs * eu + sc)
        p10 = 1j * (sc * eu + cs)
        p11 = cc - ss * eu
    else:
        eu = np.exp(0.5j * theta)                     # ±θ/2
        el = eu.conj()
        p00 = cc * eu - ss * el
        p01 = 1j * (cs * eu + sc * el)
        p10 = 1j * (sc * eu + cs * el)
        p11 = cc * el - ss * eu
    ephi = np.exp(1j * phi)                           # on the top input arm: scales column 0
    p00, p10 = p00 * ephi, p10 * ephi
    p00, p01, p10, p11 = np.broadcast_arrays(p00, p01, p10, p11)
    return np.stack([np.stack([p00, p01], -1), np.stack([p10, p11], -1)], -2).astype(np.complex128, copy=False)


def mesh_matrix(theta, phi, layout: MeshLayout, *, convention: str = "heater", split_error=None, bs_error=None,
                gamma=None) -> np.ndarray:
    """Transfer matrix ``U`` (..., N, N), complex128, of the mesh: output amplitudes = ``U @ inputs``.

    Every MZI's 2×2 matrix is built at once (:func:`mzi_matrices`), then each column updates the rows of
    ``U`` it touches in one vectorised step (``U[tops], U[tops+1] ← T · (U[tops], U[tops+1])``). Leading
    dimensions of ``theta``/``phi`` (..., M) broadcast with the errors (..., M, 2) and ``gamma`` (..., N).
    ``gamma``: an input phase screen ``diag(e^{iγ})`` before the mesh.
    """
    t = mzi_matrices(theta, phi, convention=convention, split_error=split_error, bs_error=bs_error)
    n = layout.modes
    if t.shape[-3] != layout.n_mzi:
        raise ValueError(f"expected {layout.n_mzi} MZI phases for a {n}-mode mesh, got {t.shape[-3]}")
    batch = t.shape[:-3]
    u = np.broadcast_to(np.eye(n, dtype=np.complex128), batch + (n, n)).copy()
    for tops, sl in zip(layout.columns, layout.column_slices):
        if len(tops) == 0:
            continue
        tc = t[..., sl, :, :, np.newaxis]             # (..., k, 2, 2, 1): broadcast over U's columns
        top, bot = u[..., tops, :], u[..., tops + 1, :]
        u[..., tops, :] = tc[..., 0, 0, :] * top + tc[..., 0, 1, :] * bot
        u[..., tops + 1, :] = tc[..., 1, 0, :] * top + tc[..., 1, 1, :] * bot
    if gamma is not None:
        u = u * np.exp(1j * np.asarray(gamma, dtype=np.float64))[..., np.newaxis, :]
    return u
