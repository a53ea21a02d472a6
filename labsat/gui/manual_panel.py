"""Manual panel: set any output channel by hand, within its limits, and see it read back.

One row per channel of the chosen output instrument (heater DAC: every channel; modulator DAC: every
input). Each set-point box only accepts values inside the driver's own limits for that channel (a
heater's tightest of voltage, current and power); the driver checks again on Apply (the total heater
power, too) and a refusal is shown, with nothing sent. Apply ramps the changed channels from a fresh
read-back (the driver's ramp) under the bench lock, so a running job's forward is never cut in half.
"""
from __future__ import annotations

import numpy as np
from PySide6.QtWidgets import (QComboBox, QHBoxLayout, QHeaderView, QLabel, QPushButton, QTableWidget,
                               QTableWidgetItem, QVBoxLayout, QWidget)

from labsat.drivers.heater_dac import HeaterDAC
from labsat.drivers.modulator import ModulatorDAC

from .bench import Bench
from .common import dspin, heading


class ManualPanel(QWidget):
    def __init__(self, bench: Bench, parent=None):
        super().__init__(parent)
        self.bench = bench
        self.busy = False
        self.spins: list = []
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
            return
        caps = self.limits(driver)
        self.table.setRowCount(driver.channels)
        for ch, cap in enumerate(caps):
            box = dspin(0.0, 0.0, cap, 0.1, 4)
            self.spins.append(box)
            self.table.setItem(ch, 0, QTableWidgetItem(str(ch)))
            self.table.setCellWidget(ch, 1, box)
            self.table.setItem(ch, 2, QTableWidgetItem(""))
            self.table.setItem(ch, 3, QTableWidgetItem(f"{cap:.4g}"))
        self.read_back(set_boxes=True)

    # --- actions ---
    def _levels(self, driver) -> np.ndarray:
        return driver.voltages() if isinstance(driver, HeaterDAC) else driver.levels()

    def read_back(self, set_boxes: bool = False) -> np.ndarray | None:
        driver = self._driver()
        if driver is None:
            return None
        with self.bench.lock:
            levels = self._levels(driver)
        for ch, v in enumerate(levels):
            self.table.item(ch, 2).setText(f"{v:.4f}")
            if set_boxes:
                self.spins[ch].setValue(float(v))
        return levels

    def apply(self) -> bool:
        """Send the changed set-points; False (and the reason shown) when the driver refused them."""
        driver = self._driver()
        if driver is None or self.busy:
            return False
        wanted = np.array([box.value() for box in self.spins])
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
        for box in self.spins:
            box.setValue(0.0)
        self.apply()
