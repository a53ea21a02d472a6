"""The physical layer: hardware forward, twin backward; and the twin against the virtual chip's truth."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from labsat.kinds.mesh import twin_for
from labsat.physical import PhysicalLayer, _HardwareForwardTwinBackward
from labsat.twins.mzi import MZIMeshTwin


def perturbed_twin(modes: int = 4, seed: int = 0) -> MZIMeshTwin:
    """A twin with non-trivial imperfections (so gradients are not those of an ideal mesh)."""
    twin = MZIMeshTwin(modes, phase_per_u=2 * math.pi)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p, scale in ((twin.offset, 0.3), (twin.log_eff, 0.05), (twin.crosstalk, 0.05),
                         (twin.coupler_error, 0.04), (twin.log_gain, 0.05)):
            p.copy_(scale * torch.randn(p.shape, generator=g, dtype=torch.float64))
        twin.crosstalk.abs_()
    return twin


class TwinBackedHardware:
    """Fake hardware whose reading is the twin's prediction (float64, noiseless)."""

    def __init__(self, twin):
        self.twin, self.calls, self.last = twin, 0, None

    def forward(self, x: np.ndarray, u: np.ndarray) -> np.ndarray:
        self.calls += 1
        with torch.no_grad():
            self.last = self.twin(torch.as_tensor(x), torch.as_tensor(u)).numpy()
        return self.last


def test_gradcheck_hardware_forward_twin_backward():
    """With hardware == twin, the custom Function's analytic gradient (twin backward) must match
    finite differences of its forward (hardware), for both the inputs and the controls."""
    twin = perturbed_twin(4, seed=1)
    hw = TwinBackedHardware(twin)
    g = torch.Generator().manual_seed(2)
    x = torch.rand(2, 4, generator=g, dtype=torch.float64, requires_grad=True)
    u = (0.1 + 0.8 * torch.rand(twin.n_controls, generator=g, dtype=torch.float64)).requires_grad_(True)
    fn = lambda x, u: _HardwareForwardTwinBackward.apply(x, u, twin, hw)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (x, u), eps=1e-6, atol=1e-6, rtol=1e-5)
    assert hw.calls > 10  # the forward really went through the "hardware"


def test_function_gradient_equals_twin_gradient():
    twin = perturbed_twin(4, seed=3)
    hw = TwinBackedHardware(twin)
    x = torch.rand(5, 4, dtype=torch.float64)
    u = torch.full((twin.n_controls,), 0.4, dtype=torch.float64, requires_grad=True)
    w = torch.randn(5, 4, dtype=torch.float64)
    (gu_fn,) = torch.autograd.grad((_HardwareForwardTwinBackward.apply(x, u, twin, hw) * w).sum(), u)
    (gu_twin,) = torch.autograd.grad((twin(x, u) * w).sum(), u)
    torch.testing.assert_close(gu_fn, gu_twin, rtol=0, atol=0)
    assert hw.calls == 1  # one hardware forward, no hardware in the backward


def test_backward_uses_the_twin_not_the_hardware():
    """When hardware and twin differ, the forward is the hardware's and the gradient the twin's."""
    twin = perturbed_twin(4, seed=4)
    hardware_twin = perturbed_twin(4, seed=5)  # "the real chip": another set of imperfections
    hw = TwinBackedHardware(hardware_twin)
    x = torch.rand(6, 4, dtype=torch.float64)
    u = torch.full((twin.n_controls,), 0.3, dtype=torch.float64, requires_grad=True)
    y = _HardwareForwardTwinBackward.apply(x, u, twin, hw)
    np.testing.assert_array_equal(y.detach().numpy(), hw.last)
    assert not torch.allclose(y, twin(x, u))
    (g,) = torch.autograd.grad(y.sum(), u)
    (g_twin,) = torch.autograd.grad(twin(x, u).sum(), u)
    (g_hw,) = torch.autograd.grad(hardware_twin(x, u).sum(), u)
    torch.testing.assert_close(g, g_twin)
    assert not torch.allclose(g, g_hw)


class Recorder:
    """Wraps MeshHardware; remembers each reading so the test can compare the layer's output with it."""

    def __init__(self, hw):
        self.hw, self.readings = hw, []

    def forward(self, x, u):
        y = self.hw.forward(x, u)
        self.readings.append((x.copy(), u.copy(), y.copy()))
        return y


def test_physical_layer_on_the_virtual_lab(small_station):
    st = small_station
    layer_cfg = st.config.layers["mesh"]
    hw = st.mesh()
    rec = Recorder(hw)
    twin = twin_for(layer_cfg, 600.0)
    layer = PhysicalLayer(twin, rec, seed=0)
    layer.use_hardware = True
    x = torch.rand(16, layer_cfg.modes, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    y = layer(x)
    # forward: exactly the hardware reading, which is the chip's physics within detector noise
    assert len(rec.readings) == 1 and hw.batches == 1 and hw.samples == 16
    xs, us, ys = rec.readings[0]
    np.testing.assert_array_equal(y.detach().numpy(), ys)
    np.testing.assert_array_equal(us, layer.controls().detach().numpy())
    chip = st.lab.chip
    np.testing.assert_allclose(chip.heater_v, hw.control_voltages(us), atol=1e-4)
    # backward: the twin's Jacobian at the same (x, u), transposed, times dL/dy
    w = torch.randn(16, layer_cfg.modes, dtype=torch.float64)
    (y * w).sum().backward()
    u0 = layer.controls().detach().requires_grad_(True)
    # ... computed in the layer's backward precision (labsat.defaults.BACKWARD_DTYPE), which is float64's to ~1e-5
    (g_twin,) = torch.autograd.grad((twin(x, u0, dtype=layer.backward_dtype or torch.float64) * w).sum(), u0)
    torch.testing.assert_close(layer.u.grad, g_twin)
    (g64,) = torch.autograd.grad((twin(x, u0) * w).sum(), u0)
    torch.testing.assert_close(layer.u.grad, g64, rtol=1e-4, atol=1e-6)
    # the nominal twin is not the chip: the gradient is the twin's, the value the chip's
    assert not torch.allclose(y, twin(x, u0).detach(), atol=0.05)


def test_physical_layer_offline_is_the_twin_and_needs_hardware_online():
    twin = perturbed_twin(4)
    layer = PhysicalLayer(twin, hardware=None, seed=1)
    x = torch.rand(4, 4, dtype=torch.float64)
    torch.testing.assert_close(layer(x), twin(x, layer.controls()))
    layer.use_hardware = True
    with pytest.raises(RuntimeError, match="no hardware"):
        layer(x)


def test_mesh_hardware_skips_unchanged_controls(small_station):
    hw = small_station.mesh()
    u = np.full(hw.n_controls, 0.25)
    x = np.full((3, hw.modes), 0.5)
    hw.forward(x, u)
    writes = small_station.instruments["heaters"].writes
    hw.forward(x, u)  # same controls: no heater traffic
    assert small_station.instruments["heaters"].writes == writes and hw.heater_updates == 1
    hw.forward(x, u * 0.5)
    assert hw.heater_updates == 2


def test_mesh_hardware_rewrites_heaters_after_a_stop(small_station):
    """After a STOP (heaters zeroed by someone else), the same controls are written again, not
    skipped: otherwise the next forward would silently read a chip with its heaters off."""
    hw = small_station.mesh()
    heaters, chip = small_station.instruments["heaters"], small_station.lab.chip
    u = np.full(hw.n_controls, 0.36)
    x = np.full((2, hw.modes), 0.5)
    hw.forward(x, u)
    np.testing.assert_allclose(chip.heater_v[:hw.n_controls], 0.6 * 6.0)
    heaters.shutdown()
    assert np.all(chip.heater_v == 0)
    hw.forward(x, u)
    np.testing.assert_allclose(chip.heater_v[:hw.n_controls], 0.6 * 6.0)
    assert hw.heater_updates == 2
    heaters.command("VALL=0")  # the one-command safe state counts as a write too
    hw.forward(x, u)
    np.testing.assert_allclose(chip.heater_v[:hw.n_controls], 0.6 * 6.0)


# --- the twin with the hidden truth is the chip ---
def twin_from_truth(chip, v_max: float) -> MZIMeshTwin:
    """Load a chip's hidden fabrication errors into a twin (tests only: the product never reads them)."""
    spec, t = chip.spec, chip.truth
    twin = MZIMeshTwin(spec.modes, phase_per_u=spec.eta_nominal * v_max**2 / spec.heater_resistance_ohm)
    twin.load_fitted_state({
        "offset": t.offset.tolist(),
        "log_eff": np.log(t.eta / spec.eta_nominal).tolist(),
        "crosstalk": np.diag(t.crosstalk, 1).tolist(),
        "coupler_error": (t.coupler - np.pi / 4).tolist(),
        "log_gain": np.log(t.port_gain).tolist(),
    })
    return twin


@pytest.mark.parametrize("seed", [0, 7])
def test_twin_with_truth_reproduces_noiseless_chip(seed):
    from labsat.drivers.sim.chip import ChipSpec, VirtualChip

    v_max = 6.0
    chip = VirtualChip(ChipSpec(modes=6), seed=seed)
    twin = twin_from_truth(chip, v_max)
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 1, (20, 6))
    # modulator voltages that give amplitude x on the chip's own (true) modulators
    mv = 2 * chip.truth.modulator_vpi / np.pi * np.arcsin(x)
    for _ in range(3):
        u = rng.uniform(0, 1, chip.layout.n_heaters)
        chip.set_heaters(v_max * np.sqrt(u))
        chip.virtual_time_s = 0.0  # no drift
        p = chip.output_powers(mv, noisy=False) / (chip.spec.laser_power_w / chip.spec.modes)
        pred = twin(torch.as_tensor(x), torch.as_tensor(u)).numpy()
        np.testing.assert_allclose(pred, p, rtol=1e-9, atol=1e-12)
    # and the nominal twin is measurably different (the errors matter)
    nominal = MZIMeshTwin(6, twin.phase_per_u)
    assert np.max(np.abs(nominal(torch.as_tensor(x), torch.as_tensor(u)).numpy() - p)) > 0.05


def test_twin_conserves_power_without_loss():
    twin = perturbed_twin(6, seed=9)
    with torch.no_grad():
        twin.log_gain.zero_()
    x = torch.rand(10, 6, dtype=torch.float64)
    y = twin(x, torch.rand(twin.n_controls, dtype=torch.float64))
    torch.testing.assert_close(y.sum(-1), (x**2).sum(-1))


def test_twin_batched_controls_match_single():
    twin = perturbed_twin(4, seed=2)
    x = torch.rand(3, 5, 4, dtype=torch.float64)
    u = torch.rand(3, twin.n_controls, dtype=torch.float64)
    batched = twin(x, u)
    for k in range(3):
        torch.testing.assert_close(batched[k], twin(x[k], u[k]))
