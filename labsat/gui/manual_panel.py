"""Manual panel: set any output channel by hand, within its limits, and see it read back.

One row per channel of the chosen output instrument (heater DAC, serial or LAN block: every channel;
modulator DAC: every input), ``PAGE`` rows at a time (a 64-mode mesh's block DAC has 4096 channels:
the "channels from" box pages through them; set-points typed on other pages are kept). Each set-point
box only accepts values inside the driver's own limits for that channel (a heater's tightest of
voltage, current and power); the driver checks the whole resulting vector again on Apply (the total
heater power, too) and a refusal is shown, with nothing sent. Apply ramps the changed channels from a
fresh read-back (the driver's ramp: one block per step on the block DAC) under the bench lock, so a
running job's forward is never cut in half.
"""
from __future__ import annotations

import numpy as np
from PySide6.QtCore import Qt
from PySide6.QtWidgets import (QComboBox, QHBoxLayout, QHeaderView, QLabel, QPushButton, QSpinBox,
                               QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget)

from labsat.drivers.heater_limits import HeaterLimitsMixin as HeaterDAC  # serial and LAN block heater DACs
from labsat.drivers.modulator import ModulatorDAC

from .bench import Bench
from .common import dspin, heading


PAGE = 64  # channels shown at a time


def _cell(text: str) -> QTableWidgetItem:
    """A read-only table cell (channel, read-back, limit)."""
    item = QTableWidgetItem(text)
    item.setFlags(item.flags() & ~Qt.ItemIsEditable)
    return item


class ManualPanel(QWidget):
    def __init__(self, bench: Bench, parent=None):
        super().__init__(parent)
        self.bench = bench
        self.busy = False
        self.spins: list = []  # the set-point boxes of the shown page (channels first .. first + len - 1)
        self.first = 0
        self.wanted = np.zeros(0)  # set-points of every channel (pages not shown keep theirs)
        self.caps = np.zeros(0)
        self._levels_now: np.ndarray | None = None  # the last read-back (shown on every page)
        self.page = QSpinBox()
        self.page.setToolTip(f"first channel shown ({PAGE} per page)")
        self.page.setSingleStep(PAGE)
        self.page.setRange(0, 0)
        self.page.valueChanged.connect(self._show_page)
        self.instrument = QComboBox()
        self.instrument.setToolTip("an output instrument of the station")
        self.instrument.currentTextChanged.connect(self._build_rows)
        self.refresh_button = QPushButton("Read back")
        self.refresh_button.clicked.connect(self.read_back)
        self.apply_button = QPushButton("Apply")
        self.apply_button.setToolTip("ramp the changed channels to their set-points (limits checked first)")
        self.apply_button.clicked.connect(self.apply)
        self.zero_button = QPushButton("All to 0")
        self.zero_button.clicked.connect(self.zero)
        top = QHBoxLayout()
        top.addWidget(QLabel("instrument"))
        top.addWidget(self.instrument, 1)
        top.addWidget(QLabel("channels from"))
        top.addWidget(self.page)
        for b in (self.refresh_button, self.apply_button, self.zero_button):
            top.addWidget(b)
        self.table = QTableWidget(0, 4)
        self.table.setHorizontalHeaderLabels(["channel", "set-point (V)", "read-back (V)", "limit (V)"])
        self.table.verticalHeader().setVisible(False)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.Stretch)
        self.table.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeToContents)
        self.status = QLabel("connect the station to control its outputs by hand")
        self.status.setWordWrap(True)
        layout = QVBoxLayout(self)
        layout.addWidget(heading("Manual output control (within limits)"))
        layout.addLayout(top)
        layout.addWidget(self.table, 1)
        layout.addWidget(self.status)
        self.refresh()

    # --- instruments ---
    def outputs(self) -> dict:
        station = self.bench.station
        if station is None:
            return {}
        return {n: i for n, i in station.instruments.items() if isinstance(i, (HeaterDAC, ModulatorDAC))}

    def refresh(self) -> None:
        """Re-list the output instruments (call after Connect / Disconnect)."""
        names = list(self.outputs())
        current = self.instrument.currentText()
        self.instrument.blockSignals(True)
        self.instrument.clear()
        self.instrument.addItems(names)
        if current in names:
            self.instrument.setCurrentText(current)
        self.instrument.blockSignals(False)
        self.refresh_button.setEnabled(bool(names))
        for b in (self.apply_button, self.zero_button):
            b.setEnabled(bool(names) and not self.busy)
        self._build_rows(self.instrument.currentText())

    def set_busy(self, busy: bool) -> None:
        """No hand-set outputs while a job drives the bench."""
        self.busy = busy
        for b in (self.apply_button, self.zero_button):
            b.setEnabled(not busy and self.instrument.count() > 0)

    def showEvent(self, event) -> None:  # noqa: N802 (Qt name)
        if set(self.outputs()) != {self.instrument.itemText(i) for i in range(self.instrument.count())}:
            self.refresh()
        super().showEvent(event)

    def _driver(self):
        return self.outputs().get(self.instrument.currentText())

    @staticmethod
    def limits(driver) -> list[float]:
        if isinstance(driver, HeaterDAC):
            return [driver.channel_cap_v(ch) for ch in range(driver.channels)]
        return [float(driver.v_max)] * driver.channels

    def _build_rows(self, name: str) -> None:
        driver = self._driver()
        self.spins = []
        self.table.setRowCount(0)
        if driver is None:
            self.wanted, self.caps = np.zeros(0), np.zeros(0)
            return
        self.caps = np.asarray(self.limits(driver), dtype=float)
        self.wanted = np.zeros(driver.channels)
        self.page.blockSignals(True)
        self.page.setRange(0, max(0, (driver.channels - 1) // PAGE * PAGE))
        self.page.setValue(0)
        self.page.blockSignals(False)
        self._levels_now = None
        self._show_page(0)
        self.read_back(set_boxes=True)

    def _show_page(self, first: int) -> None:
        """Rows for channels ``first`` .. ``first + PAGE - 1`` (set-points from ``wanted``)."""
        first = int(first) // PAGE * PAGE
        self.first = first
        last = min(len(self.wanted), first + PAGE)
        self.spins = []
        self.table.clearContents()
        self.table.setRowCount(0)
        self.table.setRowCount(last - first)
        for row, ch in enumerate(range(first, last)):
            box = dspin(0.0, 0.0, float(self.caps[ch]), 0.1, 4)
            box.setValue(float(self.wanted[ch]))
            box.valueChanged.connect(lambda v, ch=ch: self.wanted.__setitem__(ch, v))
            self.spins.append(box)
            self.table.setItem(row, 0, _cell(str(ch)))
            self.table.setCellWidget(row, 1, box)
            self.table.setItem(row, 2, _cell(""))
            self.table.setItem(row, 3, _cell(f"{self.caps[ch]:.4g}"))
        if self._levels_now is not None:
            self._show_levels(self._levels_now)

    # --- actions ---
    def _levels(self, driver) -> np.ndarray:
        return driver.voltages() if isinstance(driver, HeaterDAC) else driver.levels()

    def read_back(self, set_boxes: bool = False) -> np.ndarray | None:
        driver = self._driver()
        if driver is None:
            return None
        with self.bench.lock:
            levels = self._levels(driver)
        if set_boxes:
            self.wanted = np.array(levels, dtype=float)
            for row, box in enumerate(self.spins):
                box.setValue(float(levels[self.first + row]))
        self._levels_now = np.asarray(levels, dtype=float)
        self._show_levels(self._levels_now)
        return levels

    def _show_levels(self, levels: np.ndarray) -> None:
        for row in range(len(self.spins)):
            self.table.item(row, 2).setText(f"{levels[self.first + row]:.4f}")

    def apply(self) -> bool:
        """Send the changed set-points; False (and the reason shown) when the driver refused them."""
        driver = self._driver()
        if driver is None or self.busy:
            return False
        wanted = self.wanted.copy()  # every channel's set-point, shown page or not
        try:
            with self.bench.lock:
                now = self._levels(driver)
                changed = np.flatnonzero(np.abs(wanted - now) > 1e-6)
                if isinstance(driver, HeaterDAC):
                    if len(changed):
                        driver.set_voltages(wanted[changed], changed)
                else:
                    driver.output(True)
                    driver.set_levels(wanted)
        except Exception as exc:  # a refused limit: nothing was sent
            self.status.setText(f"<span style='color:#c62828'>refused: {exc}</span>")
            self.read_back()
            return False
        self.read_back()
        self.status.setText(f"{driver.name}: set {len(changed)} channel(s)")
        return True

    def zero(self) -> None:
        self.wanted[:] = 0.0
        for box in self.spins:
            box.setValue(0.0)
        self.apply()
