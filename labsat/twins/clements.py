"""Vectorised Clements (rectangular) MZI mesh: all 2×2 MZI matrices at once, one batched matmul per column.

The torch mesh core that the heater twin (`labsat.twins.mzi`) and the SAT-paper experiments (`labsat.paper`)
share. Build the N×N transfer matrix once per control setting, then apply it to the whole batch of inputs
with one matmul. The virtual chip (`drivers/sim/chip.py`) computes the same matrix in numpy with
`labsat.geometry.mesh_matrix` (the drivers never import torch); tests/test_clements.py holds the two equal
to 1e-12 for both conventions and both error models.

API
---
``mzi_matrices(theta, phi, *, convention, split_error=None, bs_error=None) -> complex (..., M, 2, 2)``
    The 2×2 transfer matrix of every MZI (M = N(N-1)/2, numbered column by column as in `MeshLayout`).
``mesh_matrix(theta, phi, layout, *, convention="heater", split_error=None, bs_error=None, gamma=None)
-> complex (..., N, N)``
    The mesh's transfer matrix ``U`` (output amplitudes = ``U @ input amplitudes``). Leading dimensions
    of ``theta``/``phi`` (..., M) broadcast with the errors (..., M, 2) and ``gamma`` (..., N), so K control
    settings or K chips are built at once. Differentiable in θ, φ, γ and both kinds of error.
``apply(U, amplitudes) -> complex (..., B, N)``: the outputs for a batch of input amplitudes (..., B, N).
``powers(U, amplitudes) -> real (..., B, N)``: ``|apply(U, amplitudes)|²``; for real inputs it uses one real
    matmul against ``[Re U; Im U]`` (half the work of a complex one), with a hand-written backward (one
    matmul and one elementwise product).
``haar_rect_theta(layout, generator=None, convention="bloch") -> float64 (M,)``
    Haar-random internal phases for the rectangular mesh (neurophox's ``haar_rect``): with φ and γ
    uniform on [0, 2π) the mesh is a Haar-random unitary; the central MZIs sit near the cross state.

Conventions (every MZI: input phase on the top arm, coupler, internal phase, coupler)
------------------------------------------------------------------------------------
``"heater"`` (labsat's chip): ``T = C₁ · diag(e^{iθ}, 1) · C₀ · diag(e^{iφ}, 1)``; θ and φ are the phases of
    the heaters on the top arm.
``"bloch"`` (the SAT authors' neurophox ``BlochMZI``, ``hadamard=False``): the internal phase is split
    ``diag(e^{iθ/2}, e^{-iθ/2})`` over the two arms, so θ = 0 is the cross state and θ = π the bar state.
    An input phase screen ``diag(e^{iγ})`` precedes the mesh (``gamma``).
Couplers are ``C = [[c, i s], [i s, c]]`` with, per MZI, the input-side coupler ``[..., 0]`` and the
output-side one ``[..., 1]``:
- ``split_error`` δ (splitting-angle error, labsat's model): ``c, s = cos(π/4 + δ), sin(π/4 + δ)``;
- ``bs_error`` e (the authors' model): ``c, s = √(1+e)/√2, √(1−e)/√2``, i.e. ``B(e)`` of the paper. As in the
  authors' code nothing is clipped: |e| > 1 makes the square roots NaN and the whole output NaN.
- neither: ideal 50:50 couplers (c = s = 1/√2).
Phase errors (the paper's N(0, σ) on every θ and φ) are simply added to ``theta``/``phi`` by the caller.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from .layout import MeshLayout

CONVENTIONS = ("heater", "bloch")


def _couplers(split_error, bs_error, like: torch.Tensor):
    """(c, s) of both couplers of every MZI, each (..., M, 2) or scalars for ideal couplers."""
    if split_error is not None and bs_error is not None:
        raise ValueError("give split_error or bs_error, not both")
    if split_error is not None:
        split = math.pi / 4 + torch.as_tensor(split_error, dtype=like.dtype)
        return torch.cos(split), torch.sin(split)
    if bs_error is not None:
        e = torch.as_tensor(bs_error, dtype=like.dtype)
        return torch.sqrt((1 + e) / 2), torch.sqrt((1 - e) / 2)  # NaN for |e| > 1, as the authors' code
    r = 1 / math.sqrt(2)
    return like.new_full((1, 2), r), like.new_full((1, 2), r)


def mzi_matrices(theta: torch.Tensor, phi: torch.Tensor, *, convention: str = "heater",
                 split_error=None, bs_error=None) -> torch.Tensor:
    """2×2 transfer matrices (..., M, 2, 2) of all MZIs at once (see the module docstring)."""
    if convention not in CONVENTIONS:
        raise ValueError(f"unknown MZI convention '{convention}', expected one of {CONVENTIONS}")
    theta = torch.as_tensor(theta)
    if not theta.is_floating_point():
        theta = theta.to(torch.float64)
    phi = torch.as_tensor(phi, dtype=theta.dtype)
    c, s = _couplers(split_error, bs_error, theta)
    c0, c1, s0, s1 = c[..., 0], c[..., 1], s[..., 0], s[..., 1]
    if convention == "heater":
        eu, el = torch.exp(1j * theta), None          # top arm e^{iθ}, bottom arm 1
    else:
        eu = torch.exp(0.5j * theta)                  # ±θ/2
        el = eu.conj()
    cc, ss, cs, sc = c1 * c0, s1 * s0, c1 * s0, s1 * c0
    if el is None:
        p00 = cc * eu - ss
        p01 = 1j * (cs * eu + sc)
        p10 = 1j * (sc * eu + cs)
        p11 = cc - ss * eu
    else:
        p00 = cc * eu - ss * el
        p01 = 1j * (cs * eu + sc * el)
        p10 = 1j * (sc * eu + cs * el)
        p11 = cc * el - ss * eu
    ephi = torch.exp(1j * phi)                        # on the top input arm: scales column 0
    p00, p10 = p00 * ephi, p10 * ephi
    p00, p01, p10, p11 = torch.broadcast_tensors(p00, p01, p10, p11)
    return torch.stack([torch.stack([p00, p01], -1), torch.stack([p10, p11], -1)], -2)


def _column_index(layout: MeshLayout) -> tuple[torch.Tensor, torch.Tensor]:
    """Fixed index tensors of the per-column update ``U ← a_c ⊙ U + b_c ⊙ U[partner_c]``.

    Returns the flat positions (column * N + row) of every MZI's top and bottom rows, (M, 2), and the
    partner row of every row in every column, (columns, N) (a row without an MZI is its own partner,
    with a = 1, b = 0).
    """
    n = layout.modes
    pos = np.zeros((layout.n_mzi, 2), dtype=np.int64)
    partner = np.tile(np.arange(n), (n, 1))
    for c, (tops, sl) in enumerate(zip(layout.columns, layout.column_slices)):
        pos[sl, 0], pos[sl, 1] = c * n + tops, c * n + tops + 1
        partner[c, tops], partner[c, tops + 1] = tops + 1, tops
    return torch.as_tensor(pos), torch.as_tensor(partner)


_INDEX_CACHE: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}


def mesh_matrix(theta: torch.Tensor, phi: torch.Tensor, layout: MeshLayout, *, convention: str = "heater",
                split_error=None, bs_error=None, gamma=None, parts: int | None = None) -> torch.Tensor:
    """Transfer matrix (..., N, N) of the mesh (see the module docstring).

    Each column is applied to the rows of ``U`` as ``a ⊙ U + b ⊙ U[partner]`` with per-row coefficients
    gathered from all MZI matrices at once before the loop: three whole-matrix ops per column
    (six in the backward).
    """
    t = mzi_matrices(theta, phi, convention=convention, split_error=split_error, bs_error=bs_error)
    n = layout.modes
    if t.shape[-3] != layout.n_mzi:
        raise ValueError(f"expected {layout.n_mzi} MZI phases for a {n}-mode mesh, got {t.shape[-3]}")
    if n not in _INDEX_CACHE:
        _INDEX_CACHE[n] = _column_index(layout)
    pos, partner = _INDEX_CACHE[n]
    batch = t.shape[:-3]
    flat = pos.reshape(-1)
    diag = torch.stack([t[..., 0, 0], t[..., 1, 1]], -1).reshape(batch + (-1,))      # (..., 2M)
    off = torch.stack([t[..., 0, 1], t[..., 1, 0]], -1).reshape(batch + (-1,))
    a = t.new_ones(batch + (n * n,)).index_copy(-1, flat, diag)
    b = t.new_zeros(batch + (n * n,)).index_copy(-1, flat, off)
    a, b = a.reshape(batch + (n, n, 1)), b.reshape(batch + (n, n, 1))
    u = _split_product(a, b, partner, _parts(n) if parts is None else parts)
    if gamma is not None:
        u = u * torch.exp(1j * torch.as_tensor(gamma, dtype=t.real.dtype)).unsqueeze(-2)
    return u


def _parts(n: int) -> int:
    """How many runs of columns to build side by side (then multiply): fewer, larger torch ops."""
    return min(4, max(1, n // 16))


def _split_product(a: torch.Tensor, b: torch.Tensor, partner: torch.Tensor, parts: int) -> torch.Tensor:
    """The column product computed as ``parts`` independent runs of consecutive columns (one batched
    loop of ``C / parts`` steps), then multiplied together pairwise (log2(parts) batched matmuls)."""
    cols, n = a.shape[-3], a.shape[-2]
    if parts <= 1:
        return _ColumnProduct.apply(a, b, partner)
    per = -(-cols // parts)
    per += per % 2          # runs of even length start on even columns: all share partner[:per]
    pad = per * parts - cols
    if pad:  # identity columns (a = 1, b = 0) at the end
        a = torch.cat([a, a.new_ones(a.shape[:-3] + (pad, n, 1))], -3)
        b = torch.cat([b, b.new_zeros(b.shape[:-3] + (pad, n, 1))], -3)
    batch = a.shape[:-3]
    a = a.reshape(batch + (parts, per, n, 1))
    b = b.reshape(batch + (parts, per, n, 1))
    u = _ColumnProduct.apply(a, b, partner[:per])
    while u.shape[-3] > 1:
        if u.shape[-3] % 2:
            u = torch.cat([u, torch.eye(n, dtype=u.dtype).expand(batch + (1, n, n))], -3)
        u = torch.matmul(u[..., 1::2, :, :], u[..., 0::2, :, :])
    return u[..., 0, :, :]


def _product(a: torch.Tensor, b: torch.Tensor, partner: torch.Tensor) -> torch.Tensor:
    """``U = M_{C-1} … M_0`` with ``M_c U = a_c ⊙ U + b_c ⊙ U[partner_c]``, plain autograd (reference,
    and the path for higher-order derivatives)."""
    n = a.shape[-2]
    u = torch.eye(n, dtype=a.dtype).expand(a.shape[:-3] + (n, n))
    for c in range(a.shape[-3]):
        u = a[..., c, :, :] * u + b[..., c, :, :] * u.index_select(-2, partner[c])
    return u


class _ColumnProduct(torch.autograd.Function):
    """`_product` with a hand-written backward: the forward loop runs without autograd bookkeeping and
    keeps the N intermediate matrices; the backward walks the columns once (six small ops per column). Under ``create_graph=True`` it falls back to `_product`'s
    autograd so that Hessian-vector products stay exact."""

    @staticmethod
    def forward(ctx, a, b, partner):
        n, cols = a.shape[-2], a.shape[-3]
        u = torch.eye(n, dtype=a.dtype).expand(a.shape[:-3] + (n, n))
        before = []                                   # U before column c (kept, not copied)
        for c in range(cols):
            before.append(u)
            u = torch.addcmul(a[..., c, :, :] * u, b[..., c, :, :], u.index_select(-2, partner[c]))
        ctx.save_for_backward(a, b, partner)
        ctx.before = before
        return u

    @staticmethod
    def backward(ctx, grad):
        a, b, partner = ctx.saved_tensors
        before = ctx.before
        if torch.is_grad_enabled():  # create_graph: differentiate the plain autograd version instead
            wanted = [x for x in (a, b) if x.requires_grad]
            with torch.enable_grad():
                got = iter(torch.autograd.grad(_product(a, b, partner), wanted, grad, create_graph=True))
            return (next(got) if a.requires_grad else None), (next(got) if b.requires_grad else None), None
        cols = a.shape[-3]
        ac = torch.conj_physical(a)
        bc = torch.conj_physical(b)
        ga, gb = torch.empty_like(a), torch.empty_like(b)
        g = grad
        for c in range(cols - 1, -1, -1):  # g = dL/dU after column c
            u, p = before[c], partner[c]
            gp = g.index_select(-2, p)                # g[partner]: the one row gather of the step
            # Σ_j conj(u[r, j]) g[r, j] and Σ_j conj(u[r, j]) g[p(r), j] (linalg.vecdot conjugates u);
            # dL/db[r] = Σ_j conj(u[p(r), j]) g[r, j] is the second one read at row p(r)
            ga[..., c, :, 0] = torch.linalg.vecdot(u, g)
            gb[..., c, :, 0] = torch.linalg.vecdot(u, gp).index_select(-1, p)
            # dL/dU before c: conj(a) ⊙ g + (conj(b) ⊙ g)[p] = conj(a) ⊙ g + conj(b)[p] ⊙ g[p]
            g = torch.addcmul(ac[..., c, :, :] * g, bc[..., c, :, :].index_select(-2, p), gp)
        return ga, gb, None


def apply(u: torch.Tensor, amplitudes: torch.Tensor) -> torch.Tensor:
    """Output amplitudes (..., B, N) for input amplitudes (..., B, N)."""
    x = amplitudes if amplitudes.is_complex() else amplitudes.to(u.real.dtype).to(u.dtype)
    return torch.matmul(x, u.transpose(-1, -2))


def powers(u: torch.Tensor, amplitudes: torch.Tensor) -> torch.Tensor:
    """Output powers ``|U x|²`` (..., B, N) for input amplitudes (..., B, N)."""
    if amplitudes.is_complex():
        return apply(u, amplitudes).abs() ** 2
    w = torch.cat([u.real, u.imag], -2)               # (..., 2N, N) real
    return _RealPowers.apply(w, amplitudes.to(w.dtype))


def _real_powers(w: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``|U x|²`` from ``w = [Re U; Im U]`` and real ``x``, plain autograd (reference, and the path for
    higher-order derivatives)."""
    n = w.shape[-1]
    y = torch.matmul(x, w.transpose(-1, -2))
    return y[..., :n] ** 2 + y[..., n:] ** 2


class _RealPowers(torch.autograd.Function):
    """`_real_powers` with a hand-written backward: one matmul and one product each way. With
    ``y = x wᵀ`` (..., B, 2N) kept from the forward and ``g = dL/dP``: ``dL/dy = 2 y ⊙ [g, g]``,
    ``dL/dw = (dL/dy)ᵀ x``, ``dL/dx = (dL/dy) w``; the factor 2 is applied to the small result. Autograd
    of the plain version spends as much again on the slices, the squares' backward (zero-filled
    (B, 2N) buffers, copies) and the sum (batch 6000, N = 64, float32: benchmarks/README.md "Round 5").
    Under ``create_graph=True`` it falls back to `_real_powers`' autograd, like `_ColumnProduct`."""

    @staticmethod
    def forward(ctx, w, x):
        n = w.shape[-1]
        y = torch.matmul(x, w.transpose(-1, -2))      # (..., B, 2N): Re and Im of U x
        ctx.save_for_backward(w, x, y)
        return torch.addcmul(y[..., :n].square(), y[..., n:], y[..., n:])

    @staticmethod
    def backward(ctx, grad):
        w, x, y = ctx.saved_tensors
        if torch.is_grad_enabled():  # create_graph: differentiate the plain autograd version instead
            wanted = [t for t in (w, x) if t.requires_grad]
            with torch.enable_grad():
                got = iter(torch.autograd.grad(_real_powers(w, x), wanted, grad, create_graph=True))
            return (next(got) if w.requires_grad else None), (next(got) if x.requires_grad else None)
        n = w.shape[-1]
        gy = (y.unflatten(-1, (2, n)) * grad.unsqueeze(-2)).flatten(-2)   # y ⊙ [g, g]
        gw = gx = None
        if ctx.needs_input_grad[0]:
            gw = (2 * torch.matmul(gy.transpose(-1, -2), x)).sum_to_size(w.shape)
        if ctx.needs_input_grad[1]:
            gx = (2 * torch.matmul(gy, w)).sum_to_size(x.shape)
        return gw, gx


# --- Haar-random initialisation of the rectangular mesh (Pai et al. 2019; neurophox `haar_rect`) ---

def _diagonal_sequence(length: int, parity_odd: bool) -> np.ndarray:
    odd = list(length + 1 - np.flip(np.arange(1, length + 1, 2)))
    even = list(length + 1 - np.arange(2, 2 * (length - len(odd)) + 1, 2))
    seq = np.asarray(odd + even)
    return seq[::-1] if parity_odd else seq


def haar_alpha(layout: MeshLayout) -> np.ndarray:
    """Sensitivity index α (M,) of every MZI of the N-column rectangular mesh, in MZI order.

    An MZI with index α has Haar-random reflectivity when ``sin²(θ'/2) = U^{1/α}`` (θ' the Hadamard-
    convention phase), so high-α MZIs (the centre of the mesh) sit near the cross state.
    """
    n = layout.modes
    seqs = [_diagonal_sequence(i, bool(n % 2)) for i in range(1, n + 1)]
    out = []
    for col, tops in enumerate(layout.columns):
        for row in tops:
            row = int(row)
            if col > row:
                diag = n - abs(row - col)
            elif row > 0 and col < row:
                diag = n - abs(row - col) - 1
            else:
                diag = n - 1
            out.append(1 if diag == 1 else int(seqs[diag - 1][min(row, col)]))
    return np.asarray(out, dtype=np.float64)


def haar_rect_theta(layout: MeshLayout, generator: np.random.Generator | None = None,
                    convention: str = "bloch") -> np.ndarray:
    """Haar-random internal phases θ (M,) in [0, π] (``"bloch"``: θ = 0 cross; ``"heater"``: same numbers,
    which in the heater convention put the MZI at the same splitting ratio)."""
    if convention not in CONVENTIONS:
        raise ValueError(f"unknown MZI convention '{convention}', expected one of {CONVENTIONS}")
    rng = generator if generator is not None else np.random.default_rng()
    alpha = haar_alpha(layout)
    theta_hadamard = 2 * np.arcsin(rng.random(alpha.shape) ** (1 / (2 * alpha)))
    return np.pi - theta_hadamard
