"""`labsat calibrate`'s default budget follows the mesh's size (issue 12, round 3): 64 settings × 32 inputs up to
8 modes (unchanged), 128 settings × N²/8 inputs above (16 N² readings), read from the station file; explicit
values win."""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from conftest import minimal_config, write_yaml
from labsat import defaults, runs, workflows
from labsat.calibration.measure import budget_for, budget_for_modes
from labsat.calibration.progressive import ProgressivePlan
from labsat.config import load_config
from labsat.station import Station
from labsat.workflows.calibrate import _layer_size, default_budget

ROOT = Path(__file__).resolve().parents[1]


def mesh(n):
    return SimpleNamespace(modes=n, n_controls=n * (n - 1))


def test_budget_grows_as_n_squared_above_8_modes_and_is_unchanged_below():
    assert budget_for_modes(8) == budget_for_modes(4) == (defaults.CAL_SETTINGS, defaults.CAL_INPUTS) == (64, 32)
    assert [budget_for_modes(n) for n in (16, 32, 64)] == [(128, 32), (128, 128), (128, 512)]
    for n in (16, 24, 32, 48, 64):
        settings, inputs = budget_for_modes(n)
        assert settings * inputs <= 16 * n * n  # readings ≤ c N²
    # the benchmarks' plan is the same budget, 4 bands of 32 settings
    for n in (16, 32, 64):
        plan = ProgressivePlan.for_modes(n)
        assert (plan.settings * len(plan.u_max), plan.inputs) == budget_for_modes(n)


def test_only_clements_meshes_above_8_modes_are_banded():
    assert budget_for(mesh(64)) == (128, 512)
    assert budget_for(SimpleNamespace(modes=64, n_controls=64)) == (64, 32)  # not a Clements mesh: one band
    assert budget_for(SimpleNamespace(n_controls=40)) == (64, 32)  # no modes at all (other kinds)


def test_params_fill_only_what_is_left_open():
    p = workflows.CalibrationParams().for_hardware(mesh(32))
    assert (p.settings, p.inputs) == (128, 128)
    p = workflows.CalibrationParams(settings=40).for_hardware(mesh(64))
    assert (p.settings, p.inputs) == (40, 512)
    p = workflows.CalibrationParams(settings=6, inputs=4).for_hardware(mesh(64))
    assert (p.settings, p.inputs) == (6, 4)
    with pytest.raises(ValueError, match="not resolved"):
        workflows.CalibrationParams().validate()


def test_station_files_give_the_budget_without_opening_the_hardware(tmp_path):
    big = load_config(ROOT / "stations" / "paper-mzi.yaml")
    assert budget_for(_layer_size(SimpleNamespace(config=big), "mesh")) == (128, 512)
    assert default_budget(SimpleNamespace(config=big)) == (128, 512)  # what the GUI's calibration panel shows
    d = minimal_config()
    small = load_config(write_yaml(tmp_path / "station.yaml", d))
    layer = next(iter(small.layers))
    assert budget_for(_layer_size(SimpleNamespace(config=small), layer)) == (64, 32)


def test_calibrate_without_a_budget_records_the_small_mesh_default(tmp_path):
    d = minimal_config()
    d["station"]["calibration_dir"] = str(tmp_path / "cal")
    d["station"]["runs_dir"] = str(tmp_path / "runs")
    with Station(write_yaml(tmp_path / "station.yaml", d)) as st:
        result = workflows.calibrate(st, workflows.CalibrationParams(adam_steps=5, lbfgs_steps=1))
    assert result.data.x.shape[:2] == (64, 32)
    assert result.meta["settings"] == 64 and result.meta["inputs_per_setting"] == 32
    with runs.RunDB(tmp_path / "runs" / runs.DB_NAME) as db:
        config = db.run(result.run)["config"]
    assert (config["settings"], config["inputs"]) == (64, 32)
