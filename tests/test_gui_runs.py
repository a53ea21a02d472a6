"""GUI runs go through the same workflows as the CLI: a GUI calibration and trainings appear in
`labsat runs list`, an aborted GUI training is continued with `labsat train --resume`, and the GUI's
defaults are the CLI's (pytest-qt, offscreen, virtual lab)."""
from __future__ import annotations

import pytest

pytest.importorskip("pytestqt")
pytest.importorskip("pyqtgraph")
from PySide6.QtCore import Qt  # noqa: E402
from test_gui import JOB_TIMEOUT_MS, small_calibration, station_file, wait_idle  # noqa: E402,F401  (station_file: the repository's station under tmp_path)
from typer.testing import CliRunner  # noqa: E402


def test_gui_calibration_and_trainings_are_recorded_and_resumable(qtbot, station_file, monkeypatch):
    from labsat import runs
    from labsat.cli import app, console
    from labsat.gui.window import MainWindow

    monkeypatch.setattr(console, "_width", 250)
    w = MainWindow(station_file)
    qtbot.addWidget(w)
    w.show()
    try:
        qtbot.mouseClick(w.station.connect_button, Qt.LeftButton)
        assert w.bench.connected
        # calibration: measure + fit, then the operator accepts the fit
        cal_path = small_calibration(qtbot, w)
        # an offline training to its end
        t = w.training
        t.mode.setCurrentText("offline")
        t.epochs.setValue(1)
        qtbot.mouseClick(t.start_button, Qt.LeftButton)
        wait_idle(qtbot, w)
        assert t.result is not None and t.result.status == "completed", t.status.text()
        offline_run = t.result.run
        # an online training aborted after its first epoch (a checkpoint to resume from)
        t.mode.setCurrentText("online")
        t.batch.setValue(256)
        t.epochs.setValue(4)
        qtbot.mouseClick(t.start_button, Qt.LeftButton)
        qtbot.waitUntil(lambda: t.epoch_bar.value() >= 1, timeout=JOB_TIMEOUT_MS)
        qtbot.mouseClick(t.abort_button, Qt.LeftButton)
        wait_idle(qtbot, w)
        assert t.result is not None and t.result.status == "aborted", t.status.text()
        online_run = t.result.run
    finally:
        w.close()

    db_path = station_file.parent / "runs" / runs.DB_NAME
    with runs.RunDB(db_path) as db:
        rows = {r["id"]: r for r in db.runs()}
        cal_run = next(r for r in rows.values() if r["kind"] == "calibrate")
        assert cal_run["status"] == "completed" and cal_run["calibration"] == cal_path
        assert cal_run["config"]["source"] == "labsat gui"
        assert rows[offline_run]["status"] == "completed" and rows[offline_run]["calibration"] == cal_path
        assert [e["epoch"] for e in db.epochs(offline_run)] == [1]
        assert rows[online_run]["status"] == "interrupted"  # resumable
        kept = [e["epoch"] for e in db.epochs(online_run)]
        assert kept and kept == list(range(1, len(kept) + 1)) and len(kept) < 4
        assert all(e["hardware_batches"] > 0 for e in db.epochs(online_run))

    listed = CliRunner().invoke(app, ["runs", "list", "--station", str(station_file)])
    assert listed.exit_code == 0, listed.output
    for run in (cal_run["id"], offline_run, online_run):
        # a row of the borderless table (issue 15: it fits 80 columns): the run id is its first cell
        assert any(line.split()[0] == str(run) for line in listed.output.splitlines()
                   if len(line.split()) > 3), listed.output
    assert "interrupted" in listed.output

    # continue the GUI's aborted run from the command line
    resumed = CliRunner().invoke(app, ["train", "--station", str(station_file), "--resume", str(online_run)])
    assert resumed.exit_code == 0, resumed.output
    with runs.RunDB(db_path) as db:
        run = db.run(online_run)
        assert run["status"] == "completed" and run["resumed"] == 1
        epochs = db.epochs(online_run)
        assert [e["epoch"] for e in epochs] == [1, 2, 3, 4]
        # the run's hardware count covers both sessions (GUI epochs, then the CLI's)
        assert run["result"]["hardware_batches"] == sum(e["hardware_batches"] for e in epochs)
        assert all(e["hardware_batches"] > 0 for e in epochs)


def test_gui_defaults_are_the_cli_defaults(qtbot, station_file):
    import inspect

    from labsat import cli, defaults
    from labsat.gui.window import MainWindow

    w = MainWindow(station_file)
    qtbot.addWidget(w)
    try:
        p = w.training.params()
        options = {name: param.default.default for name, param in inspect.signature(cli.train_cmd).parameters.items()
                   if hasattr(param.default, "default")}
        assert (p.optimizer, p.rho, p.epochs, p.batch_size, p.perturb, p.perturbed_pass) == (
            options["optimizer"], options["rho"], options["epochs"], options["batch_size"],
            options["perturb"], options["perturbed_pass"])
        # the CLI's --lr default (None) is the layer's default rate, which the GUI's field shows
        from labsat.workflows import default_lr

        assert options["lr"] is None and p.lr == default_lr(w.bench.config, w.bench.layer)
        assert p.epochs == defaults.EPOCHS
        c = w.calibration.params()
        cal_options = {name: param.default.default
                       for name, param in inspect.signature(cli.calibrate).parameters.items()
                       if hasattr(param.default, "default")}
        # the CLI leaves the budget to the station's size; the GUI shows what that resolves to
        from labsat.workflows.calibrate import default_budget

        assert (cal_options["settings"], cal_options["inputs"]) == (None, None)
        assert (c.settings, c.inputs, c.holdout) == (*default_budget(w.calibration.bench), cal_options["holdout"])
    finally:
        w.close()
