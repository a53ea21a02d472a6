"""The GUI drives the LAN block heater DAC (issue 12 item 5), offscreen with pytest-qt on the virtual lab:
the station view draws its channels, the Manual tab pages through its 256 channels, sets channels on
two pages within their limits in one Apply, and refuses a whole vector over the total heater power with
nothing sent."""
from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from pathlib import Path

import numpy as np
import pytest
import yaml

pytest.importorskip("pytestqt")
pytest.importorskip("pyqtgraph")

ROOT = Path(__file__).resolve().parents[1]


def block_station(tmp_path: Path, total_power_w: float = 1.0) -> Path:
    """stations/paper-mzi-16.yaml (256-channel block DAC, 240 heaters), total heater power lowered."""
    data = yaml.safe_load((ROOT / "stations" / "paper-mzi-16.yaml").read_text())
    data["station"]["calibration_dir"] = str(tmp_path / "cal")
    data["station"]["runs_dir"] = str(tmp_path / "runs")
    data["station"]["sim"]["timing"] = {}
    data["instruments"]["heaters"]["limits"]["total_power_max_w"] = total_power_w
    data["layers"]["mesh"]["v_max"] = 1.0  # 240 heaters at 1 V: 0.4 W, inside the lowered total
    path = tmp_path / "block.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.fixture
def window(qtbot, tmp_path):
    from labsat.gui.window import MainWindow

    w = MainWindow(block_station(tmp_path))
    qtbot.addWidget(w)
    w.show()
    yield w
    w.close()


def test_manual_tab_pages_sets_and_refuses_on_the_block_dac(qtbot, window):
    from PySide6.QtCore import Qt

    qtbot.mouseClick(window.station.connect_button, Qt.LeftButton)
    station = window.bench.station
    assert window.bench.connected
    sim = station.lab.instruments["heaters"]
    chip = station.lab.chip
    assert "heaters" in window.station.heater_bars  # the station view draws the block DAC's channels
    window.station.poll()
    m = window.manual
    window.tabs.setCurrentWidget(m)
    m.instrument.setCurrentText("heaters")
    assert len(m.spins) == 64 and m.page.maximum() == 192  # 256 channels, 64 a page
    cap = min(5.5, np.sqrt(55e-3 * 600))  # voltage and power limits of every channel
    assert m.spins[3].maximum() == pytest.approx(cap)
    m.spins[3].setValue(9.0)
    assert m.spins[3].value() == pytest.approx(cap)  # the box stops at the channel's limit
    m.spins[3].setValue(2.0)
    m.page.setValue(128)  # channels 128..191
    assert m.table.item(0, 0).text() == "128"
    m.spins[5].setValue(1.5)  # channel 133
    blocks = sim.blocks_received
    assert m.apply(), m.status.text()
    assert chip.heater_v[3] == pytest.approx(2.0, abs=1e-3) and chip.heater_v[133] == pytest.approx(1.5, abs=1e-3)
    assert np.count_nonzero(chip.heater_v) == 2
    assert sim.blocks_received == blocks + 1  # both pages' channels in one vector step
    assert m.table.item(5, 2).text() == "1.5000"
    m.page.setValue(0)
    assert m.spins[3].value() == pytest.approx(2.0)  # set-points survive paging
    # every channel of this page within its own limit, together over the 1 W total: refused whole
    blocks = sim.blocks_received
    for box in m.spins:
        box.setValue(cap)
    assert m.apply() is False
    assert "refused" in m.status.text() and "total heater power" in m.status.text()
    assert sim.blocks_received == blocks  # nothing sent
    assert np.count_nonzero(chip.heater_v) == 2 and chip.heater_v[3] == pytest.approx(2.0, abs=1e-3)
    window.stop()
    assert np.all(chip.heater_v == 0.0)
