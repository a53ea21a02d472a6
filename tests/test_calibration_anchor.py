"""The φ offsets of the self-configuring start anchored to the datasheet's prior (calibration/selfconfig.py,
``anchor_phases``, issue 12 round 7): a φ stage reads every loop phase on its own, so rebuilding the φ offsets
from its loop phases adds their errors up along the rows; the anchored offsets stay near the chip's, and the few
loops read far off are weighted down."""
from __future__ import annotations

import numpy as np
import torch

from labsat.calibration.progressive import ProgressivePlan
from labsat.calibration.selfconfig import anchor_phases, loop_phases
from labsat.twins.layout import MeshLayout
from labsat.twins.mzi import MZIMeshTwin


def rebuilt(layout: MeshLayout, loops: np.ndarray) -> np.ndarray:
    """φ offsets whose loop phases are ``loops`` (column by column, as a φ stage's readings chain them)."""
    phi = np.zeros_like(loops)
    for c in range(layout.modes):
        sl = layout.column_slices[c]
        phi[sl] = loops[sl] + (phi[sl] - loop_phases(layout, phi)[sl])
    return phi


def test_anchored_phases_do_not_add_the_loop_errors_up_and_weigh_outliers_down():
    n = 32
    twin = MZIMeshTwin(n, 9.0)
    rng = np.random.default_rng(0)
    truth = rng.normal(0, 0.3, twin.layout.n_mzi)  # the chip's φ offsets (labsat's model: σ 0.3 rad)
    read = loop_phases(twin.layout, truth) + rng.normal(0, 0.1, twin.layout.n_mzi)  # each loop read on its own
    far = rng.choice(twin.layout.n_mzi, 10, replace=False)
    read[far] += 2.5  # a few loops read far off (where the θ stage failed)
    chained = rebuilt(twin.layout, read)
    np.testing.assert_allclose(loop_phases(twin.layout, chained), read, atol=1e-12)
    with torch.no_grad():
        twin.offset[1::2] = torch.as_tensor(chained)
    weight = anchor_phases(twin)
    err = lambda phi: np.abs(np.angle(np.exp(1j * (phi - truth))))  # noqa: E731
    anchored = twin.offset.numpy()[1::2]
    assert np.median(err(anchored)) < 0.5 * min(np.median(err(chained)), np.median(err(np.zeros_like(truth))))
    assert np.quantile(err(anchored), 0.9) < 0.3
    assert np.all(weight[far] < 0.2) and np.median(weight) > 0.7
    np.testing.assert_array_equal(twin.offset.numpy()[0::2], 0.0)  # the θ offsets untouched


def test_the_plan_after_the_start_fits_the_first_band_with_the_start_steps():
    plan = ProgressivePlan(settings=4, inputs=8, self_configure=True)
    after = plan.after_start()
    assert not after.self_configure and plan.self_configure
    assert (after.adam_steps, after.lbfgs_steps, after.lr) == (plan.start_adam_steps, plan.start_lbfgs_steps, plan.start_lr)
    budget = ProgressivePlan.for_budget(12, 16, adam_steps=20, lbfgs_steps=5)  # explicit steps win over the start's
    assert (budget.after_start().adam_steps, budget.after_start().lbfgs_steps) == (20, 5)
