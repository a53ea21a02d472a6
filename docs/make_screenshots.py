"""Screenshots of each workstation panel from a real run on the virtual lab.

    QT_QPA_PLATFORM=offscreen .venv/bin/python docs/make_screenshots.py [--out docs]

Calibrates virtual chip 1, trains plain (Adam) and sharpness-aware (SAM) models offline on the fitted
twin, trains SAM online for a few epochs on the (virtual) hardware, runs the robustness evaluations,
and saves docs/gui-station.png, gui-calibration.png, gui-training.png, gui-robustness.png. Calibrations
and models go to a temporary folder, not to the repository.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def wait(app, runner, timeout_s: float = 600) -> None:
    t0 = time.monotonic()
    while runner.busy:
        app.processEvents()
        time.sleep(0.01)
        if time.monotonic() - t0 > timeout_s:
            raise TimeoutError("job did not end")
    for _ in range(20):
        app.processEvents()


def grab(app, window, panel, path: Path) -> None:
    window.tabs.setCurrentWidget(panel)
    for _ in range(30):
        app.processEvents()
        time.sleep(0.01)
    window.grab().save(str(path))
    print("wrote", path)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=ROOT / "docs")
    ap.add_argument("--offline-epochs", type=int, default=20)
    ap.add_argument("--online-epochs", type=int, default=5)
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    from PySide6.QtWidgets import QApplication

    from labsat.gui.window import MainWindow

    app = QApplication.instance() or QApplication(sys.argv[:1])
    tmp = Path(tempfile.mkdtemp(prefix="labsat-gui-"))
    station_file = tmp / "instruments.yaml"
    station_file.write_text((ROOT / "instruments.yaml").read_text())
    w = MainWindow(station_file)
    w.resize(1500, 900)
    w.show()
    assert w.connect_station(), "could not connect the virtual station"
    r = w.runner

    # calibration: the default sweep (64 settings x 32 inputs), then accept
    w.tabs.setCurrentWidget(w.calibration)
    w.calibration.start()
    wait(app, r)
    assert w.calibration.result is not None, w.calibration.status.text()
    w.calibration.accept_fit()
    grab(app, w, w.calibration, args.out / "gui-calibration.png")

    # offline: plain vs sharpness-aware, on the accepted twin
    t = w.training
    t.mode.setCurrentText("offline")
    t.epochs.setValue(args.offline_epochs)
    models = []
    for opt in ("adam", "sam"):
        t.optimizer.setCurrentText(opt)
        t.start()
        wait(app, r)
        models.append(str(t.result.path))
    # online SAM on the (virtual) hardware: the panel shown in the screenshot
    t.mode.setCurrentText("online")
    t.optimizer.setCurrentText("sam")
    t.epochs.setValue(args.online_epochs)
    t.start()
    wait(app, r)
    grab(app, w, t, args.out / "gui-training.png")

    rb = w.robustness
    rb.refresh_models()
    for m in models:
        rb.add_model(m, checked=True)
    rb.drift_max.setValue(3.0)
    rb.drift_points.setValue(13)
    rb.grid_points.setValue(21)
    rb.start()
    wait(app, r)
    grab(app, w, rb, args.out / "gui-robustness.png")

    # station: heaters hold the online-trained controls; a test input lights the detectors
    w.station.level.setValue(1.2)
    w.station._apply_level()
    for _ in range(3):
        w.station.poll()
    grab(app, w, w.station, args.out / "gui-station.png")
    w.close()  # aborts nothing (idle), safe state, disconnects
    return 0


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    # skip interpreter finalisation: PySide6 + pyqtgraph can abort while garbage-collecting Qt objects
    # at exit (after everything above is done and saved); pyqtgraph's own pg.exit() does the same
    os._exit(code)
