"""Screenshot of the Manual tab and the Log dock on the virtual lab (issue 15's GUI additions).

    QT_QPA_PLATFORM=offscreen .venv/bin/python docs/make_screenshot_manual.py [--out docs]

Connects the virtual lab, sets three heaters by hand, asks for more than the total heater power (the
driver refuses it), shows the instrument I/O in the log, and saves docs/gui-manual.png. Nothing is
written into the repository but the picture.
"""
from __future__ import annotations

import argparse
import logging
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def settle(app, n: int = 30) -> None:
    for _ in range(n):
        app.processEvents()
        time.sleep(0.01)


def open_on_manual(station: Path):
    """The main window on ``station``, connected to its virtual lab, Manual tab showing the heaters."""
    from PySide6.QtWidgets import QApplication

    from labsat.gui.window import MainWindow

    app = QApplication.instance() or QApplication(sys.argv)
    w = MainWindow(station)
    w.resize(1300, 900)
    w.show()
    w.connect_station()
    w.tabs.setCurrentWidget(w.manual)
    settle(app)
    w.manual.instrument.setCurrentText("heaters")
    return app, w


def save(w, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    w.grab().save(str(path))
    print("wrote", path)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=ROOT / "docs")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        station = Path(tmp) / "instruments.yaml"
        shutil.copy(ROOT / "instruments.yaml", station)
        app, w = open_on_manual(station)
        m = w.manual
        w.log_pane.io.setChecked(True)
        logging.getLogger("labsat.gui").warning("manual control: 3 heaters set by hand")
        for ch, v in ((0, 1.2), (1, 2.5), (2, 4.0)):
            m.spins[ch].setValue(v)
        m.apply()
        w.log_pane.io.setChecked(False)
        for box in m.spins:
            box.setValue(6.5)
        m.apply()  # over the 3.5 W total: refused, shown in the status line
        settle(app)
        save(w, args.out / "gui-manual.png")
        w.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
