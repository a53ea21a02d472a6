"""Scripting and reading the command line: --json, --log-level, --trace, 80-column tables, normalised
paths, switches shown as switches, help naming every kind."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from conftest import minimal_config, write_yaml
from labsat import cli
from labsat.kinds import KINDS
from labsat.runs import RunDB
from test_cli import quick_calibration, small_yaml  # noqa: F401  (fixtures)

runner = CliRunner()
STAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z (\w+) ([<>]) (.*)$")


def invoke(*args):
    return runner.invoke(cli.app, [str(a) for a in args])


def _json(result) -> dict:
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.fixture
def recorded_db(tmp_path):
    with RunDB(tmp_path / "runs" / "labsat.sqlite") as db:
        cal = db.start_run("calibrate", {"settings": 8}, device="vchip-1", git=False)
        db.finish(cal, "completed", calibration="cal.json")
        run = db.start_run("train", {"train": {"mode": "offline", "optimizer": "sam", "epochs": 3}},
                           device="vchip-1", git=False)
        db.record_epoch(run, dict(epoch=1, loss=1.25, train_accuracy=0.5))
        db.finish(run, "interrupted")
        return db.path


def test_runs_list_json_is_machine_readable(recorded_db):
    data = _json(invoke("runs", "list", "--db", recorded_db, "--json"))
    runs = data["runs"]
    assert [r["run"] for r in runs] == [1, 2]
    assert runs[1]["kind"] == "train" and runs[1]["mode"] == "offline" and runs[1]["status"] == "interrupted"
    assert runs[1]["epochs_done"] == 1 and runs[1]["epochs"] == 3 and runs[1]["loss"] == 1.25
    show = _json(invoke("runs", "show", 2, "--db", recorded_db, "--json"))
    assert show["run"]["config"]["train"]["optimizer"] == "sam" and show["epochs"][0]["loss"] == 1.25


def test_runs_list_reads_at_80_columns(recorded_db):
    """As a user's terminal shows it (a real process, COLUMNS=80): nothing cut with an ellipsis."""
    env = dict(os.environ, COLUMNS="80", TERM="xterm")
    labsat = Path(sys.executable).parent / "labsat"  # the installed command
    out = subprocess.run([str(labsat), "runs", "list", "--db", str(recorded_db)],
                         capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert all(len(line) <= 80 for line in lines), lines
    assert "…" not in out.stdout
    header = next(line for line in lines if "status" in line)
    for col in ("run", "kind", "status", "device", "epochs", "loss", "acc", "started"):
        assert col in header
    row = next(line for line in lines if "interrupted" in line)
    assert "vchip-1" in row and "1/3" in row and "1.250" in row


def test_switches_are_switches_and_help_names_every_kind():
    out = invoke("calibrate", "--help").output
    assert "--check" in out and "<bool>" not in out
    train = invoke("train", "--help").output
    assert "--nominal" in train and "--no-nominal" in train and "<bool>" not in train
    flat = " ".join(train.split())
    for kind in KINDS.values():
        assert kind.name in flat
    assert "mesh classifier" not in flat


def test_log_level_is_checked():
    result = invoke("--log-level", "chatty", "runs", "list")
    assert result.exit_code == 2 and "--log-level: 'chatty' is not one of debug, info" in result.output


def test_calibrate_train_evaluate_json_trace_and_paths(tmp_path, quick_calibration):  # noqa: F811
    # a station in a sub-folder whose runs_dir climbs out of it: the printed paths are normalised
    d = minimal_config()
    (tmp_path / "stations").mkdir()
    d["station"]["calibration_dir"] = "../cal"
    d["station"]["runs_dir"] = "../runs"
    station = write_yaml(tmp_path / "stations" / "bench.yaml", d)
    trace = tmp_path / "io.log"

    cal = _json(invoke("--trace", trace, "calibrate", "--station", station, "--settings", 6, "--inputs", 4, "--json"))
    assert "/../" not in cal["calibration"] and Path(cal["calibration"]).is_file()
    assert cal["residuals"]["fitted_holdout"]["rmse"] >= 0

    result = invoke("train", "--station", station, "--mode", "offline", "--epochs", 1)
    assert result.exit_code == 0, result.output
    saved = next(line for line in result.output.splitlines() if line.startswith("saved "))
    model = Path(saved.split()[1])
    assert "/../" not in saved and model.is_file() and model.parent == tmp_path / "runs"

    ev = _json(invoke("evaluate", model, "--station", station, "--json"))
    (acc,) = ev["accuracy"].values()
    assert set(acc) == {"vchip-1", "vchip-2"} and all(0.0 <= a <= 1.0 for a in acc.values())

    # the I/O trace: every line timestamped, both directions, instruments named, blocks by length
    lines = trace.read_text().splitlines()
    parsed = [STAMP.match(line) for line in lines]
    assert lines and all(parsed), [l for l, m in zip(lines, parsed) if not m][:3]
    who = {(m.group(1), m.group(2)) for m in parsed}
    assert {("heaters", ">"), ("heaters", "<"), ("modulator", ">"), ("detectors", "<")} <= who
    assert any("'VALL?'" in line for line in lines)
    assert any(re.search(r"detectors < b'#\d+.*\.\.\. \(\d+ bytes\)", line) for line in lines)


def test_trace_off_by_default_and_stops(tmp_path):
    from labsat.drivers.trace import io_log, start_trace, stop_trace, trace

    handler = start_trace(tmp_path / "t.log")
    trace("dac", ">", "V0=1.0")
    trace("daq", "<", b"#18" + bytes(range(200)))
    stop_trace(handler)
    trace("dac", ">", "not traced")
    text = (tmp_path / "t.log").read_text().splitlines()
    assert len(text) == 2 and text[0].endswith("dac > 'V0=1.0'") and text[1].endswith("(203 bytes)")
    assert not io_log.isEnabledFor(10) or io_log.level == 0


def test_experiment_shows_progress_and_prints_json(monkeypatch, tmp_path, station_yaml):
    """The experiment front door: every logged step advances the progress line (on stderr with --json),
    and the rows come back as JSON on stdout (with the run that recorded the experiment)."""
    import labsat.experiments as experiments

    from rich.progress import Progress

    shown = []

    def fake_run(name, setup, log=print, *, progress=False):  # run_experiment's signature (sweeps: progress=)
        shown.append(progress)
        for k in range(3):
            log(f"trained model {k}")
        return {"rows": [{"method": "plain", "seed": 0, "device_accuracy": 0.5}], "table": "| a |\n|---|\n| 1 |\n",
                "directory": tmp_path / name, "seconds": 1.0}

    monkeypatch.setattr(experiments, "run_experiment", fake_run)
    result = runner.invoke(cli.app, ["experiment", "imprecise", "--json", "--out", str(tmp_path),
                                     "--station", str(station_yaml)])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["rows"][0]["device_accuracy"] == 0.5 and data["directory"].endswith("imprecise")
    with RunDB(tmp_path / "runs" / "labsat.sqlite") as db:  # main's experiment workflow records the run
        assert db.run(data["run"])["kind"] == "experiment" and db.run(data["run"])["status"] == "completed"
    assert "trained model 2" in result.stderr and "3 steps" in result.stderr
    assert len(shown) == 1 and isinstance(shown[0], Progress)  # the sweeps' bars join the CLI's display


def test_freespace_robustness_json(tmp_path):
    """--json on the free-space robustness table (re-plotting the committed benchmark results)."""
    results = Path(__file__).resolve().parents[1] / "benchmarks" / "freespace" / "results.json"
    result = runner.invoke(cli.app, ["freespace-robustness", "--plot-only", str(results), "--out", str(tmp_path),
                                     "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["results"] == json.loads(results.read_text())
    assert Path(data["plot"]).is_file() and Path(data["table"]).is_file()
