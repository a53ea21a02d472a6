"""Online SAM's clean pass in the layer's ``backward_dtype`` (issue 12, round 5c): its gradient only sets the ascent
direction e (the update uses the perturbed pass's), so the hardware's readings are handed on in float32 and the
readout and loss follow (``Batch.ascent``, the same switch as the perturbed pass's). Checked: the precision really
used, only online and only with a ``backward_dtype``; the ascent direction and reported loss against all float64
at the same readings; a few SAM steps give float64's weights to tolerance; one hardware reading per step."""
from __future__ import annotations

import torch

from labsat.sat.step import step_batch
from test_paper_scale_sam_step import model_and_batch


def test_the_clean_pass_runs_in_the_backward_dtype_online_only():
    for mode, dtype, expected in (("online", "default", [torch.float32] * 2),
                                  ("online", None, [torch.float64] * 2),  # all float64: as before
                                  ("offline", "default", [torch.float64] * 2)):
        model, opt, batch = model_and_batch(mode)
        if dtype is None:
            model.physical.backward_dtype = None
        loss, out = step_batch(opt, batch)
        assert batch.loss_fn.dtypes == expected, (mode, dtype)  # [clean pass, perturbed pass]
        assert loss.dtype == out.dtype == expected[0]  # the reported loss and the accuracy's logits
        assert model.physical.gradient_pass is False  # restored
        assert all(p.dtype == torch.float64 for p in model.parameters())  # the parameters stay float64
        if mode == "online":
            assert model.physical.hardware.batches == 1  # one hardware reading per step, as before


def ascent(dtype):
    """The clean pass (as SAM.step_batch takes it) with the layer's ``backward_dtype`` = ``dtype``: the reported
    loss and the ascent e of every parameter (zero for the readout: rho = 0 there)."""
    model, opt, batch = model_and_batch()
    model.physical.backward_dtype = dtype
    params = [p for p in model.parameters() if p.requires_grad]
    with opt._ascent_only(), batch.ascent():
        loss, _ = batch.forward_backward(opt)
    opt.first_step(zero_grad=True)
    e = torch.cat([opt.state[p]["e"].flatten() for p in params if "e" in opt.state[p]])
    return float(loss.detach()), e


def test_the_ascent_direction_and_loss_agree_with_float64():
    loss64, e64 = ascent(None)
    loss32, e32 = ascent(torch.float32)
    assert not torch.equal(e32, e64)  # really another precision ...
    assert float(e64 @ e32 / (e64.norm() * e32.norm())) > 1 - 1e-9  # ... the same direction
    torch.testing.assert_close(e32, e64, rtol=1e-4, atol=1e-7)
    assert loss32 != loss64 and abs(loss32 - loss64) < 1e-6 * abs(loss64)  # float32 rounding only


def test_sam_steps_give_the_float64_weights_to_tolerance():
    runs = {}
    for dtype in (None, torch.float32):
        model, opt, batch = model_and_batch()
        model.physical.backward_dtype = dtype
        for _ in range(5):
            step_batch(opt, batch)
            model.physical.project_()
        runs[dtype] = torch.cat([p.detach().flatten() for p in model.parameters()])
    torch.testing.assert_close(runs[torch.float32], runs[None], rtol=1e-5, atol=1e-7)
