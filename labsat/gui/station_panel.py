"""Station panel: instruments, connection, live read-backs with their limits, and the big STOP."""
from __future__ import annotations

import time

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QColor, QFont
from PySide6.QtWidgets import (QGridLayout, QHBoxLayout, QHeaderView, QLabel, QPushButton, QSizePolicy,
                               QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget)

from .bench import HEATER_KINDS, Bench
from .common import dspin, plot

POLL_MS = 250


class HeaterBars:
    """A heater instrument's read-backs as two one-colour bar graphs: the channels a layer drives (blue)
    and the others (grey). Not one BarGraphItem with a brush per bar: with PySide6 6.12 and pyqtgraph
    0.14 every paint of a per-bar brush list leaks a reference to None, and the process aborts
    ("none_dealloc") after enough polls, within a minute for the 4096 channels of a block DAC."""

    def __init__(self, n: int, used: set):
        mine = np.zeros(n, dtype=bool)
        mine[[c for c in used if 0 <= c < n]] = True
        parts = [(i, colour) for i, colour in ((np.flatnonzero(mine), "#1f77b4"), (np.flatnonzero(~mine), "#9e9e9e"))
                 if len(i)]
        self.index = [i for i, _ in parts]
        self.items = [pg.BarGraphItem(x=i, height=np.zeros(len(i)), width=0.8, brush=colour) for i, colour in parts]
        self.opts = {"height": np.zeros(n)}

    def setOpts(self, height) -> None:  # noqa: N802 (pyqtgraph's name)
        height = np.asarray(height, dtype=float)
        self.opts["height"] = height
        for item, i in zip(self.items, self.index):
            item.setOpts(height=height[i])


def stop_button(big: bool = True) -> QPushButton:
    b = QPushButton("STOP" if big else "STOP  (all outputs safe)")
    b.setObjectName("stop")
    b.setToolTip("Abort every job and put every output in its safe state (heaters ramped to 0 V, modulator off)")
    size = 26 if big else 13
    b.setStyleSheet(f"QPushButton#stop {{ background: #c62828; color: white; font-weight: bold; font-size: {size}px;"
                    f" border-radius: 6px; padding: {14 if big else 4}px 22px; }}"
                    "QPushButton#stop:pressed { background: #8e0000; }")
    if big:
        b.setMinimumHeight(90)
        b.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Fixed)
    return b


class StationPanel(QWidget):
    connected_changed = Signal(bool)
    stop_requested = Signal()

    def __init__(self, bench: Bench, parent=None):
        super().__init__(parent)
        self.bench = bench
        self.polls = 0
        cfg = bench.config

        top = QHBoxLayout()
        self.title = QLabel(f"<b>{cfg.station.name}</b> &nbsp; backend: {cfg.station.backend} &nbsp; "
                            f"layer: {bench.layer} ({cfg.layers[bench.layer].kind}) &nbsp; file: {bench.config_path}")
        self.connect_button = QPushButton("Connect")
        self.connect_button.clicked.connect(self.toggle_connection)
        self.state_label = QLabel("disconnected")
        top.addWidget(self.title, 1)
        top.addWidget(self.state_label)
        top.addWidget(self.connect_button)

        self.table = QTableWidget(len(bench.info), 6)
        self.table.setHorizontalHeaderLabels(["instrument", "kind", "address", "state", "identity", "limits"])
        self.table.verticalHeader().setVisible(False)
        self.table.setEditTriggers(QTableWidget.NoEditTriggers)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeToContents)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.setMaximumHeight(34 + 30 * len(bench.info))

        self.stop = stop_button(big=True)
        self.stop.clicked.connect(self.stop_requested.emit)
        self.stop_status = QLabel("")
        self.stop_status.setWordWrap(True)

        # test input: the modulator at one DC level, so the detectors show light
        self.level = dspin(0.0, 0.0, 10.0, 0.1, 2)
        self.level.setSuffix(" V")
        self.apply_level = QPushButton("Set modulator level")
        self.apply_level.clicked.connect(self._apply_level)
        if not any(i.kind == "modulator_dac" for i in cfg.instruments.values()):
            self.level.setVisible(False)
            self.apply_level.setVisible(False)

        # plots
        self._setup_plots()
        self.power_label = QLabel("")
        self.power_label.setWordWrap(True)
        self.poll_label = QLabel("")
        self.poll_label.setWordWrap(True)

        grid = QGridLayout()
        heaters = [self.plots[n] for n in self.heater_bars]
        others = [self.plots[n] for n in self.plots if n not in self.heater_bars]
        width = max(len(heaters), len(others), 1)
        for i, w in enumerate(heaters):  # heaters on the top row, the rest below
            span = width // len(heaters)
            grid.addWidget(w, 0, i * span, 1, span)
        for i, w in enumerate(others):
            span = width // len(others)
            grid.addWidget(w, 1, i * span, 1, span)
        grid.setRowStretch(0, 3)
        grid.setRowStretch(1, 2)

        side = QVBoxLayout()
        side.addWidget(self.stop)
        side.addWidget(self.stop_status)
        row = QHBoxLayout()
        row.addWidget(self.level)
        row.addWidget(self.apply_level)
        side.addLayout(row)
        side.addWidget(self.power_label)
        side.addWidget(self.poll_label)
        side.addStretch(1)

        mid = QHBoxLayout()
        mid.addWidget(self.table, 3)
        side_w = QWidget()
        side_w.setLayout(side)
        side_w.setMaximumWidth(330)
        mid.addWidget(side_w, 1)

        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addLayout(mid)
        layout.addLayout(grid, 1)

        self.timer = QTimer(self)
        self.timer.setInterval(POLL_MS)
        self.timer.timeout.connect(self.poll)
        self.refresh_table()

    # --- plots ---
    def _setup_plots(self) -> None:
        """One bar graph per instrument, its limits drawn on it."""
        cfg = self.bench.config
        self.plots, self.heater_bars, self.mod_bars, self.det_bars = {}, {}, {}, {}
        used = self.bench.heater_channels()
        dashed = dict(width=2, style=Qt.DashLine)
        for name, icfg in cfg.instruments.items():
            if icfg.kind not in HEATER_KINDS + ("modulator_dac", "photodetector_daq"):
                continue  # an instrument this panel does not draw (state and identity are in the table)
            n = icfg.channels
            x = np.arange(n)
            if icfg.kind in HEATER_KINDS:
                w = plot(f"{name}: heater voltages (read-back)", "channel", "V")
                bars = HeaterBars(n, used.get(name, set()))
                self.heater_bars[name] = bars
                w.addItem(pg.InfiniteLine(icfg.limits.v_max, angle=0, label=f"limit {icfg.limits.v_max:g} V",
                                          pen=pg.mkPen("#c62828", **dashed),
                                          labelOpts={"position": 0.93, "color": "#c62828",
                                                     "anchors": [(0.5, 1), (0.5, 1)]}))
                ranges = {layer.v_max for layer in cfg.layers.values()
                          if name in layer.instrument_names() and getattr(layer, "v_max", None)}
                for v in sorted(ranges)[:1]:
                    w.addItem(pg.InfiniteLine(v, angle=0, label=f"control range {v:g} V",
                                              pen=pg.mkPen("#ef6c00", width=1, style=Qt.DotLine),
                                              labelOpts={"position": 0.93, "color": "#ef6c00",
                                                         "anchors": [(0.5, 0), (0.5, 0)]}))
                w.setYRange(0, icfg.limits.v_max * 1.15)
                w.setXRange(-1, n)
            elif icfg.kind == "modulator_dac":
                w = plot(f"{name}: modulator levels (read-back)", "channel", "V")
                bars = pg.BarGraphItem(x=x, height=np.zeros(n), width=0.7, brush="#2ca02c")
                self.mod_bars[name] = bars
                w.addItem(pg.InfiniteLine(icfg.limits.v_max, angle=0, label=f"limit {icfg.limits.v_max:g} V",
                                          pen=pg.mkPen("#c62828", **dashed),
                                          labelOpts={"position": 0.85, "color": "#c62828"}))
                w.setYRange(0, icfg.limits.v_max * 1.15)
            elif icfg.kind == "photodetector_daq":
                w = plot(f"{name}: detector readings", "channel", "µW")
                bars = pg.BarGraphItem(x=x, height=np.zeros(n), width=0.7, brush="#ff7f0e")
                self.det_bars[name] = bars
                rng_uw = icfg.range_w * 1e6
                w.addItem(pg.InfiniteLine(rng_uw, angle=0, label=f"range {rng_uw:g} µW",
                                          pen=pg.mkPen("#c62828", **dashed),
                                          labelOpts={"position": 0.85, "color": "#c62828"}))
                w.setYRange(0, rng_uw * 1.15)
            for item in getattr(bars, "items", [bars]):
                w.addItem(item)
            self.plots[name] = w

    # --- connection ---
    def toggle_connection(self) -> None:
        if self.bench.connected:
            self.disconnect_station()
        else:
            self.connect_station()

    def connect_station(self) -> bool:
        try:
            self.bench.connect()
        except Exception as exc:
            self.state_label.setText(f"<span style='color:#c62828'>{exc}</span>")
            self.refresh_table()
            return False
        self.connect_button.setText("Disconnect")
        self.state_label.setText(f"<span style='color:#2e7d32'>connected</span> &nbsp; device {self.bench.device_id()}")
        self.refresh_table()
        self.timer.start()
        self.poll()
        self.connected_changed.emit(True)
        return True

    def disconnect_station(self) -> None:
        self.timer.stop()
        self.bench.disconnect()
        self.connect_button.setText("Connect")
        self.state_label.setText("disconnected (outputs were made safe)")
        self.refresh_table()
        self.connected_changed.emit(False)

    def refresh_table(self) -> None:
        self._shown_states = [i.state for i in self.bench.info.values()]
        for row, info in enumerate(self.bench.info.values()):
            for col, text in enumerate([info.name, info.kind, info.address, info.state, info.identity, info.limits]):
                item = QTableWidgetItem(text)
                if col == 3:
                    item.setForeground(QColor("#2e7d32" if text == "connected" else
                                              "#c62828" if text.startswith(("error", "failed")) else "#616161"))
                    f = QFont()
                    f.setBold(True)
                    item.setFont(f)
                self.table.setItem(row, col, item)

    def _apply_level(self) -> None:
        try:
            self.bench.set_modulator_levels(self.level.value())
            self.stop_status.setText(f"modulator at {self.level.value():.2f} V on every channel")
        except Exception as exc:
            self.stop_status.setText(f"<span style='color:#c62828'>{exc}</span>")

    # --- polling ---
    def poll(self) -> None:
        snap = self.bench.poll()
        if snap is None:
            if self.bench.connected:
                self.poll_label.setText("bench busy (a job is measuring); read-backs resume between its steps")
            return
        self.polls += 1
        power = []
        for name, v in snap.heaters.items():
            if name in self.heater_bars:
                icfg = self.bench.config.instruments[name]
                self.heater_bars[name].setOpts(height=v)
                total = float(np.sum(v**2) / icfg.limits.resistance_ohm)
                limit = icfg.limits.total_power_max_w
                power.append(f"{name}: total heater power {1e3 * total:.1f} mW"
                             + (f" of {1e3 * limit:.0f} mW limit" if limit else "") + f"; max {np.max(v):.3f} V")
        self.power_label.setText("<br>".join(power))
        for name, v in snap.modulators.items():
            if name in self.mod_bars:
                self.mod_bars[name].setOpts(height=v)
        for name, p in snap.detectors.items():
            if name in self.det_bars:
                self.det_bars[name].setOpts(height=p * 1e6)
                if np.min(p) < 0:  # balanced detectors read signed powers
                    rng_uw = self.bench.config.instruments[name].range_w * 1e6
                    self.plots[name].setYRange(-rng_uw * 1.15, rng_uw * 1.15)
        self.poll_label.setText(f"read-back #{self.polls} at {time.strftime('%H:%M:%S')}"
                                + (f"; errors: {snap.errors}" if snap.errors else ""))
        states = [i.state for i in self.bench.info.values()]
        if states != self._shown_states:
            self.refresh_table()
