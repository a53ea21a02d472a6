"""The fit keeps the heaters' crosstalk physical (>= 0) and refits where clamping it costs accuracy (round 8)."""
import numpy as np
import torch

from _calibration_hw import DirectHardware
from labsat.calibration import fit
from labsat.calibration.fit import _physical, fit_twin, rmse
from labsat.calibration.measure import measure
from labsat.twins.mzi import MZIMeshTwin


def _toy(twin):
    """A loss whose unconstrained optimum pays crosstalk[0] negative (-0.2) to make up for offset[0]."""
    return lambda: (twin.offset[0] + twin.crosstalk[0] - 0.5) ** 2 + (twin.offset[0] - 0.7) ** 2


def test_a_clamp_that_costs_accuracy_is_refitted_and_the_best_clamped_fit_kept():
    twin = MZIMeshTwin(4, 9.0)
    loss = _toy(twin)
    with torch.no_grad():
        twin.offset[0], twin.crosstalk[0] = 0.7, -0.2  # the unconstrained optimum: loss 0
    calls = []

    def refit():  # moves the offset where the clamped crosstalk needs it (what a real refit finds)
        calls.append(float(twin.crosstalk[0]))
        with torch.no_grad():
            twin.offset[0] = 0.6
        return [float(loss())]

    added = _physical(twin, loss, refit)
    assert calls == [0.0]  # refitted once, from the clamped point; the second clamp is harmless, so no more
    assert float(twin.crosstalk.min()) >= 0.0
    assert float(twin.offset[0]) == 0.6
    assert np.isclose(added[-1], float(loss()))  # the history ends on the clamped twin's own loss
    assert added[-1] < 0.04 + 1e-12  # (0.6 - 0.5)^2 + (0.6 - 0.7)^2 = 0.02 < the clamp's 0.04 + 0.0


def test_a_refit_that_does_not_help_is_dropped():
    twin = MZIMeshTwin(4, 9.0)
    loss = _toy(twin)
    with torch.no_grad():
        twin.offset[0], twin.crosstalk[0] = 0.7, -0.2

    def worse():
        with torch.no_grad():
            twin.offset[0], twin.crosstalk[0] = 1.5, -0.9  # lands somewhere worse once clamped
        return [float(loss())]

    added = _physical(twin, loss, worse, refits=3)
    assert float(twin.offset[0]) == 0.7 and float(twin.crosstalk[0]) == 0.0  # the first clamped fit, restored
    assert np.isclose(added[-1], 0.04)


def test_a_harmless_clamp_is_not_refitted():
    twin = MZIMeshTwin(4, 9.0)
    loss = lambda: (twin.offset[0] - 0.7) ** 2 + 1.0 + 1e-6 * twin.crosstalk[0]  # noqa: E731
    with torch.no_grad():
        twin.offset[0], twin.crosstalk[0] = 0.7, -0.01

    def never():
        raise AssertionError("refitted although clamping cost nothing")

    _physical(twin, loss, never)
    assert float(twin.crosstalk[0]) == 0.0


def test_fit_twin_reports_the_clamped_twin(monkeypatch):
    """Whatever the fit does with the crosstalk, its last loss is the returned twin's (the train RMSE the bands
    report), and no link is left negative."""
    hw = DirectHardware(seed=3, modes=4, error_model="paper")  # no crosstalk on the chip: fitted links hover at 0
    data = measure(hw, 24, 8, seed=0)
    twin = MZIMeshTwin(4, hw.phase_per_u)
    monkeypatch.setattr(fit, "REFITS", 1)
    unclamped = []
    monkeypatch.setattr(fit, "_physical", lambda twin, loss_fn, refit: unclamped.append(twin.crosstalk.clone())
                        or _physical(twin, loss_fn, refit))
    history = fit_twin(twin, data, adam_steps=60, lbfgs_steps=20)
    assert float(unclamped[0].min()) < 0.0  # the case that matters: the fit left a link negative
    assert float(twin.crosstalk.min()) >= 0.0
    assert np.isclose(np.sqrt(history[-1]), rmse(twin, data), rtol=1e-9)
