"""SIGKILL mid-epoch: the run database stays consistent, --resume finishes the run, heaters end safe.

A SIGKILLed process runs no ``finally``. What keeps the lab safe then:
- with backend sim the virtual lab lives inside the killed process, so it dies with it (nothing is
  left powered); a lab served by another process has a watchdog in the simulated heater DAC that
  zeroes every output when its last client disconnects without the safe shutdown;
- for real instruments, ``Station`` zeroes every heater DAC found powered when it connects (the
  start-up safe state), before anything else.
"""
from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from labsat import runs
from labsat.cli import app

REPO = Path(__file__).resolve().parents[1]


def _wait(predicate, timeout: float, what: str, proc=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            out = proc.stdout.read() if proc.stdout else ""
            raise AssertionError(f"{what}: the process ended first (rc {proc.returncode}):\n{out}")
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def _checkpoints(db_file: Path) -> int:
    if not db_file.exists():
        return 0
    try:
        con = sqlite3.connect(f"file:{db_file}?mode=ro", uri=True, timeout=1)
        try:
            return con.execute("SELECT count(*) FROM checkpoints").fetchone()[0]
        finally:
            con.close()
    except sqlite3.Error:
        return 0


def test_sigkill_mid_epoch_then_resume(small_station_yaml, tmp_path):
    db_file = tmp_path / "runs" / runs.DB_NAME
    cmd = [sys.executable, "-c", "from labsat.cli import app; app()", "train", "-s", str(small_station_yaml),
           "--mode", "online", "--optimizer", "adam", "--epochs", "3", "--batch-size", "64", "--nominal"]
    proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "COLUMNS": "120"})
    try:
        _wait(lambda: _checkpoints(db_file) >= 1, 120, "the first checkpoint", proc)
        time.sleep(0.05)  # into epoch 2
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL

    db = runs.RunDB(db_file)
    assert db.integrity() == "ok"
    (run,) = db.runs()
    assert run["status"] == "interrupted"  # it was 'running'; its process is gone
    done = [e["epoch"] for e in db.epochs(run["id"])]
    assert done and done == list(range(1, len(done) + 1)) and len(done) < 3  # killed in epoch 2 (3 at worst)
    cps = db.checkpoints(run["id"])
    assert [c["epoch"] for c in cps] == done  # each recorded epoch has its checkpoint, and it loads
    assert runs.load_checkpoint(cps[-1]["path"])["epoch"] == done[-1]
    db.close()

    result = CliRunner().invoke(app, ["train", "-s", str(small_station_yaml), "--resume", str(run["id"])])
    assert result.exit_code == 0, result.output
    assert f"resuming run {run['id']}" in result.output
    db = runs.RunDB(db_file)
    info = db.run(run["id"])
    assert info["status"] == "completed" and info["resumed"] == 1
    assert [e["epoch"] for e in db.epochs(run["id"])] == [1, 2, 3]  # the same total number of epochs
    assert all(e["hardware_batches"] > 0 for e in db.epochs(run["id"]))
    assert len(db.parameters(run["id"])["heater_v"]) == 12
    assert db.integrity() == "ok"


CHILD = textwrap.dedent("""
    import sys, time
    from labsat.drivers.base import open_adapter
    from labsat.drivers.heater_dac import HeaterDAC
    dac = HeaterDAC(open_adapter(sys.argv[1]), channels=16)
    dac.set_voltages([2.0, 3.0, 1.5], [0, 1, 2])
    print("powered", flush=True)
    time.sleep(60)
""")


def test_watchdog_zeroes_heaters_when_client_is_killed():
    """A lab served by another process: kill -9 the client, the simulated DAC's watchdog zeroes it."""
    from labsat.drivers.sim.chip import ChipSpec
    from labsat.drivers.sim.servers import VirtualLab

    lab = VirtualLab(seed=1, spec=ChipSpec(modes=4))
    try:
        address = lab.serve("heaters", "heater_dac", 16)
        proc = subprocess.Popen([sys.executable, "-c", CHILD, address], stdout=subprocess.PIPE, text=True)
        try:
            assert proc.stdout.readline().strip() == "powered"
            assert lab.chip.heater_v[:3] == pytest.approx([2.0, 3.0, 1.5])
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        _wait(lambda: not np.any(lab.chip.heater_v), 10, "the watchdog to zero the heaters")
        assert lab.instruments["heaters"].watchdog_trips == 1
    finally:
        lab.close()


def test_station_start_up_safe_state_zeroes_powered_heaters(config_dict, caplog):
    """backend real: heaters left powered by a dead process are ramped to 0 V when a Station connects."""
    from labsat.config import parse_config
    from labsat.drivers.sim.chip import ChipSpec
    from labsat.drivers.sim.servers import VirtualLab
    from labsat.station import Station

    lab = VirtualLab(seed=1, spec=ChipSpec(modes=4))
    try:
        config_dict["station"]["backend"] = "real"
        config_dict["layers"]["mesh"]["device"] = "bench-chip"
        for name, inst in config_dict["instruments"].items():
            inst["address"] = lab.serve(name, inst["kind"], inst["channels"])
        sim_dac = lab.instruments["heaters"]
        sim_dac.volts[:4] = [4.0, 1.0, 2.5, 6.0]  # as a killed run left them (no client connected)
        sim_dac._apply()
        assert np.any(lab.chip.heater_v)
        with Station(parse_config(config_dict)) as st:
            assert not np.any(lab.chip.heater_v)  # zeroed on connect, before any use
            assert not np.any(st.instruments["heaters"].voltages())
            st.instruments["heaters"].set_voltages([1.0], [0])  # and the driver is still usable
        assert "powered at start" in caplog.text
        assert not np.any(lab.chip.heater_v)
        # opting out (a monitor watching a bench another process drives) leaves outputs alone
        sim_dac.volts[0] = 2.0
        sim_dac._apply()
        with Station(parse_config(config_dict), zero_outputs_on_start=False):
            assert lab.chip.heater_v[0] == pytest.approx(2.0)
    finally:
        lab.close()


WRITER = textwrap.dedent("""
    import sys
    import torch
    from labsat import runs
    db = runs.RunDB(sys.argv[1])
    run = db.start_run("train", {"train": {}}, git=None)
    rec = runs.TrainRecorder(db, run, sys.argv[2])
    print("writing", flush=True)
    epoch = 0
    while True:  # as fast as it can: the kill lands inside a write or a transaction most of the time
        epoch += 1
        rec.checkpoint({"epoch": epoch, "loss": 1.0 / epoch}, {"epoch": epoch, "w": torch.randn(2000)})
""")


def test_sigkill_during_writes_never_corrupts(tmp_path):
    """kill -9 a process that does nothing but record epochs: whatever instant it dies, the database
    is intact, every epoch row has its checkpoint row, and every checkpoint file is whole."""
    import random

    db_file, folder = tmp_path / runs.DB_NAME, tmp_path / "checkpoints"
    rng = random.Random(9)
    for _ in range(3):
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(db_file), str(folder)],
                                stdout=subprocess.PIPE, text=True)
        try:
            assert proc.stdout.readline().strip() == "writing"
            time.sleep(rng.uniform(0.05, 0.4))
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    db = runs.RunDB(db_file)
    assert db.integrity() == "ok"
    assert [r["status"] for r in db.runs()] == ["interrupted"] * 3
    for r in db.runs():
        epochs = [e["epoch"] for e in db.epochs(r["id"])]
        assert epochs == list(range(1, len(epochs) + 1))
        assert [c["epoch"] for c in db.checkpoints(r["id"])] == epochs
        for c in db.checkpoints(r["id"]):
            assert runs.load_checkpoint(c["path"])["epoch"] == c["epoch"]
