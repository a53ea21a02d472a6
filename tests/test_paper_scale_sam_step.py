"""Online SAM's step at N = 64 under 10 % of the instruments (issue 12, round 5b): the perturbed (w + ε) pass only
supplies a gradient, so its digital readout runs in the physical layer's ``backward_dtype`` as its twin pass does
(the mesh twin's outputs stay in that dtype, its gains folded into the matrix); ``ClassLoss`` is train()'s
cross-entropy on the (1, C, B) view; PartialSAM's clean pass skips the readout's unused gradient. Each: the same
numbers as before (float64 to tolerance, or exactly), and the precision really used."""
from __future__ import annotations

import torch
from torch import nn

from labsat.physical import HybridClassifier, PhysicalLayer
from labsat.sat.step import Batch, step_batch
from labsat.train import ClassLoss, TrainConfig, make_optimizer
from labsat.twins.mzi import MZIMeshTwin

from _twin_bench import TwinBench

MODES, BATCH, CLASSES = 6, 16, 4


class SpyLoss(ClassLoss):
    """train()'s loss, recording the dtype of the logits of every pass."""

    def __init__(self):
        super().__init__()
        self.dtypes = []

    def forward(self, input, target):
        self.dtypes.append(input.dtype)
        return super().forward(input, target)


def model_and_batch(mode="online", seed=0):
    twin = MZIMeshTwin(MODES, 9.0)
    with torch.no_grad():  # port gains and errors that are not 1 / 0: the folding of the gains is exercised
        g = torch.Generator().manual_seed(3)
        twin.log_gain.normal_(0, 0.2, generator=g)
        twin.coupler_error.normal_(0, 0.1, generator=g)
    layer = PhysicalLayer(twin, TwinBench(MODES), seed=seed)
    model = HybridClassifier(layer, CLASSES, seed=seed)
    opt = make_optimizer(model.parameters(), TrainConfig(mode=mode, optimizer="sam", lr=0.01), model=model)
    layer.use_hardware = mode == "online"
    x = torch.rand(BATCH, MODES, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    y = torch.randint(0, CLASSES, (BATCH,), generator=torch.Generator().manual_seed(2))
    return model, opt, Batch(model, x, y, torch.arange(BATCH), SpyLoss())


def perturbed_gradient(model, opt, batch, dtype):
    """The perturbed pass's gradient (controls, readout weight, bias) at w + ε with the twin pass in ``dtype``."""
    params = [p for p in model.parameters() if p.requires_grad]
    batch.forward_backward(opt)
    opt.first_step(zero_grad=True)
    model.physical.backward_dtype = dtype
    opt.zero_grad()
    with batch.on_twin(gradient_only=True):
        batch.forward_backward(opt)
    return torch.cat([p.grad.flatten() for p in params])


def test_the_perturbed_pass_readout_runs_in_the_backward_dtype_online_only():
    # online: the perturbed pass in dtype; the clean pass too since round 5c (tests/test_paper_scale_sam_ascent.py)
    for mode, expected in (("online", [torch.float32, torch.float32]), ("offline", [torch.float64, torch.float64])):
        model, opt, batch = model_and_batch(mode)
        step_batch(opt, batch)
        assert batch.loss_fn.dtypes == expected, mode
        assert model.physical.gradient_pass is False
        assert all(p.dtype == torch.float64 for p in model.parameters())  # the parameters stay float64


def test_the_perturbed_pass_gives_the_float64_gradient_to_tolerance():
    model, opt, batch = model_and_batch()
    ref = perturbed_gradient(model, opt, batch, None)        # all float64 (the twin's own precision)
    new = perturbed_gradient(*model_and_batch(), torch.float32)  # the default
    assert not torch.equal(ref, new)  # really another precision ...
    torch.testing.assert_close(new, ref, rtol=1e-4, atol=1e-6)  # ... that agrees with float64
    assert float(ref @ new / (ref.norm() * new.norm())) > 1 - 1e-9


def test_mesh_twin_result_dtype_folds_the_gains():
    twin = model_and_batch()[0].physical.twin
    x = torch.rand(BATCH, MODES, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    w = torch.randn(BATCH, MODES, dtype=torch.float64, generator=torch.Generator().manual_seed(6))
    u0 = torch.rand(twin.n_controls, dtype=torch.float64, generator=torch.Generator().manual_seed(7))
    out, grads = {}, {}
    for key, kw in (("f64", {}), ("f32 in f64", {"dtype": torch.float32}),
                    ("f32", {"dtype": torch.float32, "result_dtype": torch.float32})):
        u = u0.clone().requires_grad_(True)
        out[key] = twin(x, u, **kw)
        grads[key] = torch.autograd.grad((out[key] * w.to(out[key].dtype)).sum(), u)[0]
    assert out["f32"].dtype == torch.float32 and out["f32 in f64"].dtype == torch.float64
    assert grads["f32"].dtype == torch.float64  # the controls' gradient stays in their dtype
    torch.testing.assert_close(out["f32"].double(), out["f64"], rtol=2e-5, atol=1e-6)
    torch.testing.assert_close(grads["f32"], grads["f64"], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(out["f32"].double(), out["f32 in f64"], rtol=2e-6, atol=1e-7)


def test_class_loss_is_cross_entropy():
    z = torch.randn(37, 10, dtype=torch.float64, generator=torch.Generator().manual_seed(0), requires_grad=True)
    y = torch.randint(0, 10, (37,), generator=torch.Generator().manual_seed(1))
    for kw in ({}, {"label_smoothing": 0.1}, {"reduction": "sum"}):
        a, b = ClassLoss(**kw)(z, y), nn.CrossEntropyLoss(**kw)(z, y)
        torch.testing.assert_close(a, b, rtol=1e-14, atol=0)
        torch.testing.assert_close(torch.autograd.grad(a, z)[0], torch.autograd.grad(b, z)[0], rtol=1e-12, atol=1e-15)
    soft = torch.softmax(torch.randn(37, 10, dtype=torch.float64), -1)  # probabilities: the plain path
    torch.testing.assert_close(ClassLoss()(z, soft), nn.CrossEntropyLoss()(z, soft), rtol=0, atol=0)


def _recording(first_step, weight, seen):
    """``first_step``, recording the readout weight's gradient as the ascent finds it."""
    def run(zero_grad=False):
        seen.append(weight.grad)
        first_step(zero_grad)
    return run


def test_partial_sam_clean_pass_skips_the_readout_gradient_same_update():
    runs = {}
    for skip in (True, False):
        model, opt, batch = model_and_batch()
        assert type(opt).norm_over_perturbed  # make_optimizer's SAM with perturb="controls": PartialSAM
        opt.norm_over_perturbed = skip
        seen = []
        opt.first_step = _recording(opt.first_step, model.readout.weight, seen)
        for _ in range(3):
            step_batch(opt, batch)
        assert (seen[0] is None) == skip  # not computed for the ascent when skipped
        assert model.readout.weight.requires_grad  # restored
        runs[skip] = [p.detach().clone() for p in model.parameters()]
    for a, b in zip(runs[True], runs[False]):
        torch.testing.assert_close(a, b, rtol=0, atol=0)  # the update is the same, bit for bit
