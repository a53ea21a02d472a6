"""The run database (labsat.runs): schema, one transaction per epoch, stale runs, exact resume."""
from __future__ import annotations

import sqlite3
import subprocess
import sys

import pytest
import torch

from labsat import runs
from labsat.train import TrainConfig, build_model, train


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_schema_wal_and_round_trip(tmp_path):
    db = runs.RunDB(tmp_path / "labsat.sqlite")
    assert db.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    run = db.start_run("train", {"train": {"epochs": 3}}, station_yaml="station: {}", calibration="nominal",
                       device="vchip-1", git="abc123")
    db.record_epoch(run, {"epoch": 1, "loss": 2.0, "train_accuracy": 0.25, "hardware_batches": 7},
                    checkpoint=tmp_path / "e1.pt")
    db.record_epoch(run, {"epoch": 2, "loss": 1.5, "train_accuracy": 0.5, "hardware_batches": 7})
    db.set_parameters(run, "heater_v", [1.0, 2.0], indices=[4, 9])
    db.finish(run, "completed", result={"acc": 0.5})
    info = db.run(run)
    assert info["status"] == "completed" and info["git_revision"] == "abc123"
    assert info["config"] == {"train": {"epochs": 3}} and info["result"] == {"acc": 0.5}
    assert info["station_yaml"] == "station: {}" and info["calibration"] == "nominal"
    assert [e["epoch"] for e in db.epochs(run)] == [1, 2]
    assert db.epochs(run)[0]["hardware_batches"] == 7
    assert db.last_checkpoint(run)["epoch"] == 1
    assert db.parameters(run) == {"heater_v": {4: 1.0, 9: 2.0}}
    assert db.integrity() == "ok"
    csv_text = db.export_csv(run)
    assert csv_text.splitlines()[0].startswith("run,kind,status,epoch,loss")
    assert len(csv_text.splitlines()) == 3
    db.close()


def test_bad_kind_and_status_rejected(tmp_path):
    db = runs.RunDB(tmp_path / "labsat.sqlite")
    with pytest.raises(runs.RunError, match="kind"):
        db.start_run("dance", {})
    run = db.start_run("evaluate", {}, git=None)
    with pytest.raises(runs.RunError):
        db.finish(run, "running")
    with pytest.raises(runs.RunError, match="no run 99"):
        db.run(99)


def test_failed_transaction_leaves_nothing(tmp_path):
    db = runs.RunDB(tmp_path / "labsat.sqlite")
    run = db.start_run("train", {}, git=None)
    with pytest.raises(RuntimeError):
        with db.transaction() as c:
            c.execute("INSERT INTO epochs (run, epoch, recorded_utc) VALUES (?, 1, 'now')", (run,))
            raise RuntimeError("killed between the two inserts")
    assert db.epochs(run) == []


def test_stale_running_run_is_interrupted_and_resumable(tmp_path):
    db = runs.RunDB(tmp_path / "labsat.sqlite")
    run = db.start_run("train", {"train": {}}, git=None)
    assert db.run(run)["status"] == "running"  # this process holds it
    db.conn.execute("UPDATE runs SET pid=? WHERE id=?", (_dead_pid(), run))
    assert db.run(run)["status"] == "interrupted"  # computed on read
    db.close()
    db = runs.RunDB(tmp_path / "labsat.sqlite")  # and written on the next open
    raw = db.conn.execute("SELECT status, error FROM runs WHERE id=?", (run,)).fetchone()
    assert raw["status"] == "interrupted" and "--resume" in raw["error"]
    info = db.reopen(run)
    assert info["status"] == "running" and info["resumed"] == 1
    with pytest.raises(runs.RunError, match="still running"):
        db.reopen(run)
    db.finish(run, "completed")
    with pytest.raises(runs.RunError, match="already completed"):
        db.reopen(run)


def test_not_a_database(tmp_path):
    bad = tmp_path / "labsat.sqlite"
    bad.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(runs.RunError, match="not a labsat run database"):
        runs.RunDB(bad)


def _tiny(data, n=96):
    return type(data)(data.x_train[:n], data.y_train[:n], data.x_test[:64], data.y_test[:64],
                      data.encoder, data.n_classes, data.name)


@pytest.mark.parametrize("optimizer", ["sam", "saf", "noise"])  # wrapper+base, memory, generator
def test_resume_from_checkpoint_is_exact(tmp_path, config_dict, optimizer):
    """1 epoch + resume to 3 gives the very parameters of 3 epochs in one go (optimizer state, RNG)."""
    from labsat.config import parse_config
    from labsat.data import load_digits

    layer = parse_config(config_dict).layers["mesh"]
    data = _tiny(load_digits(layer.modes, seed=0))
    cfg = TrainConfig(optimizer=optimizer, base="adam", epochs=3, batch_size=32, lr=0.05, warmup=1, lag=1)

    straight = build_model(layer, 600.0, 10, seed=3)
    train(straight, data, cfg)

    db = runs.RunDB(tmp_path / "labsat.sqlite")
    run = db.start_run("train", {}, git=None)
    rec = runs.TrainRecorder(db, run, tmp_path / "checkpoints")
    first = build_model(layer, 600.0, 10, seed=3)
    train(first, data, TrainConfig(**{**vars(cfg), "epochs": 1}), checkpoint=rec.checkpoint)
    assert [e["epoch"] for e in db.epochs(run)] == [1]

    torch.manual_seed(12345)  # the resumed process starts with other RNG state
    rec2 = runs.TrainRecorder(db, run, tmp_path / "checkpoints")
    resumed = build_model(layer, 600.0, 10, seed=99)  # other initial weights: the checkpoint must win
    history = train(resumed, data, cfg, resume=rec2.resume_state(), checkpoint=rec2.checkpoint)
    assert [e.epoch for e in history.epochs] == [2, 3]
    assert [e["epoch"] for e in db.epochs(run)] == [1, 2, 3]
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name
    rec2.record_final_parameters(resumed, layer)
    params = db.parameters(run)
    assert sorted(params["heater_v"]) == list(layer.heaters.channels)
    assert all(0.0 <= v <= layer.v_max for v in params["heater_v"].values())


def test_train_without_new_keywords_is_unchanged(config_dict):
    from labsat.config import parse_config
    from labsat.data import load_digits

    layer = parse_config(config_dict).layers["mesh"]
    data = _tiny(load_digits(layer.modes, seed=0), 64)
    history = train(build_model(layer, 600.0, 10), data, TrainConfig(epochs=2, batch_size=32))
    assert [e.epoch for e in history.epochs] == [1, 2]


def test_integrity_after_concurrent_reader(tmp_path):
    db = runs.RunDB(tmp_path / "labsat.sqlite")
    run = db.start_run("train", {}, git=None)
    reader = sqlite3.connect(tmp_path / "labsat.sqlite")
    reader.execute("BEGIN")
    reader.execute("SELECT * FROM runs").fetchall()  # WAL: a reader does not block the writer
    db.record_epoch(run, {"epoch": 1, "loss": 1.0})
    reader.execute("COMMIT")
    assert reader.execute("SELECT count(*) FROM epochs").fetchone()[0] == 1


def test_reused_pid_is_not_mistaken_for_the_run(tmp_path):
    """A run whose pid now belongs to another process (pid reuse after a crash) is interrupted."""
    db = runs.RunDB(tmp_path / "labsat.sqlite")
    run = db.start_run("train", {"train": {}}, git=None)
    assert db.run(run)["proc_start"] is not None  # Linux /proc
    db.conn.execute("UPDATE runs SET proc_start='1' WHERE id=?", (run,))  # same pid, other process
    assert db.run(run)["status"] == "interrupted"
