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
from pathlib import Path

import yaml
from make_screenshot_manual import open_on_manual, save, settle  # the window set-up shared with gui-manual.png

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=ROOT / "docs")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = yaml.safe_load((ROOT / "stations" / "paper-mzi.yaml").read_text())
        data["station"]["calibration_dir"] = str(Path(tmp) / "cal")
        data["station"]["runs_dir"] = str(Path(tmp) / "runs")
        data["instruments"]["heaters"]["limits"]["total_power_max_w"] = 1.0
        data["layers"]["mesh"]["v_max"] = 0.2  # 4032 heaters at 0.2 V: 0.27 W, inside the lowered total
        station = Path(tmp) / "paper-mzi.yaml"
        station.write_text(yaml.safe_dump(data, sort_keys=False))
        app, w = open_on_manual(station)
        m = w.manual
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
        save(w, args.out / "gui-manual-block-dac.png")
        w.tabs.setCurrentWidget(w.station)
        w.station.poll()
        settle(app, 60)
        save(w, args.out / "gui-station-block-dac.png")
        w.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
