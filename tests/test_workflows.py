"""The workflow layer: every run recorded (completed, failed, interrupted by an abort), tags, the
experiment run kind (old databases widened in place), torch threads chosen for tensor sizes."""
from __future__ import annotations

import sqlite3

import pytest
import torch

from conftest import minimal_config, write_yaml
from labsat import defaults, runs, workflows
from labsat.station import Station


@pytest.fixture
def station_file(tmp_path):
    d = minimal_config()
    d["station"]["calibration_dir"] = str(tmp_path / "cal")
    d["station"]["runs_dir"] = str(tmp_path / "runs")
    return write_yaml(tmp_path / "station.yaml", d)


def _db(tmp_path):
    return runs.RunDB(tmp_path / "runs" / runs.DB_NAME)


def test_calibrate_records_a_completed_run_with_its_file(station_file, tmp_path):
    events = []
    with Station(station_file) as st, workflows.run_tags(purpose="test"):
        result = workflows.calibrate(st, workflows.CalibrationParams(settings=6, inputs=4, adam_steps=10,
                                                                     lbfgs_steps=2),
                                     workflows.Hooks(progress=lambda e, p: events.append(e)))
    assert result.path is not None and result.path.exists()
    with _db(tmp_path) as db:
        run = db.run(result.run)
    assert run["kind"] == "calibrate" and run["status"] == "completed"
    assert run["calibration"] == str(result.path)
    assert run["config"]["purpose"] == "test" and run["config"]["settings"] == 6
    assert {"measure", "powers", "fit"} <= set(events)


def test_an_abort_ends_the_run_interrupted_and_saves_nothing(station_file, tmp_path):
    seen = {"n": 0}

    def check():
        seen["n"] += 1
        if seen["n"] == 3:
            raise workflows.Aborted("operator pressed Abort")

    with Station(station_file) as st:
        with pytest.raises(workflows.Aborted):
            workflows.calibrate(st, workflows.CalibrationParams(settings=6, inputs=4), workflows.Hooks(check=check))
    with _db(tmp_path) as db:
        (run,) = db.runs()
    assert run["status"] == "interrupted" and "operator pressed Abort" in run["error"]
    assert not list((tmp_path / "cal").rglob("*.json"))


def test_a_failed_training_is_recorded_failed_with_its_epochs(station_file, tmp_path):
    from labsat.train import TrainConfig

    def progress(event, payload):
        if event == "epoch" and payload["epoch"] == 2:
            raise RuntimeError("detector unplugged")

    with Station(station_file) as st:
        with pytest.raises(RuntimeError):
            workflows.train(st, workflows.TrainingRequest(TrainConfig(epochs=3), calibration="nominal"),
                            workflows.Hooks(progress=progress))
    with _db(tmp_path) as db:
        (run,) = db.runs()
        assert run["status"] == "failed" and "detector unplugged" in run["error"]
        assert [e["epoch"] for e in db.epochs(run["id"])] == [1, 2]  # checkpointed before the callback


def test_an_aborted_training_is_interrupted_saved_and_resumable(station_file, tmp_path):
    from labsat.train import TrainConfig

    state = {"epochs": 0}

    def progress(event, payload):
        if event == "epoch":
            state["epochs"] += 1

    def check():
        if state["epochs"] >= 1:
            raise workflows.Aborted("stop after one epoch")

    cfg = TrainConfig(mode="online", optimizer="sam", epochs=3, batch_size=256)
    request = workflows.TrainingRequest(cfg, calibration="nominal", out=str(tmp_path / "m.pt"))
    with Station(station_file) as st:
        result = workflows.train(st, request, workflows.Hooks(progress=progress, check=check))
        assert (st.lab.chip.heater_v == 0).all()  # safe state right after the abort
    assert result.status == "aborted" and result.path.exists()
    with _db(tmp_path) as db:
        run = db.run(result.run)
        assert run["status"] == "interrupted" and [e["epoch"] for e in db.epochs(result.run)] == [1]
        first = db.epochs(result.run)[0]["hardware_batches"]
        assert result.hardware_batches > first > 0  # epoch 1, and the step of epoch 2 before the abort
        stored = run["config"]
    again, opened = workflows.resume_request(stored)
    assert opened["kind"] == "mesh" and again.train == cfg
    with Station(station_file, chip_seed=opened["chip_seed"]) as st:
        done = workflows.train(st, again, resume=result.run)
    with _db(tmp_path) as db:
        run = db.run(result.run)
        epochs = db.epochs(result.run)
    assert run["status"] == "completed" and [e["epoch"] for e in epochs] == [1, 2, 3]
    assert done.hardware_batches == sum(e["hardware_batches"] for e in epochs)  # both processes counted
    assert done.hardware_batches > sum(e["hardware_batches"] for e in epochs[1:])


def test_experiment_runs_are_recorded(station_file, tmp_path):
    import labsat.experiments as experiments

    def fake_run(name, setup, log=print):  # the recording is under test here, not the experiment
        log("measuring")
        if name == "broken":
            raise ValueError("no such experiment")
        return {"directory": tmp_path / "exp" / name, "seconds": 1.5, "table": "| a |"}

    setup = experiments.Setup.small(station=station_file, out=tmp_path / "exp")
    notes = []
    result = workflows.experiment("transfer", setup, fake_run, workflows.Hooks(note=notes.append))
    with pytest.raises(ValueError):
        workflows.experiment("broken", setup, fake_run)
    with _db(tmp_path) as db:
        done, failed = db.runs()
    assert result["run"] == done["id"] and done["kind"] == "experiment" and done["status"] == "completed"
    assert done["config"]["experiment"] == "transfer" and done["result"]["table"] == "| a |"
    assert failed["status"] == "failed" and "no such experiment" in failed["error"]
    assert notes == ["measuring"]


def test_a_database_from_before_experiment_runs_is_widened_in_place(tmp_path):
    path = tmp_path / "old.sqlite"
    conn = sqlite3.connect(path)
    conn.executescript(runs._SCHEMA.replace(", 'experiment'", ""))
    conn.execute("INSERT INTO meta VALUES ('schema_version', '1')")
    conn.execute("INSERT INTO runs (kind, status, config, started_utc) VALUES ('train', 'completed', '{}', 't')")
    conn.execute("INSERT INTO epochs (run, epoch, recorded_utc) VALUES (1, 1, 't')")
    conn.commit()
    with pytest.raises(sqlite3.IntegrityError):
        conn.execute("INSERT INTO runs (kind, status, config, started_utc) VALUES ('experiment', 'running', '{}', 't')")
    conn.close()
    with runs.RunDB(path) as db:
        assert len(db.epochs(1)) == 1  # rows kept, nothing cascaded away
        new = db.start_run("experiment", {}, git=False)
        assert new == 2 and db.run(new)["kind"] == "experiment"
        assert db.conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert db.conn.execute("PRAGMA foreign_key_check").fetchall() == []


def test_torch_threads_one_for_small_tensors_else_torch_default():
    assert defaults.torch_threads(64 * 8 * 8) == 1
    assert defaults.torch_threads(1024 * 64 * 64) >= 1
    assert defaults.torch_threads(10, requested=3) == 3
    with pytest.raises(ValueError, match="--threads"):
        defaults.torch_threads(10, requested=0)
    before = torch.get_num_threads()
    with workflows.training.torch_threads(100, None):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
