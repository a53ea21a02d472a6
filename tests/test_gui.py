"""The lab workstation GUI, clicked through offscreen with pytest-qt on the virtual lab.

Run with QT_QPA_PLATFORM=offscreen (set below if absent).
"""
from __future__ import annotations

import os
import threading
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np
import pytest

pytest.importorskip("pytestqt")
pytest.importorskip("pyqtgraph")
from PySide6.QtCore import Qt  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
JOB_TIMEOUT_MS = 120_000


@pytest.fixture
def station_file(tmp_path) -> Path:
    """The repository's station, with calibrations and runs under tmp_path."""
    path = tmp_path / "instruments.yaml"
    path.write_text((ROOT / "instruments.yaml").read_text())
    return path


@pytest.fixture
def window(qtbot, station_file):
    from labsat.gui.window import MainWindow

    w = MainWindow(station_file)
    qtbot.addWidget(w)
    w.show()
    yield w
    w.close()  # aborts any job, safe state, disconnects


def connect(qtbot, w):
    qtbot.mouseClick(w.station.connect_button, Qt.LeftButton)
    assert w.bench.connected, w.station.state_label.text()
    return w.bench.station


def wait_idle(qtbot, w, timeout=JOB_TIMEOUT_MS):
    qtbot.waitUntil(lambda: not w.runner.busy, timeout=timeout)


def small_calibration(qtbot, w) -> str:
    cal = w.calibration
    cal.settings.setValue(8)
    cal.inputs.setValue(8)
    cal.adam_steps.setValue(30)
    cal.lbfgs_steps.setValue(5)
    qtbot.mouseClick(cal.run_button, Qt.LeftButton)
    wait_idle(qtbot, w)
    assert cal.result is not None, cal.status.text()
    assert cal.measure_bar.value() == 8
    assert cal.accept_button.isEnabled()
    with qtbot.waitSignal(cal.saved, timeout=5000) as saved:
        qtbot.mouseClick(cal.accept_button, Qt.LeftButton)
    return saved.args[0]


def test_connect_shows_instruments_and_live_readbacks(qtbot, window):
    station = connect(qtbot, window)
    info = window.bench.info
    assert set(info) == set(station.config.instruments)
    assert all(i.state == "connected" for i in info.values())
    assert info["heaters"].identity.startswith("Q64iv")
    table = window.station.table
    states = [table.item(r, 3).text() for r in range(table.rowCount())]
    assert states == ["connected"] * len(info)
    assert "6.5 V" in info["heaters"].limits
    # the polling timer reads through the drivers
    polls = window.station.polls
    qtbot.waitUntil(lambda: window.station.polls > polls, timeout=5000)
    # a test input on the modulator reaches the detectors
    window.station.level.setValue(1.5)
    qtbot.mouseClick(window.station.apply_level, Qt.LeftButton)
    snap = window.bench.poll()
    assert np.allclose(snap.modulators["modulator"], 1.5)
    assert snap.detectors["detectors"].sum() > 0
    window.station.poll()
    assert np.allclose(window.station.mod_bars["modulator"].opts["height"], 1.5)


def test_calibrate_train_two_epochs_and_evaluate(qtbot, window):
    from labsat.calibration import load_calibration
    from labsat.train import load_model_file

    station = connect(qtbot, window)
    path = small_calibration(qtbot, window)
    record = load_calibration(path)
    assert record["device"] == station.device_id()
    assert Path(path).parent.parent.parent == window.bench.calibration_dir()  # <dir>/<kind>/<device>/
    assert window.training.calibration_path == path  # the accepted fit is what training uses

    t = window.training
    t.mode.setCurrentText("offline")
    t.optimizer.setCurrentText("sam")
    t.epochs.setValue(2)
    qtbot.mouseClick(t.start_button, Qt.LeftButton)
    wait_idle(qtbot, window)
    assert t.result is not None and t.result.status == "completed", t.status.text()
    assert [e["epoch"] for e in t.result.epochs] == [1, 2]
    assert all(e["test_accuracy"] is not None for e in t.result.epochs)
    assert len(t.train_curve.getData()[0]) == 2 and len(t.test_curve.getData()[0]) == 2
    blob = load_model_file(t.result.path)
    assert blob["meta"]["status"] == "completed"
    assert blob["meta"]["calibration"] == path
    assert blob["meta"]["history"]["config"]["optimizer"] == "sam"

    # robustness on the saved model (tiny sweep, 1-D slice only)
    rb = window.robustness
    rb.add_model(str(t.result.path), checked=True)
    rb.drift_points.setValue(2)
    rb.drift_max.setValue(2.0)
    rb.slice_points.setValue(3)
    rb.surface.setChecked(False)
    rb.transfer.setChecked(True)
    qtbot.mouseClick(rb.run_button, Qt.LeftButton)
    wait_idle(qtbot, window)
    assert rb.results is not None, rb.status.text()
    res = next(iter(rb.results["models"].values()))
    assert len(res["drift_accuracy"]) == 2 and all(0 <= a <= 1 for a in res["drift_accuracy"])
    assert len(res["slice"]) == 3 and res["transfer_device"] == "vchip-2"
    assert station.lab.chip.extra_kelvin == 0.0  # the drift sweep restored the environment


def _start_online_training(qtbot, w, epochs=50):
    t = w.training
    t.mode.setCurrentText("online")
    t.optimizer.setCurrentText("adam")
    t.twin.setCurrentIndex(1)  # nominal twin: no calibration needed
    t.epochs.setValue(epochs)
    qtbot.mouseClick(t.start_button, Qt.LeftButton)
    assert w.runner.busy
    chip = w.bench.station.lab.chip
    qtbot.waitUntil(lambda: np.any(chip.heater_v > 0) and t.step_bar.value() >= 2, timeout=JOB_TIMEOUT_MS)
    return t, chip


def test_pause_resume_abort_online_training_leaves_lab_safe_and_run_saved(qtbot, window):
    from labsat.train import load_model_file

    connect(qtbot, window)
    t, chip = _start_online_training(qtbot, window)
    assert t.queries.text() != "hardware queries: 0"
    # pause: the worker stops between steps
    qtbot.mouseClick(t.pause_button, Qt.LeftButton)
    assert window.runner.job.control.paused and t.pause_button.text() == "Resume"
    qtbot.wait(300)
    step = t.step_bar.value()
    polls = window.station.polls
    qtbot.wait(400)
    assert t.step_bar.value() == step  # nothing moved while paused
    # the window stays live: the polling timer reads the paused bench through the drivers
    qtbot.waitUntil(lambda: window.station.polls > polls, timeout=10_000)
    assert np.allclose(window.station.heater_bars["heaters"].opts["height"][:56], chip.heater_v[:56], atol=1e-3)
    qtbot.mouseClick(t.pause_button, Qt.LeftButton)  # resume
    qtbot.waitUntil(lambda: t.step_bar.value() != step, timeout=JOB_TIMEOUT_MS)
    # abort
    qtbot.mouseClick(t.abort_button, Qt.LeftButton)
    wait_idle(qtbot, window)
    assert t.result is not None and t.result.status == "aborted", t.status.text()
    assert np.all(chip.heater_v == 0.0)  # safe state after abort
    assert window.bench.station.lab.instruments["modulator"].output_on is False
    blob = load_model_file(t.result.path)
    assert blob["meta"]["status"] == "aborted"
    assert blob["meta"]["hardware_batches"] > 0
    assert "physical.u" in blob["state_dict"]  # the trained controls are in the file


def test_stop_button_aborts_job_and_zeroes_every_output(qtbot, window):
    from labsat.train import load_model_file

    connect(qtbot, window)
    t, chip = _start_online_training(qtbot, window)
    qtbot.mouseClick(window.station.stop, Qt.LeftButton)
    wait_idle(qtbot, window)
    assert np.all(chip.heater_v == 0.0)
    assert np.all(window.bench.poll().heaters["heaters"] == 0.0)  # read back through the driver
    assert window.bench.station.lab.instruments["modulator"].output_on is False
    assert t.result.status == "aborted" and "STOP" in t.result.reason
    assert load_model_file(t.result.path)["meta"]["status"] == "aborted"
    # the bench works again afterwards: a new job re-arms the outputs
    small_calibration(qtbot, window)


def test_abort_calibration_makes_outputs_safe_and_saves_nothing(qtbot, window):
    connect(qtbot, window)
    cal = window.calibration
    cal.settings.setValue(5000)
    qtbot.mouseClick(cal.run_button, Qt.LeftButton)
    qtbot.waitUntil(lambda: cal.measure_bar.value() >= 2, timeout=JOB_TIMEOUT_MS)
    assert np.any(window.bench.station.lab.chip.heater_v > 0)
    qtbot.mouseClick(cal.abort_button, Qt.LeftButton)
    wait_idle(qtbot, window)
    assert cal.result is None and "aborted" in cal.status.text()
    assert np.all(window.bench.station.lab.chip.heater_v == 0.0)
    assert not window.bench.calibration_dir().exists() or not any(window.bench.calibration_dir().rglob("*.json"))


def test_stop_without_job_and_close_make_outputs_safe(qtbot, window):
    connect(qtbot, window)
    station = window.bench.station
    heaters = station.instruments["heaters"]
    heaters.set_voltages(np.full(4, 2.0), [0, 1, 2, 3])
    assert np.any(station.lab.chip.heater_v > 0)
    qtbot.mouseClick(window.toolbar_stop, Qt.LeftButton)
    assert np.all(station.lab.chip.heater_v == 0.0)
    assert "safe state" in window.station.stop_status.text()


def test_poll_skips_while_a_job_holds_the_bench(station_file):
    from labsat.gui.bench import Bench

    bench = Bench(station_file)
    assert bench.poll() is None  # not connected
    bench.connect()
    try:
        assert bench.poll() is not None
        got = []
        with bench.lock:  # a worker mid-forward
            t = threading.Thread(target=lambda: got.append(bench.poll()))
            t.start()
            t.join(5)
        assert got == [None]
    finally:
        bench.disconnect()
    assert bench.station is None


def test_run_control_pause_resume_abort():
    from labsat.gui.bench import Aborted, RunControl

    c = RunControl()
    c.check()
    c.pause()
    woke = threading.Event()

    def worker():
        try:
            c.check()
        except Aborted:
            woke.set()

    th = threading.Thread(target=worker)
    th.start()
    th.join(0.2)
    assert th.is_alive()  # blocked while paused
    c.abort("test")
    th.join(5)
    assert woke.is_set() and c.reason == "test"


def test_bad_input_gets_clear_errors(qtbot, tmp_path):
    from labsat.config import ConfigError
    from labsat.gui.bench import Bench

    bad = tmp_path / "bad.yaml"
    bad.write_text("station: {backend: sim}\ninstruments: {}\nlayers: {mesh: {kind: mzi_mesh}}\n")
    with pytest.raises(ConfigError):
        Bench(bad)
    from labsat.gui.window import MainWindow

    (tmp_path / "ok.yaml").write_text((ROOT / "instruments.yaml").read_text())
    w = MainWindow(tmp_path / "ok.yaml")
    qtbot.addWidget(w)
    # a job before connecting is refused, with a message
    assert w.calibration.start() is None and "connect" in w.calibration.status.text()
    w.close()


def test_cli_registers_gui_command():
    from typer.testing import CliRunner

    from labsat.cli import app

    result = CliRunner().invoke(app, ["gui", "--help"])
    assert result.exit_code == 0 and "--station" in result.output
    bad = CliRunner().invoke(app, ["gui", "--station", "/nonexistent/instruments.yaml"])
    assert bad.exit_code == 2


def test_other_kind_station_opens_with_a_plot_per_instrument(qtbot, tmp_path):
    """A microring station (two banks: two heater DACs, modulators, detector DAQs) on its first layer."""
    from labsat.gui.window import MainWindow

    src = ROOT / "stations" / "microring.yaml"
    if not src.exists():
        pytest.skip("no microring station in this checkout")
    (tmp_path / "stations").mkdir()
    path = tmp_path / "stations" / "microring.yaml"  # its ../runs paths stay under tmp_path
    path.write_text(src.read_text())
    w = MainWindow(path)
    qtbot.addWidget(w)
    station = connect(qtbot, w)
    try:
        assert w.bench.layer == next(iter(station.config.layers))
        assert set(w.station.plots) == set(station.config.instruments)
        assert len(w.station.heater_bars) == 2
        w.station.level.setValue(1.0)
        qtbot.mouseClick(w.station.apply_level, Qt.LeftButton)
        w.station.poll()
        assert all(np.allclose(b.opts["height"], 1.0) for b in w.station.mod_bars.values())
        first = next(iter(w.station.heater_bars))
        station.instruments[first].set_voltages(np.full(2, 1.0), [0, 1])
        qtbot.mouseClick(w.toolbar_stop, Qt.LeftButton)
        assert all(np.all(station.instruments[n].voltages() == 0.0) for n in w.station.heater_bars)
    finally:
        w.close()


def test_self_configuring_start_is_offered_for_large_meshes_only(qtbot, window, tmp_path):
    import yaml

    from labsat.gui.window import MainWindow
    assert not window.calibration.self_configure.isEnabled()  # the repository's 8-mode mesh: the datasheet start
    assert window.calibration.params().self_configure is False
    d = yaml.safe_load((ROOT / "stations" / "paper-mzi-16.yaml").read_text())
    d["station"].update(calibration_dir=str(tmp_path / "cal16"), runs_dir=str(tmp_path / "runs16"))
    path = tmp_path / "mesh16.yaml"
    path.write_text(yaml.safe_dump(d))
    big = MainWindow(path)
    qtbot.addWidget(big)
    cal = big.calibration
    assert cal.self_configure.isEnabled() and not cal.params().self_configure
    before = (cal.adam_steps.value(), cal.lbfgs_steps.value())
    cal.self_configure.setChecked(True)  # the start's longer, gentler first fit
    from labsat.calibration.progressive import ProgressivePlan
    plan = ProgressivePlan(settings=0, inputs=0)
    assert cal.params().self_configure and (cal.params().adam_steps, cal.params().lbfgs_steps) == (
        plan.start_adam_steps, plan.start_lbfgs_steps)
    cal._progress("start", (3, 16))
    assert cal.measure_bar.value() == 3 and "self-configuring" in cal.measure_bar.format()
    cal._progress("measure", (1, 128))
    assert cal.measure_bar.maximum() == 128 and "sweep" in cal.measure_bar.format()
    cal.self_configure.setChecked(False)
    assert (cal.adam_steps.value(), cal.lbfgs_steps.value()) == before
    big.resize(1200, 760)
    big.show()
    big.tabs.setCurrentWidget(cal)
    qtbot.wait(50)
    big.grab().save(str(tmp_path / "calibration_panel_16.png"))
    big.close()
