"""`labsat train` and `labsat calibrate` are recorded; `labsat runs list|show|export`; `--resume` rules."""
from __future__ import annotations

import csv
import io

import pytest
from typer.testing import CliRunner

from labsat import runs
from labsat.cli import app

runner = CliRunner()


def _invoke(*args):
    return runner.invoke(app, [str(a) for a in args], env={"COLUMNS": "200"})


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One offline training run (2 epochs, run 1) on the small station, with the nominal twin;
    shared by the tests of this module (they add runs, never change run 1)."""
    from conftest import minimal_config, write_yaml

    root = tmp_path_factory.mktemp("trained")
    station = write_yaml(root / "small.yaml", minimal_config())
    result = _invoke("train", "-s", station, "--mode", "offline", "--optimizer", "adam",
                     "--epochs", 2, "--batch-size", 256, "--nominal")
    assert result.exit_code == 0, result.output
    return station, root / "runs" / runs.DB_NAME


def test_train_is_recorded(trained):
    station, db_file = trained
    db = runs.RunDB(db_file)
    run = db.run(1)
    assert run["kind"] == "train" and run["status"] == "completed"
    assert run["config"]["train"]["epochs"] == 2 and run["config"]["calibration"] == "nominal"
    assert run["station_yaml"] == station.read_text()  # the snapshot
    assert run["device"] == "vchip-1" and run["started_utc"] and run["ended_utc"]
    assert [e["epoch"] for e in db.epochs(run["id"])] == [1, 2]
    assert [c["epoch"] for c in db.checkpoints(run["id"])] == [1, 2]
    params = db.parameters(run["id"])
    assert len(params["u"]) == 12 and sorted(params["heater_v"]) == list(range(12))
    assert run["result"]["out"].endswith("offline-adam.pt")


def test_runs_list_show_export(trained, tmp_path):
    station, db_file = trained
    out = _invoke("runs", "list", "-s", station)
    assert out.exit_code == 0, out.output
    assert "completed" in out.output and "offline adam" in out.output and "2/2" in out.output

    out = _invoke("runs", "show", 1, "-s", station)
    assert out.exit_code == 0, out.output
    for text in ("completed", "nominal", "epochs", "final heater_v (12)", "checkpoints: 2"):
        assert text in out.output

    out = _invoke("runs", "export", 1, "--format", "csv", "--db", db_file)
    assert out.exit_code == 0, out.output
    rows = list(csv.DictReader(io.StringIO(out.output)))
    assert [int(r["epoch"]) for r in rows] == [1, 2] and all(float(r["loss"]) > 0 for r in rows)

    xr = pytest.importorskip("xarray")
    nc = tmp_path / "run1.nc"
    out = _invoke("runs", "export", 1, "--format", "netcdf", "--out", nc, "-s", station)
    assert out.exit_code == 0, out.output
    with xr.open_dataset(nc) as ds:
        assert list(ds["epoch"].values) == [1, 2]
        assert ds["final_heater_v"].sizes["channel"] == 12
        assert ds.attrs["status"] == "completed" and "adam" in ds.attrs["config"]


def test_runs_errors_are_clear(trained, tmp_path):
    station, db_file = trained
    out = _invoke("runs", "show", 42, "-s", station)
    assert out.exit_code == 2 and "no run 42" in out.output
    out = _invoke("runs", "export", 1, "--format", "xlsx", "-s", station)
    assert out.exit_code == 2 and "csv or netcdf" in out.output
    out = _invoke("runs", "list", "--db", tmp_path / "nowhere.sqlite")
    assert out.exit_code == 2 and "no run database yet" in out.output
    out = _invoke("train", "-s", station, "--resume", 1)
    assert out.exit_code == 2 and "already completed" in out.output
    out = _invoke("train", "-s", station, "--resume", 7)
    assert out.exit_code == 2 and "no run 7" in out.output


def test_calibrate_is_recorded(small_station_yaml, tmp_path):
    result = _invoke("calibrate", "-s", small_station_yaml, "--settings", 8, "--inputs", 8)
    assert result.exit_code == 0, result.output
    db = runs.RunDB(tmp_path / "runs" / runs.DB_NAME)
    (run,) = db.runs()
    assert run["kind"] == "calibrate" and run["status"] == "completed"
    assert run["calibration"].endswith(".json") and run["calibration"] == run["result"]["calibration"]
    assert run["result"]["residuals"]["fitted_holdout"]["rmse"] >= 0
    assert run["config"]["settings"] == 8


def test_evaluate_is_recorded(trained):
    station, db_file = trained
    model = runs.RunDB(db_file).run(1)["result"]["out"]
    result = _invoke("evaluate", model, "-s", station)
    assert result.exit_code == 0, result.output
    db = runs.RunDB(db_file)
    run = db.runs("evaluate")[-1]
    assert run["status"] == "completed" and run["config"]["models"] == [model]
    accuracy = run["result"]["accuracy"][model]
    assert set(accuracy) == {"vchip-1", "vchip-2"} and all(0 <= a <= 1 for a in accuracy.values())
    result = _invoke("evaluate", model + ".missing", "-s", station)
    assert result.exit_code == 2
    assert db.runs("evaluate")[-1]["status"] == "failed"


def test_resume_keeps_the_network_kind(tmp_path, monkeypatch):
    """A microring run that failed (disk full) resumes as a microring run without repeating --kind."""
    import errno

    import torch
    import yaml

    from conftest import REPO, write_yaml

    data = yaml.safe_load((REPO / "stations" / "microring.yaml").read_text())
    data["station"]["runs_dir"] = str(tmp_path / "runs")
    data["station"]["calibration_dir"] = str(tmp_path / "cal")
    station = write_yaml(tmp_path / "microring.yaml", data)
    real_save, calls = torch.save, []

    def save(*a, **k):
        calls.append(1)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(*a, **k)

    monkeypatch.setattr(torch, "save", save)
    result = _invoke("train", "-s", station, "--kind", "microring", "--mode", "offline", "--optimizer", "adam",
                     "--epochs", 2, "--batch-size", 256, "--nominal")
    assert result.exit_code == 2 and "disk is full" in result.output
    result = _invoke("train", "-s", station, "--resume", 1)
    assert result.exit_code == 0, result.output
    db = runs.RunDB(tmp_path / "runs" / runs.DB_NAME)
    run = db.run(1)
    assert run["status"] == "completed" and run["config"]["kind"] == "microring"
    assert [e["epoch"] for e in db.epochs(1)] == [1, 2]
    assert "u" in db.parameters(1)


def test_demo_runs_are_recorded(tmp_path, monkeypatch):
    """`labsat demo` records its calibration and its four trainings (the evaluation table is its own)."""
    from conftest import minimal_config, write_yaml

    import labsat.cli as cli

    quick = cli.run_calibration

    def run_calibration(st, settings=None, inputs=None, holdout=cli.defaults.CAL_HOLDOUT, seed=0):
        return quick(st, 8, 8, holdout, seed)  # a small measurement: this is not a fit test

    monkeypatch.setattr(cli, "run_calibration", run_calibration)
    station = write_yaml(tmp_path / "small.yaml", minimal_config())
    result = _invoke("demo", "--station", station, "--offline-epochs", 1, "--online-epochs", 1)
    assert result.exit_code == 0, result.output
    db = runs.RunDB(tmp_path / "runs" / runs.DB_NAME)
    kinds = [(r["kind"], r["status"], r["config"].get("demo")) for r in db.runs()]
    assert kinds == [("calibrate", "completed", True), ("train", "completed", "offline plain"),
                     ("train", "completed", "offline SAT"), ("train", "completed", "online plain"),
                     ("train", "completed", "online SAT"), ("evaluate", "completed", True)]  # issue 15: recorded
    online = db.runs("train")[-1]
    assert online["calibration"] == db.runs("calibrate")[0]["calibration"]
    assert db.epochs(online["id"])[0]["hardware_batches"] > 0
