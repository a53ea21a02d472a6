"""`labsat experiment` goes through the kinds: the SAT paper's experiments run on a microring bank and a
free-space bench as they do on the mesh, and one that makes no sense for a kind is one line naming it."""
from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from labsat.experiments import Setup, run_experiment

STATIONS = Path(__file__).resolve().parents[1] / "stations"


def _tiny(tmp_path, station: str, **kw) -> Setup:
    base = dict(station=STATIONS / station, seeds=1, offline_epochs=1, online_epochs=1, cal_settings=4,
                cal_inputs=4, n_chips=1, drift_kelvin=(0.0, 3.0), sharp_random=2, sharp_adv_steps=2,
                hessian_iters=3, sharp_samples=40, methods=("plain", "sat"), out=tmp_path / "exp",
                scheduler="serial", store=tmp_path / "runs")
    base.update(kw)
    return Setup(**base)


def test_transfer_on_a_microring_bank(tmp_path):
    """Models of ring bank A deployed on another bank (another fabrication draw): the drop is measured."""
    result = run_experiment("transfer", _tiny(tmp_path, "microring.yaml", methods=("plain",)), log=lambda m: None)
    rows = result["rows"]
    assert {r["chip"] for r in rows} == {1, 2} and {r["method"] for r in rows} == {"plain"}
    (own,) = [r["accuracy"] for r in rows if r["own_chip"]]
    (other,) = [r["accuracy"] for r in rows if not r["own_chip"]]
    assert 0.2 < own <= 1.0  # well above chance (10 digit classes), after one epoch
    assert own != other  # the other bank really is another device


def test_perturbation_on_a_microring_bank_changes_the_device(tmp_path):
    """Warming the ring bank's environment after deployment changes what the device answers."""
    result = run_experiment("perturbation", _tiny(tmp_path, "microring.yaml", methods=("plain",)),
                            log=lambda m: None)
    by = {r["delta_kelvin"]: r["accuracy"] for r in result["rows"]}
    assert set(by) == {0.0, 3.0} and by[0.0] != by[3.0]


def test_sharpness_on_a_freespace_bench(tmp_path):
    result = run_experiment("sharpness", _tiny(tmp_path, "freespace.yaml", methods=("plain",)), log=lambda m: None)
    (row,) = result["rows"]
    assert row["adversarial_increase"] >= row["random_increase"] >= 0 and row["hessian_top_controls"] != 0


def test_an_experiment_that_does_not_apply_is_one_line_naming_the_kind(tmp_path):
    from labsat.cli import app

    runs = STATIONS.parent / "runs" / "freespace" / "labsat.sqlite"
    before = runs.stat().st_mtime if runs.exists() else None
    out = CliRunner().invoke(app, ["experiment", "perturbation", "--station", str(STATIONS / "freespace.yaml"),
                                   "--out", str(tmp_path), "--scheduler", "serial"])
    assert out.exit_code == 2
    assert (runs.stat().st_mtime if runs.exists() else None) == before  # refused before a run was recorded
    lines = [line for line in out.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "freespace kind" in lines[0] and "perturbation" in lines[0], out.output
    with pytest.raises(ValueError, match="--fab-scale: .* is a microring"):
        run_experiment("transfer", _tiny(tmp_path, "microring.yaml", fab_scale=2.0), log=lambda m: None)
    with pytest.raises(ValueError, match="--kind mesh: the station has no such layer"):
        run_experiment("transfer", _tiny(tmp_path, "microring.yaml", kind="mesh"), log=lambda m: None)
