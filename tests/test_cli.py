"""The command line, in process (typer's CliRunner), on station files under tmp_path: nothing is written
into the repository. Calibrations are made small (fewer settings and fit steps) to keep this fast;
their quality is tested in test_calibration_store.py."""
from __future__ import annotations

import functools
import re

import pytest
import yaml
from typer.testing import CliRunner

import labsat.calibration
from conftest import minimal_config, write_yaml
from labsat import cli, defaults

runner = CliRunner()


@pytest.fixture(autouse=True)
def wide_console(monkeypatch):
    """Rich wraps at 80 columns when not on a terminal; keep table rows and messages on one line."""
    monkeypatch.setattr(cli.console, "_width", 250)


@pytest.fixture
def quick_calibration(monkeypatch):
    """Every calibration the CLI runs: 12 settings x 8 inputs, 60 Adam + 20 L-BFGS steps."""
    original_run, original_fit = cli.run_calibration, labsat.calibration.fit_twin

    def run_calibration(station, settings=None, inputs=None, holdout=defaults.CAL_HOLDOUT, seed=0, **start):
        # None (the layer's default budget) is capped as well
        return original_run(station, min(settings or 12, 12), min(inputs or 8, 8), holdout, seed, **start)

    monkeypatch.setattr(cli, "run_calibration", run_calibration)
    monkeypatch.setattr(labsat.calibration, "fit_twin",
                        functools.partial(original_fit, adam_steps=60, lbfgs_steps=20))


@pytest.fixture
def small_yaml(tmp_path):
    d = minimal_config()
    d["station"]["calibration_dir"] = str(tmp_path / "cal")
    d["station"]["runs_dir"] = str(tmp_path / "runs")
    return write_yaml(tmp_path / "station.yaml", d)


def invoke(*args):
    result = runner.invoke(cli.app, [str(a) for a in args])
    return result, result.output


def test_demo_prints_the_accuracy_table(small_yaml, tmp_path, quick_calibration):
    models = tmp_path / "models"
    result, out = invoke("demo", "--station", small_yaml, "--offline-epochs", 1, "--online-epochs", 1,
                         "--runs-dir", models)
    assert result.exit_code == 0, out
    assert "test accuracy on the virtual chips" in out
    header = next(line for line in out.splitlines() if "chip A" in line and "chip B" in line)
    assert "vchip-1" in header and "vchip-2" in header
    for label in ("offline plain", "offline SAT", "online plain", "online SAT"):
        row = next(line for line in out.splitlines() if line.strip("│ ").startswith(label) and "%" in line)
        values = [float(v) for v in re.findall(r"(\d+\.\d) %", row)]
        assert len(values) == 2 and all(0.0 <= v <= 100.0 for v in values), row
        assert (models / f"{label.replace(' ', '-')}.pt").is_file()
    assert list((tmp_path / "cal" / "mesh" / "vchip-1").glob("*.json"))  # the calibration went to tmp, too


def test_train_bad_mode_exits_2(small_yaml):
    result, out = invoke("train", "--station", small_yaml, "--mode", "sideways", "--epochs", 1)
    assert result.exit_code == 2, out
    assert "mode must be 'offline' or 'online', got 'sideways'" in out
    assert "Traceback" not in out


def test_train_bad_optimizer_exits_2(small_yaml):
    result, out = invoke("train", "--station", small_yaml, "--optimizer", "lbfgs", "--epochs", 1)
    assert result.exit_code == 2, out
    assert "optimizer must be one of" in out


def test_calibrate_bad_start_exits_2(small_yaml, tmp_path):
    result, out = invoke("calibrate", "--station", small_yaml, "--start", "oracle")
    assert result.exit_code == 2, out
    assert "--start must be 'datasheet' or 'self-configure', got 'oracle'" in out and "Traceback" not in out
    assert not (tmp_path / "cal").exists()  # nothing measured, nothing saved


def test_calibrate_start_reaches_the_workflow(small_yaml, monkeypatch):
    from labsat import workflows
    seen = []
    monkeypatch.setattr(workflows, "calibrate", lambda station, params, *a, **k: seen.append(params) or 1 / 0)
    for flag, planned in (("self-configure", True), ("datasheet", False)):
        invoke("calibrate", "--station", small_yaml, "--start", flag)
        assert seen.pop().self_configure is planned


def test_calibrate_bad_station_names_the_key(tmp_path):
    d = minimal_config()
    d["instruments"]["heaters"]["limits"]["v_max"] = "lots"
    bad = write_yaml(tmp_path / "bad.yaml", d)
    result, out = invoke("calibrate", "--station", bad)
    assert result.exit_code == 2, out
    assert "instruments.heaters.limits.v_max" in out and "valid number" in out


def test_calibrate_malformed_yaml_names_the_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("station:\n  backend: sim\n instruments: {}\n")
    result, out = invoke("calibrate", "--station", bad)
    assert result.exit_code == 2, out
    assert "malformed YAML" in out and "line 3" in out


def test_calibrate_missing_station_file(tmp_path):
    result, out = invoke("calibrate", "--station", tmp_path / "nope.yaml")
    assert result.exit_code == 2, out
    assert "cannot read" in out


def test_repo_station_copy_calibrate_bad_key(station_yaml):
    """The repo's own instruments.yaml (copied), with a layer asking more than the heater limit."""
    data = yaml.safe_load(station_yaml.read_text())
    data["layers"]["mesh"]["v_max"] = 10.0
    write_yaml(station_yaml, data)
    result, out = invoke("calibrate", "--station", station_yaml)
    assert result.exit_code == 2, out
    assert "layers.mesh.v_max" in out and "instruments.heaters.limits.v_max" in out


def test_calibrate_train_evaluate(small_yaml, tmp_path, quick_calibration):
    result, out = invoke("calibrate", "--station", small_yaml, "--settings", 12, "--inputs", 8)
    assert result.exit_code == 0, out
    assert "calibration of vchip-1" in out and "fitted" in out
    saved = list((tmp_path / "cal" / "mesh" / "vchip-1").glob("*.json"))
    assert len(saved) == 1 and str(saved[0].name) in out.replace("\n", "")
    model = tmp_path / "m.pt"
    result, out = invoke("train", "--station", small_yaml, "--mode", "offline", "--optimizer", "sam",
                         "--epochs", 1, "--out", model)
    assert result.exit_code == 0, out
    assert model.is_file() and "final train loss" in out and saved[0].name in out.replace("\n", "")
    result, out = invoke("evaluate", model, "--station", small_yaml)
    assert result.exit_code == 0, out
    row = next(line for line in out.splitlines() if line.strip("│ ").startswith("m "))
    assert len(re.findall(r"\d+\.\d %", row)) == 2  # chip A and chip B


def test_train_without_calibration_says_what_to_do(small_yaml):
    result, out = invoke("train", "--station", small_yaml, "--epochs", 1)
    assert result.exit_code == 2, out
    assert "no calibration for device 'vchip-1'" in out and "labsat calibrate" in out


def test_evaluate_missing_model(small_yaml, tmp_path):
    result, out = invoke("evaluate", tmp_path / "none.pt", "--station", small_yaml)
    assert result.exit_code == 2, out
    assert "no such model file" in out


def test_evaluate_on_a_station_with_another_mesh_size(small_yaml, station_yaml, tmp_path):
    """A 4-mode model evaluated on the 8-mode station: exit 2 with a clear message, not a traceback."""
    model = tmp_path / "m4.pt"
    result, out = invoke("train", "--station", small_yaml, "--nominal", "--mode", "offline",
                         "--optimizer", "adam", "--epochs", 1, "--out", model)
    assert result.exit_code == 0, out
    result, out = invoke("evaluate", model, "--station", station_yaml)
    assert result.exit_code == 2, out
    assert "m4.pt" in out and "does not fit" in out and "physical.u" in out
