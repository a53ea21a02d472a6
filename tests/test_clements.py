"""The vectorised Clements mesh core against straightforward references (labsat's old per-column twin,
a per-MZI numpy product in the SAT authors' convention), unitarity, gradients and the Haar initialisation."""
import math

import numpy as np
import pytest
import torch

from labsat.twins import clements
from labsat.twins.layout import MeshLayout
from labsat.twins.mzi import MZIMeshTwin


def old_twin_forward(twin, amplitudes, u):
    """labsat's twin before the vectorised core (one clone + index_put per column), kept as reference."""
    phases = twin.heater_phases(u).unsqueeze(-2)
    theta, phi = phases[..., 0::2], phases[..., 1::2]
    split = math.pi / 4 + twin.coupler_error
    c, s = torch.cos(split), torch.sin(split)
    state = torch.complex(amplitudes, torch.zeros_like(amplitudes))
    for tops, sl in zip(twin.layout.columns, twin.layout.column_slices):
        if len(tops) == 0:
            continue
        tops = torch.as_tensor(tops)
        a, b = state[..., tops], state[..., tops + 1]
        a = a * torch.exp(1j * phi[..., sl])
        a, b = c[sl, 0] * a + 1j * s[sl, 0] * b, 1j * s[sl, 0] * a + c[sl, 0] * b
        a = a * torch.exp(1j * theta[..., sl])
        a, b = c[sl, 1] * a + 1j * s[sl, 1] * b, 1j * s[sl, 1] * a + c[sl, 1] * b
        state = state.clone()
        state[..., tops] = a
        state[..., tops + 1] = b
    return torch.exp(twin.log_gain) * state.abs() ** 2


def perturbed_twin(n, seed):
    g = torch.Generator().manual_seed(seed)
    twin = MZIMeshTwin(n, 2 * math.pi)
    with torch.no_grad():
        for k in twin.fit_parameters:
            getattr(twin, k).copy_(0.1 * torch.randn(getattr(twin, k).shape, generator=g, dtype=torch.float64))
    return twin, g


@pytest.mark.parametrize("n", [2, 3, 5, 8, 12])
def test_twin_equals_old_loop_values_and_gradients(n):
    twin, g = perturbed_twin(n, n)
    twin.requires_grad_(True)
    for shape_x, shape_u in (((7, n), (twin.n_controls,)), ((3, 5, n), (3, twin.n_controls))):
        x = torch.rand(shape_x, generator=g, dtype=torch.float64)
        u = torch.rand(shape_u, generator=g, dtype=torch.float64, requires_grad=True)
        w = torch.randn(shape_x, generator=g, dtype=torch.float64)   # a random linear loss
        new, old = twin(x, u), old_twin_forward(twin, x, u)
        assert torch.allclose(new, old, rtol=0, atol=1e-12)
        params = [u] + [getattr(twin, k) for k in twin.fit_parameters]
        g_new = torch.autograd.grad((w * new).sum(), params)
        g_old = torch.autograd.grad((w * old).sum(), params)
        for a, b in zip(g_new, g_old):
            assert torch.allclose(a, b, rtol=0, atol=1e-12)


def bloch_reference(theta, phi, gamma, e, layout):
    """Per-MZI product in numpy, written from the paper's formulas: B(e₁)·diag(e^{iθ/2}, e^{-iθ/2})·B(e₀)
    ·diag(e^{iφ}, 1) on each MZI, then the columns in order, after the input phase screen γ."""
    def coupler(x):
        return np.array([[np.sqrt(1 + x), 1j * np.sqrt(1 - x)], [1j * np.sqrt(1 - x), np.sqrt(1 + x)]]) / np.sqrt(2)
    n = layout.modes
    u = np.diag(np.exp(1j * gamma))
    for tops, sl in zip(layout.columns, layout.column_slices):
        col = np.eye(n, dtype=complex)
        for m, i in zip(range(sl.start, sl.stop), tops):
            t = coupler(e[m, 1]) @ np.diag([np.exp(0.5j * theta[m]), np.exp(-0.5j * theta[m])]) \
                @ coupler(e[m, 0]) @ np.diag([np.exp(1j * phi[m]), 1])
            col[i:i + 2, i:i + 2] = t
        u = col @ u
    return u


@pytest.mark.parametrize("n", [3, 6])
def test_bloch_convention_matches_per_mzi_reference(n):
    layout, rng = MeshLayout(n), np.random.default_rng(n)
    m = layout.n_mzi
    theta, phi, gamma = rng.uniform(0, 2 * np.pi, (3, m))[0], rng.uniform(0, 2 * np.pi, m), rng.uniform(0, 6, n)
    e = rng.normal(0, 0.15, (m, 2))
    u = clements.mesh_matrix(torch.tensor(theta), torch.tensor(phi), layout, convention="bloch",
                             bs_error=torch.tensor(e), gamma=torch.tensor(gamma))
    assert np.allclose(u.numpy(), bloch_reference(theta, phi, gamma, e, layout), atol=1e-12)
    # lossless couplers: unitary
    assert np.allclose(u.numpy() @ u.numpy().conj().T, np.eye(n), atol=1e-12)


def test_bloch_cross_and_bar_states_and_unclipped_errors():
    layout = MeshLayout(2)
    cross = clements.mesh_matrix(torch.zeros(1, dtype=torch.float64), torch.zeros(1, dtype=torch.float64), layout, convention="bloch")
    bar = clements.mesh_matrix(torch.full((1,), math.pi, dtype=torch.float64), torch.zeros(1, dtype=torch.float64), layout, convention="bloch")
    assert torch.allclose(cross.abs(), torch.tensor([[0.0, 1.0], [1.0, 0.0]], dtype=torch.float64), atol=1e-12)
    assert torch.allclose(bar.abs(), torch.eye(2, dtype=torch.float64), atol=1e-12)
    # as in the authors' code, |e| > 1 is not clipped: the output is NaN
    bad = clements.mesh_matrix(torch.zeros(1, dtype=torch.float64), torch.zeros(1, dtype=torch.float64), layout, convention="bloch",
                               bs_error=torch.tensor([[1.2, 0.0]]))
    assert torch.isnan(bad).any()


def test_split_runs_and_batches_equal_the_plain_product():
    layout, g = MeshLayout(10), torch.Generator().manual_seed(1)
    m = layout.n_mzi
    theta, phi = torch.rand(2, 3, m, generator=g, dtype=torch.float64)
    err = 0.1 * torch.randn(m, 2, generator=g, dtype=torch.float64)
    ref = torch.stack([clements.mesh_matrix(theta[k], phi[k], layout, split_error=err, parts=1) for k in range(3)])
    for parts in (1, 2, 3, 4):
        out = clements.mesh_matrix(theta, phi, layout, split_error=err, parts=parts)
        assert torch.allclose(out, ref, atol=1e-13)


def test_gradients_and_second_derivatives_are_exact():
    layout, g = MeshLayout(4), torch.Generator().manual_seed(2)
    m = layout.n_mzi
    theta = torch.rand(m, generator=g, dtype=torch.float64, requires_grad=True)
    phi = torch.rand(m, generator=g, dtype=torch.float64, requires_grad=True)
    e = (0.1 * torch.randn(m, 2, generator=g, dtype=torch.float64)).requires_grad_()
    gamma = torch.rand(4, generator=g, dtype=torch.float64, requires_grad=True)
    x = torch.rand(3, 4, generator=g, dtype=torch.float64)

    def f(theta, phi, e, gamma):
        u = clements.mesh_matrix(theta, phi, layout, convention="bloch", bs_error=e, gamma=gamma, parts=2)
        return clements.powers(u, x)

    assert torch.autograd.gradcheck(f, (theta, phi, e, gamma))
    assert torch.autograd.gradgradcheck(f, (theta, phi, e, gamma))


def test_powers_real_and_complex_inputs_agree():
    layout, g = MeshLayout(5), torch.Generator().manual_seed(3)
    theta, phi = torch.rand(2, layout.n_mzi, generator=g, dtype=torch.float64)
    u = clements.mesh_matrix(theta, phi, layout)
    x = torch.rand(4, 5, generator=g, dtype=torch.float64)
    assert torch.allclose(clements.powers(u, x), clements.apply(u, x).abs() ** 2, atol=1e-13)
    assert torch.allclose(clements.powers(u, x.to(torch.complex128)), clements.powers(u, x), atol=1e-13)


def plain_powers(u, x):
    """``|U x|²`` for real x as before the hand-written backward (plain autograd), the reference."""
    n = u.shape[-1]
    y = torch.matmul(x, torch.cat([u.real, u.imag], -2).transpose(-1, -2))
    return y[..., :n] ** 2 + y[..., n:] ** 2


@pytest.mark.parametrize("u_shape, x_shape", [((), (7,)), ((3,), (3, 7)), ((), (3, 7)), ((3,), (7,))])
def test_powers_backward_equals_plain_autograd(u_shape, x_shape):
    """The fused |U x|² (one matmul + one product each way) against plain autograd, float64, to 1e-12:
    values, dL/dU, dL/dx, with leading dimensions on U, on x or both (K settings or K chips at once)."""
    n, g = 6, torch.Generator().manual_seed(4)
    u0 = torch.randn(u_shape + (n, n), generator=g, dtype=torch.complex128)
    x0 = torch.rand(x_shape + (n,), generator=g, dtype=torch.float64)
    out_shape = torch.broadcast_shapes(u_shape + (1, 1), x_shape + (1,))[:-2] + (x_shape[-1], n)
    w = torch.randn(out_shape, generator=g, dtype=torch.float64)
    got, want = {}, {}
    for fn, into in ((clements.powers, got), (plain_powers, want)):
        u, x = u0.clone().requires_grad_(), x0.clone().requires_grad_()
        p = fn(u, x)
        into["p"], (into["gu"], into["gx"]) = p, torch.autograd.grad(p, (u, x), w)
    assert type(got["p"].grad_fn).__name__ == "_RealPowersBackward"  # the hand-written path was tested
    for k in ("p", "gu", "gx"):
        assert got[k].shape == want[k].shape
        assert torch.allclose(got[k], want[k], rtol=1e-12, atol=1e-12), k


def test_powers_second_derivatives_in_the_inputs_too():
    g = torch.Generator().manual_seed(5)
    u = torch.randn(4, 4, generator=g, dtype=torch.complex128, requires_grad=True)
    x = torch.rand(3, 4, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(clements.powers, (u, x))
    assert torch.autograd.gradgradcheck(clements.powers, (u, x))


def test_haar_rect_theta_gives_haar_random_unitaries():
    """|U_ij|² of a Haar unitary is Beta(1, N-1): mean 1/N, second moment 2/(N(N+1)), for every entry.
    A mesh at θ uniform on [0, π] is far from that (its corner entries are heavy)."""
    n, draws = 6, 1500
    layout, rng = MeshLayout(n), np.random.default_rng(0)
    theta = torch.tensor(np.stack([clements.haar_rect_theta(layout, rng) for _ in range(draws)]))
    assert theta.min() >= 0 and theta.max() <= math.pi
    phi = torch.tensor(rng.uniform(0, 2 * np.pi, (draws, layout.n_mzi)))
    gamma = torch.tensor(rng.uniform(0, 2 * np.pi, (draws, n)))
    p = clements.mesh_matrix(theta, phi, layout, convention="bloch", gamma=gamma).abs() ** 2
    second = (p ** 2).mean(0)
    assert torch.allclose(p.mean(0), torch.full((n, n), 1 / n, dtype=torch.float64), atol=0.03)
    assert torch.allclose(second, torch.full((n, n), 2 / (n * (n + 1)), dtype=torch.float64), atol=0.025)
    uniform = clements.mesh_matrix(torch.rand(draws, layout.n_mzi, dtype=torch.float64) * math.pi, phi, layout,
                                   convention="bloch", gamma=gamma).abs() ** 2
    assert (uniform ** 2).mean(0).sub(2 / (n * (n + 1))).abs().max() > 0.05
    # the central MZIs (highest α) sit closest to the cross state θ = 0
    alpha = clements.haar_alpha(layout)
    assert theta[:, alpha == alpha.max()].mean() < theta[:, alpha == alpha.min()].mean()


# --- the virtual chip's numpy mesh (labsat.geometry; the drivers never import torch) against this core ---

@pytest.mark.parametrize("n", [2, 5, 8, 16])
@pytest.mark.parametrize("convention", ["heater", "bloch"])
@pytest.mark.parametrize("errors", ["split", "bs", "none"])
def test_numpy_mesh_equals_torch_core(n, convention, errors):
    from labsat import geometry

    layout = MeshLayout(n)
    rng = np.random.default_rng(100 * n + len(convention) + len(errors))
    theta = rng.uniform(0, 2 * math.pi, (3, layout.n_mzi))
    phi = rng.uniform(0, 2 * math.pi, (3, layout.n_mzi))
    gamma = rng.uniform(0, 2 * math.pi, (3, n))
    err = rng.normal(0.0, 0.15, (3, layout.n_mzi, 2))
    kw = {"split": dict(split_error=err), "bs": dict(bs_error=err), "none": {}}[errors]
    for g in (None, gamma):
        ref = clements.mesh_matrix(torch.tensor(theta), torch.tensor(phi), layout, convention=convention,
                                   gamma=None if g is None else torch.tensor(g),
                                   **{k: torch.tensor(v) for k, v in kw.items()}).numpy()
        got = geometry.mesh_matrix(theta, phi, layout, convention=convention, gamma=g, **kw)
        assert got.shape == ref.shape == (3, n, n) and got.dtype == np.complex128
        assert np.max(np.abs(got - ref)) < 1e-12
        one = geometry.mesh_matrix(theta[1], phi[1], layout, convention=convention,
                                   gamma=None if g is None else g[1], **{k: v[1] for k, v in kw.items()})
        assert np.max(np.abs(one - ref[1])) < 1e-12
    t_ref = clements.mzi_matrices(torch.tensor(theta), torch.tensor(phi), convention=convention,
                                  **{k: torch.tensor(v) for k, v in kw.items()}).numpy()
    t_got = geometry.mzi_matrices(theta, phi, convention=convention, **kw)
    assert np.max(np.abs(t_got - t_ref)) < 1e-12


def test_numpy_mesh_nan_for_bs_error_beyond_one_and_bad_input():
    from labsat import geometry

    layout = MeshLayout(2)
    bad = geometry.mesh_matrix(np.zeros(1), np.zeros(1), layout, convention="bloch", bs_error=np.array([[1.5, 0.0]]))
    assert np.isnan(bad).all()  # as the torch core and the authors' code: nothing clipped
    with pytest.raises(ValueError):
        geometry.mesh_matrix(np.zeros(2), np.zeros(2), layout)
    with pytest.raises(ValueError):
        geometry.mzi_matrices(np.zeros(1), np.zeros(1), convention="hadamard")
    with pytest.raises(ValueError):
        geometry.mzi_matrices(np.zeros(1), np.zeros(1), split_error=np.zeros((1, 2)), bs_error=np.zeros((1, 2)))


@pytest.mark.parametrize("model", ["labsat", "paper"])
@pytest.mark.parametrize("n", [4, 16])
def test_virtual_chip_equals_torch_core_for_both_error_models(model, n):
    """The numpy chip (drivers/sim/chip.py) and the torch core give the same noiseless outputs, with the
    chip's hidden truth: labsat's model through splitting angles, the paper's through B(e) directly."""
    from labsat.drivers.sim.chip import ChipSpec, VirtualChip

    chip = VirtualChip(ChipSpec(modes=n, error_model=model), seed=3)
    rng = np.random.default_rng(n)
    chip.set_heaters(rng.uniform(0, 6.0, chip.layout.n_heaters))
    volts = rng.uniform(0, chip.spec.modulator_vpi, (5, n))
    phases = torch.tensor(chip.heater_phases())
    got = chip.output_powers(volts, noisy=False)
    t = chip.truth
    errors = dict(bs_error=torch.tensor(t.bs_error)) if model == "paper" else \
        dict(split_error=torch.tensor(t.coupler - math.pi / 4))
    u = clements.mesh_matrix(phases[0::2], phases[1::2], chip.layout, **errors)
    amp = np.sin(0.5 * np.pi * volts / t.modulator_vpi) * np.sqrt(chip.spec.laser_power_w / n)
    ref = t.port_gain * clements.powers(u, torch.tensor(amp)).numpy()
    per_mode = chip.spec.laser_power_w / n  # outputs in units of one input's full power
    assert np.max(np.abs(got - ref)) / per_mode < 1e-12
