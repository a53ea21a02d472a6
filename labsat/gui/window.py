"""The workstation's main window: four panels, a STOP always in reach, one job at a time."""
from __future__ import annotations

from pathlib import Path

import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QDockWidget, QLabel, QMainWindow, QTabWidget, QToolBar

from .bench import Bench
from .calibration_panel import CalibrationPanel
from .log_panel import LogPanel
from .manual_panel import ManualPanel
from .robustness_panel import RobustnessPanel
from .runner import JobRunner
from .station_panel import StationPanel, stop_button
from .training_panel import TrainingPanel

pg.setConfigOptions(antialias=True, background="w", foreground="k")


class MainWindow(QMainWindow):
    def __init__(self, config_path: str | Path = "instruments.yaml", chip_seed: int | None = None,
                 layer: str | None = None):
        super().__init__()
        self.bench = Bench(config_path, chip_seed=chip_seed, layer=layer)
        self.runner = JobRunner(self.bench, parent=self)
        self.setWindowTitle(f"labsat workstation: {self.bench.config.station.name}")

        self.station = StationPanel(self.bench)
        self.calibration = CalibrationPanel(self.runner)
        self.training = TrainingPanel(self.runner)
        self.robustness = RobustnessPanel(self.runner)
        self.tabs = QTabWidget()
        self.manual = ManualPanel(self.bench)
        for panel, name in ((self.station, "Station"), (self.calibration, "Calibration"),
                            (self.training, "Training"), (self.robustness, "Robustness"), (self.manual, "Manual")):
            self.tabs.addTab(panel, name)
        self.setCentralWidget(self.tabs)
        self.log_pane = LogPanel()  # labsat's logging (and the instrument I/O on request)
        self.log_dock = QDockWidget("Log", self)
        self.log_dock.setWidget(self.log_pane)
        self.addDockWidget(Qt.BottomDockWidgetArea, self.log_dock)

        # a STOP on every panel: the toolbar stays visible whichever tab is open
        bar = QToolBar("safety")
        bar.setMovable(False)
        self.toolbar_stop = stop_button(big=False)
        self.toolbar_stop.clicked.connect(self.stop)
        bar.addWidget(self.toolbar_stop)
        self.job_label = QLabel("  idle")
        bar.addWidget(self.job_label)
        self.addToolBar(bar)

        self.station.stop_requested.connect(self.stop)
        self.station.connected_changed.connect(lambda _: self.manual.refresh())
        self.calibration.saved.connect(self.training.set_calibration)
        self.training.run_saved.connect(lambda path: self.robustness.add_model(path, checked=False))
        self.runner.busy_changed.connect(self._busy)
        self.runner.message.connect(lambda text: self.statusBar().showMessage(text, 10000))
        self.resize(1400, 860)

    def _busy(self, busy: bool) -> None:
        for panel in (self.calibration, self.training, self.robustness, self.manual):
            panel.set_busy(busy)
        job = self.runner.job
        self.job_label.setText(f"  running: {job.objectName()}" if busy and job else "  idle")

    def connect_station(self) -> bool:
        return self.station.connect_station()

    def stop(self) -> list[str]:
        """STOP: abort every job, every output to its safe state; say so in the status bar."""
        problems = self.bench.stop()
        if problems:
            text = "STOP: PROBLEMS reaching the safe state: " + "; ".join(problems)
        else:
            text = "STOP: every output is in its safe state (heaters 0 V, modulator off)"
        self.station.stop_status.setText(f"<span style='color:{'#c62828' if problems else '#2e7d32'}'>{text}</span>")
        self.statusBar().showMessage(text, 20000)
        self.station.poll()
        return problems

    def closeEvent(self, event) -> None:  # noqa: N802 (Qt name)
        self.station.timer.stop()
        self.log_pane.detach()
        self.runner.shutdown()
        self.bench.disconnect()
        super().closeEvent(event)
