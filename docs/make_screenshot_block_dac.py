"""Screenshots of the GUI on the 64-mode paper station's LAN block heater DAC (issue 12 item 5).

    QT_QPA_PLATFORM=offscreen .venv/bin/python docs/make_screenshot_block_dac.py [--out docs]

Connects stations/paper-mzi.yaml on the virtual lab (4032 heaters on a 4096-channel block DAC), sets
three heaters on the first page and two on the page of channels 4032-4095 (unconnected channels: they
stay at 0 V unless set by hand) in one Apply, then asks the first page for more than the station's
total heater power, here lowered to 1 W for the picture (the driver refuses the whole vector, nothing
sent). Saves docs/gui-manual-block-dac.png (Manual tab) and docs/gui-station-block-dac.png (station
view: the 4096 read-backs). Nothing is written into the repository but the pictures.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def settle(app, n: int = 30) -> None:
    for _ in range(n):
        app.processEvents()
        time.sleep(0.01)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=ROOT / "docs")
    args = ap.parse_args()
    from PySide6.QtWidgets import QApplication

    from labsat.gui.window import MainWindow

    app = QApplication.instance() or QApplication(sys.argv)
    with tempfile.TemporaryDirectory() as tmp:
        data = yaml.safe_load((ROOT / "stations" / "paper-mzi.yaml").read_text())
        data["station"]["calibration_dir"] = str(Path(tmp) / "cal")
        data["station"]["runs_dir"] = str(Path(tmp) / "runs")
        data["instruments"]["heaters"]["limits"]["total_power_max_w"] = 1.0
        data["layers"]["mesh"]["v_max"] = 0.2  # 4032 heaters at 0.2 V: 0.27 W, inside the lowered total
        station = Path(tmp) / "paper-mzi.yaml"
        station.write_text(yaml.safe_dump(data, sort_keys=False))
        w = MainWindow(station)
        w.resize(1300, 900)
        w.show()
        w.connect_station()
        w.tabs.setCurrentWidget(w.manual)
        settle(app)
        m = w.manual
        m.instrument.setCurrentText("heaters")
        for ch, v in ((0, 1.2), (1, 2.5), (2, 4.0)):
            m.spins[ch].setValue(v)
        m.page.setValue(4032)
        m.spins[1].setValue(3.0)
        m.spins[2].setValue(5.0)
        m.apply()
        m.page.setValue(0)
        for box in m.spins:
            box.setValue(box.maximum())
        m.apply()  # 64 channels at their cap: over the 1 W total, refused whole, shown in the status line
        settle(app)
        args.out.mkdir(parents=True, exist_ok=True)
        path = args.out / "gui-manual-block-dac.png"
        w.grab().save(str(path))
        print("wrote", path)
        w.tabs.setCurrentWidget(w.station)
        w.station.poll()
        settle(app, 60)
        path = args.out / "gui-station-block-dac.png"
        w.grab().save(str(path))
        print("wrote", path)
        w.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
