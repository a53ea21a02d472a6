"""GUI additions of issue 15, offscreen with pytest-qt on the virtual lab: manual per-channel output
control within limits, the log pane fed by labsat's logging (and the instrument I/O), and the data-set
choice of a training run."""
from __future__ import annotations

import logging
import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np
import pytest

pytest.importorskip("pytestqt")
pytest.importorskip("pyqtgraph")
from PySide6.QtCore import Qt  # noqa: E402

from test_gui import connect, station_file, wait_idle, window  # noqa: E402,F401  (fixtures and helpers)


def test_manual_control_within_limits(qtbot, window):  # noqa: F811
    station = connect(qtbot, window)
    m = window.manual
    window.tabs.setCurrentWidget(m)
    assert {m.instrument.itemText(i) for i in range(m.instrument.count())} == {"heaters", "modulator"}
    m.instrument.setCurrentText("heaters")
    assert len(m.spins) == 64 and m.spins[3].maximum() == pytest.approx(6.5)  # the channel's own cap
    m.spins[3].setValue(9.0)  # the box does not go past the limit
    assert m.spins[3].value() == pytest.approx(6.5)
    m.spins[3].setValue(2.0)
    m.spins[7].setValue(1.5)
    qtbot.mouseClick(m.apply_button, Qt.LeftButton)
    chip = station.lab.chip
    assert chip.heater_v[3] == pytest.approx(2.0, abs=1e-3) and chip.heater_v[7] == pytest.approx(1.5, abs=1e-3)
    assert m.table.item(3, 2).text() == "2.0000"
    # within every channel's own limit, but over the total heater power (3.5 W): refused, nothing sent
    for box in m.spins:
        box.setValue(6.5)
    assert m.apply() is False
    assert "refused" in m.status.text() and "total heater power" in m.status.text()
    assert chip.heater_v[3] == pytest.approx(2.0, abs=1e-3) and np.count_nonzero(chip.heater_v) == 2
    m.instrument.setCurrentText("modulator")
    assert len(m.spins) == 8 and m.spins[0].maximum() == pytest.approx(2.0)
    m.spins[0].setValue(1.25)
    assert m.apply()
    assert station.instruments["modulator"].levels()[0] == pytest.approx(1.25)
    window.stop()
    assert np.all(chip.heater_v == 0.0)


def test_log_pane_shows_labsat_logging_and_instrument_io(qtbot, window):  # noqa: F811
    pane = window.log_pane
    logging.getLogger("labsat.station").warning("heaters was powered at start (test record)")
    qtbot.waitUntil(lambda: any("powered at start (test record)" in line for line in pane.lines()), timeout=3000)
    connect(qtbot, window)
    pane.io.setChecked(True)
    window.manual.instrument.setCurrentText("heaters")
    window.manual.read_back()
    qtbot.waitUntil(lambda: any("heaters > 'VALL?'" in line for line in pane.lines()), timeout=3000)
    assert any("heaters < '0.0000," in line for line in pane.lines())
    pane.io.setChecked(False)
    n = len(pane.lines())
    window.manual.read_back()
    qtbot.wait(100)
    assert len(pane.lines()) == n  # I/O lines only while asked for


def test_training_on_a_user_npz_chosen_in_the_panel(qtbot, window, tmp_path):  # noqa: F811
    from labsat.train import load_model_file

    rng = np.random.default_rng(0)
    centres = rng.normal(0, 4, (3, 5))
    y = rng.integers(0, 3, 90)
    np.savez(tmp_path / "blobs.npz", x=centres[y] + rng.normal(0, 0.5, (90, 5)), y=y)
    connect(qtbot, window)
    t = window.training
    t.data.set_spec(f"npz:{tmp_path / 'missing.npz'}")
    assert t.start() is None
    assert "no such NPZ file" in t.data.error.text()
    t.data.set_spec(f"npz:{tmp_path / 'blobs.npz'}")
    t.twin.setCurrentIndex(1)  # nominal twin: no calibration needed
    t.mode.setCurrentText("offline")
    t.epochs.setValue(1)
    qtbot.mouseClick(t.start_button, Qt.LeftButton)
    wait_idle(qtbot, window)
    assert t.result is not None and t.result.status == "completed", t.status.text()
    meta = load_model_file(t.result.path)["meta"]
    assert meta["data"] == f"npz:{(tmp_path / 'blobs.npz').resolve()}" and meta["n_classes"] == 3
