"""Free-space kind: calibration against the hidden misalignment, the adversarial finite-difference
alignment step, and `labsat train --kind freespace` through the station."""
from __future__ import annotations

import functools

import numpy as np
import torch
from typer.testing import CliRunner

from conftest import write_yaml
from test_freespace_optics import SMALL, small_station


def test_calibration_finds_the_hidden_misalignment(tmp_path):
    """Tolerance: rotation 0.1 deg, shift 0.05 px, scale 0.005, crosstalk 0.01 (the virtual bench draws
    rotation ~ N(0, 0.5 deg), shift ~ N(0, 0.4 px), scale 1 + |N(0, 0.015)|, crosstalk U(0.02, 0.08))."""
    from labsat.calibration import measure
    from labsat.calibration.freespace import fit_freespace
    from labsat.config import parse_config
    from labsat.kinds import kind_of
    from labsat.station import Station

    with Station(parse_config(small_station(tmp_path, seed=2))) as st:
        hw = st.layer()
        data = measure(hw, settings=8, inputs_per_setting=8, seed=0)
        truth = st.lab.scenes["freespace"].truth
    twin = kind_of(st.config, "freespace").make_twin(st.config, "freespace")
    fit_freespace(twin, data, max_settings=6, coarse_settings=2, candidates=2, candidate_steps=8, lbfgs_steps=20)
    got = twin.fitted_state()
    assert abs(truth.rotation_deg) > 0.2 or abs(truth.shift_x_px) > 0.2  # a misalignment worth finding
    assert abs(got["rotation_deg"] - truth.rotation_deg) < 0.1
    assert abs(got["shift_x_px"] - truth.shift_x_px) < 0.05
    assert abs(got["shift_y_px"] - truth.shift_y_px) < 0.05
    assert abs(got["scale"] - truth.scale) < 0.005
    assert abs(got["crosstalk"] - truth.crosstalk) < 0.01


@functools.lru_cache(maxsize=1)
def _trained_small_model(seed=0):
    """One small model trained once for the tests below (they restore what they change)."""
    from labsat.data import load_digits_images
    from labsat.physical import HybridClassifier, PhysicalLayer
    from labsat.sat.alignment import train_alignment_sat
    from labsat.twins.freespace import FreeSpaceTwin

    data = load_digits_images(16, 8)
    data.n_classes = 10
    twin = FreeSpaceTwin(**{**SMALL, "classes": 10, "detector_px": 2})
    model = HybridClassifier(PhysicalLayer(twin, seed=seed), 10, seed=seed)
    data.x_train, data.y_train = data.x_train[:200], data.y_train[:200]
    train_alignment_sat(model, data, epochs=2, lr=0.1, sam=False, adversary=False)
    return model, data


def test_finite_difference_step_moves_alignment_toward_higher_loss():
    from labsat.sat.alignment import AdversarialAlignment, AlignmentProbe

    model, data = _trained_small_model()
    twin = model.physical.twin
    xb, yb = data.x_train[:64], data.y_train[:64]
    loss = lambda: torch.nn.functional.cross_entropy(model(xb), yb)  # noqa: E731
    with torch.no_grad():
        base = float(loss())
    for name, probe, step in (("rotation_deg", 1.0, 5.0), ("shift_x_px", 1.0, 5.0), ("scale", 0.05, 0.05)):
        adv = AdversarialAlignment(twin, [AlignmentProbe(name, probe, step, -probe, probe,
                                                         symmetric=name != "scale")], seed=3)
        a0 = float(getattr(twin, name))
        value, info = adv.adversarial_value(loss, adv.next_probe())
        assert float(getattr(twin, name)) == a0  # the twin is put back
        assert value != a0
        # the slope it measured is the loss's: the step goes uphill from the probe point
        with torch.no_grad(), twin.misaligned(**{name: value}):
            adv_loss = float(loss())
        assert adv_loss > base, (name, info, adv_loss)
        assert np.sign(value - (a0 + info["probe"])) == np.sign(info["slope"]) or value in (a0 - probe, a0 + probe)


def test_adversary_step_trains_at_the_adversarial_alignment_and_restores_it():
    from labsat.sat.alignment import AdversarialAlignment, paper_probes

    model, data = _trained_small_model()
    twin = model.physical.twin
    xb, yb = data.x_train[:32], data.y_train[:32]
    adv = AdversarialAlignment(twin, paper_probes(), seed=0)
    seen = {}

    def update():
        seen.update(twin.alignment())
        return torch.tensor(0.0)

    adv.step(lambda: torch.nn.functional.cross_entropy(model(xb), yb), update)
    assert seen["rotation_deg"] == adv.last["adversarial"] != 0.0
    assert twin.alignment()["rotation_deg"] == 0.0
    assert adv.next_probe().name == "shift_x_px"  # round robin


def test_cli_train_kind_freespace_one_epoch(tmp_path):
    from labsat.cli import app

    station = write_yaml(tmp_path / "fs.yaml", small_station(tmp_path))
    out = tmp_path / "fs.pt"
    r = CliRunner().invoke(app, ["train", "--kind", "freespace", "--station", str(station), "--nominal",
                                 "--epochs", "1", "--batch-size", "256", "--optimizer", "adam", "--lr", "0.1",
                                 "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert out.exists()
    r = CliRunner().invoke(app, ["evaluate", str(out), "--station", str(station), "--kind", "freespace",
                                 "--other-chip-seed", "2"])
    assert r.exit_code == 0, r.output
    assert "vchip-1" in r.output and "vchip-2" in r.output
