"""Faults during `labsat train`: each gives one clear error line (exit code 2), keeps every completed
epoch in the run database, and leaves the heaters at 0 V (checked on the virtual chip itself).

Instrument faults come from instruments.yaml (``station.sim.faults``, served by drivers/sim/faults.py);
the full disk is a monkeypatched write raising ENOSPC. docs/FAULTS.md is the table of these tests.
"""
from __future__ import annotations

import errno
import sqlite3

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from conftest import write_yaml
from labsat import runs
from labsat.cli import app

EPOCHS = 3
# digits: 1348 training samples, batch 256 -> 6 steps (6 hardware forwards, 6 heater updates) per epoch;
# the station reads the heaters once on connecting (start-up safe state), so the 9th VALL? / FETC is in epoch 2


@pytest.fixture
def stations(monkeypatch):
    """Every Station the CLI opens, so a test can look at its virtual chip after the command."""
    from labsat.station import Station

    opened = []
    connect = Station.connect

    def spy(self):
        opened.append(self)
        return connect(self)

    monkeypatch.setattr(Station, "connect", spy)
    return opened


def _station(config_dict, tmp_path, faults=(), name="faulty.yaml"):
    config_dict["station"]["runs_dir"] = str(tmp_path / "runs")
    config_dict["station"]["calibration_dir"] = str(tmp_path / "cal")
    for inst in config_dict["instruments"].values():
        inst["timeout_s"] = 0.3  # a timeout costs 0.3 s, not 2 s
    config_dict["station"]["sim"]["faults"] = [dict(f) for f in faults]
    return write_yaml(tmp_path / name, config_dict)


def _train(station, *extra):
    args = ["train", "-s", str(station), "--mode", "online", "--optimizer", "adam", "--epochs", str(EPOCHS),
            "--batch-size", "256", "--nominal", *map(str, extra)]
    return CliRunner().invoke(app, args, env={"COLUMNS": "200"})


def _db(tmp_path) -> runs.RunDB:
    return runs.RunDB(tmp_path / "runs" / runs.DB_NAME)


def _assert_safe(stations):
    assert stations, "no station was opened"
    for st in stations:
        if st.lab is not None:
            assert not np.any(st.lab.chip.heater_v), f"heaters left at {st.lab.chip.heater_v}"


def _assert_failed_after_epoch_1(tmp_path, result, message):
    assert result.exit_code == 2, result.output
    assert "error:" in result.output and message in result.output
    assert "Traceback" not in result.output
    assert "epochs 1..1 kept" in result.output and "--resume 1" in result.output
    db = _db(tmp_path)
    run = db.run(1)
    assert run["status"] == "failed" and message in run["error"]
    assert [e["epoch"] for e in db.epochs(1)] == [1]  # the completed epoch is kept...
    assert runs.load_checkpoint(db.last_checkpoint(1)["path"])["epoch"] == 1  # ...with its checkpoint
    assert db.integrity() == "ok"
    return db


@pytest.mark.parametrize("fault, message", [
    ({"instrument": "detectors", "kind": "timeout", "match": "FETC", "after": 8, "count": 0},
     "detectors: no reply (timeout)"),
    ({"instrument": "detectors", "kind": "garbled", "match": "FETC", "after": 8, "count": 0},
     "expected a binary block header"),
    ({"instrument": "heaters", "kind": "garbled", "match": "VALL?", "after": 9, "count": 1},
     "garbled reply to heaters VALL?"),
    ({"instrument": "heaters", "kind": "refuse", "match": "V0=", "after": 12, "count": 1},
     "heaters refused"),
], ids=["detector-timeout", "detector-garbled", "heater-garbled", "heater-over-limit-refusal"])
def test_instrument_fault_mid_training(config_dict, tmp_path, stations, fault, message):
    result = _train(_station(config_dict, tmp_path, [fault]))
    _assert_failed_after_epoch_1(tmp_path, result, message)
    _assert_safe(stations)


def test_heater_disconnect_then_resume(config_dict, tmp_path, stations):
    """The heater DAC's connection drops in epoch 2: the sim watchdog zeroes the heaters, the driver's
    read-back check refuses to go on; after the fault is gone, --resume finishes the run."""
    drop = {"instrument": "heaters", "kind": "drop", "match": "VALL?", "after": 9, "count": 1}
    station = _station(config_dict, tmp_path, [drop])
    result = _train(station)
    _assert_failed_after_epoch_1(tmp_path, result, "refusing to continue")
    _assert_safe(stations)
    assert stations[0].lab.instruments["heaters"].watchdog_trips == 1

    _station(config_dict, tmp_path, [], name="faulty.yaml")  # the cable is back
    result = CliRunner().invoke(app, ["train", "-s", str(station), "--resume", "1"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "changed since run 1 started" in result.output  # the faults were taken out of the file
    db = _db(tmp_path)
    assert db.run(1)["status"] == "completed" and db.run(1)["resumed"] == 1
    assert [e["epoch"] for e in db.epochs(1)] == [1, 2, 3]
    _assert_safe(stations)


def test_detector_disconnect(config_dict, tmp_path, stations):
    drop = {"instrument": "detectors", "kind": "drop", "match": "FETC", "after": 8, "count": 0}
    result = _train(_station(config_dict, tmp_path, [drop]))
    _assert_failed_after_epoch_1(tmp_path, result, "detectors:")
    _assert_safe(stations)


def test_full_disk_on_checkpoint(config_dict, tmp_path, stations, monkeypatch):
    """The checkpoint of epoch 2 cannot be written (ENOSPC): clear error, epoch 1 kept, no partial file."""
    real_save = torch.save
    calls = []

    def save(obj, f, *a, **k):
        calls.append(1)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(obj, f, *a, **k)

    monkeypatch.setattr(torch, "save", save)
    result = _train(_station(config_dict, tmp_path))
    _assert_failed_after_epoch_1(tmp_path, result, "disk is full")
    _assert_safe(stations)
    assert not list((tmp_path / "runs" / "checkpoints").rglob("*.tmp"))  # the half-written file is gone


def test_sqlite_full_disk_maps_to_clear_error(tmp_path):
    db = runs.RunDB(tmp_path / "labsat.sqlite")
    run = db.start_run("train", {}, git=None)
    db.conn.execute("PRAGMA max_page_count=1")  # the database cannot grow: sqlite says "disk is full"
    with pytest.raises(runs.RunError, match="disk is full"):
        db.record_epoch(run, {"epoch": 1, "loss": 1.0, "train_accuracy": 0.5, "seconds": 1.0}, "x" * 100000)
    assert db.epochs(run) == []  # rolled back whole


@pytest.mark.parametrize("text, message", [
    ("station: [unclosed\n", "malformed YAML at line"),
    ("instruments: {}\nlayers: {}\nstation: {backend: quantum}\n", "station.backend"),
    ("- just\n- a list\n", "expected a mapping"),
])
def test_malformed_instruments_yaml(tmp_path, stations, text, message):
    bad = tmp_path / "bad.yaml"
    bad.write_text(text)
    result = _train(bad)
    assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output
    assert not stations  # nothing was connected, nothing powered
    assert not (tmp_path / "runs").exists()  # and no run was started


@pytest.mark.parametrize("content, message", [
    ('{"schema_version": 1, ', "not valid JSON"),
    ('{"schema_version": 99, "device": "vchip-1", "twin": {}}', "schema_version 99 is not supported"),
    ('[1, 2, 3]', "expected a JSON object"),
    ('{"schema_version": 1, "device": "vchip-1", "twin": {}}', "calibration is missing twin parameter"),
])
def test_malformed_calibration_file(config_dict, tmp_path, stations, content, message):
    cal = tmp_path / "bad-calibration.json"
    cal.write_text(content)
    args = ["train", "-s", str(_station(config_dict, tmp_path)), "--mode", "online", "--epochs", "1",
            "--calibration", str(cal)]
    result = CliRunner().invoke(app, args, env={"COLUMNS": "200"})
    assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output
    _assert_safe(stations)
    if (tmp_path / "runs" / runs.DB_NAME).exists():
        for run in _db(tmp_path).runs():
            assert run["status"] == "failed" and not _db(tmp_path).epochs(run["id"])


@pytest.mark.parametrize("args, message", [
    (["--lr", "-1"], "lr > 0"),
    (["--batch-size", "0"], "batch_size >= 1"),
    (["--mode", "sideways"], "mode must be"),
])
def test_out_of_range_settings(config_dict, tmp_path, stations, args, message):
    args = ["train", "-s", str(_station(config_dict, tmp_path)), "--nominal", *args]
    result = CliRunner().invoke(app, args, env={"COLUMNS": "200"})
    assert result.exit_code == 2 and message in result.output
    assert not stations  # refused before any instrument was touched
    assert not _db(tmp_path).runs()


def test_out_of_range_limits_in_station_file(config_dict, tmp_path, stations):
    config_dict["layers"]["mesh"]["v_max"] = 9.0  # above the heater DAC's 6.5 V limit
    result = _train(_station(config_dict, tmp_path))
    assert result.exit_code == 2 and "layers.mesh.v_max" in result.output
    assert not stations


def test_heater_limit_refused_by_driver(config_dict, tmp_path, stations):
    """A per-channel power limit the trained voltages exceed: the driver refuses (LimitError) before
    anything is sent; the run records what completed and the heaters end at 0 V."""
    config_dict["instruments"]["heaters"]["limits"]["power_max_mw"] = 20  # 3.46 V at 600 ohm
    result = _train(_station(config_dict, tmp_path))
    assert result.exit_code == 2 and "dissipates" in result.output and "limit" in result.output
    run = _db(tmp_path).run(1)
    assert run["status"] == "failed" and "dissipates" in run["error"]
    _assert_safe(stations)


def test_ctrl_c_mid_training(config_dict, tmp_path, stations, monkeypatch):
    """Ctrl-C in epoch 2: exit code 130, the run is 'interrupted' with epoch 1 kept, heaters at 0 V."""
    from labsat.drivers.daq import PhotodetectorDAQ

    real_fetch, calls = PhotodetectorDAQ.fetch, []

    def fetch(self, *a, **k):
        calls.append(1)
        if len(calls) == 9:
            raise KeyboardInterrupt
        return real_fetch(self, *a, **k)

    monkeypatch.setattr(PhotodetectorDAQ, "fetch", fetch)
    result = _train(_station(config_dict, tmp_path))
    assert result.exit_code == 130 and "interrupted" in result.output
    assert "epochs 1..1 kept" in result.output and "--resume 1" in result.output
    db = _db(tmp_path)
    assert db.run(1)["status"] == "interrupted" and [e["epoch"] for e in db.epochs(1)] == [1]
    _assert_safe(stations)


def test_sigterm_mid_training(config_dict, tmp_path, stations, monkeypatch):
    """SIGTERM: the station's handler raises SystemExit(143) in the main thread (simulated here at the
    9th detector read); the run is 'interrupted' with epoch 1 kept and the heaters at 0 V."""
    from labsat.drivers.daq import PhotodetectorDAQ

    real_fetch, calls = PhotodetectorDAQ.fetch, []

    def fetch(self, *a, **k):
        calls.append(1)
        if len(calls) == 9:
            raise SystemExit(128 + 15)
        return real_fetch(self, *a, **k)

    monkeypatch.setattr(PhotodetectorDAQ, "fetch", fetch)
    result = _train(_station(config_dict, tmp_path))
    assert result.exit_code == 143 and "epochs 1..1 kept" in result.output
    db = _db(tmp_path)
    assert db.run(1)["status"] == "interrupted" and [e["epoch"] for e in db.epochs(1)] == [1]
    _assert_safe(stations)
