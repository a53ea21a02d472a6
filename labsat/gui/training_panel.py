"""Training panel: offline / online, optimizer, rho, epochs; live curves; pause, resume, abort."""
from __future__ import annotations

import pyqtgraph as pg
from PySide6.QtCore import Signal
from PySide6.QtWidgets import (QComboBox, QFormLayout, QGridLayout, QHBoxLayout, QLabel, QProgressBar,
                               QPushButton, QVBoxLayout, QWidget)

from labsat import defaults
from labsat.workflows import default_lr

from .common import dspin, heading, plot, spin
from .data_choice import DataChoice
from .jobs import TrainingParams, TrainingResult, run_training
from .runner import JobRunner


def optimizer_names() -> tuple[str, ...]:
    from labsat import train

    return tuple(train.OPTIMIZERS)


class TrainingPanel(QWidget):
    run_saved = Signal(str)  # model file written (completed or aborted run)

    def __init__(self, runner: JobRunner, parent=None):
        super().__init__(parent)
        self.runner = runner
        self.bench = runner.bench
        self.job = None
        self.result: TrainingResult | None = None
        self.calibration_path: str | None = None

        self.mode = QComboBox()
        self.mode.addItems(["offline", "online"])
        self.mode.setToolTip("offline: on the calibrated twin; online: hardware forward, twin backward")
        self.optimizer = QComboBox()
        self.optimizer.addItems(list(optimizer_names()))
        if defaults.OPTIMIZER in optimizer_names():
            self.optimizer.setCurrentText(defaults.OPTIMIZER)
        self.rho = dspin(defaults.RHO, 0.0, 5.0, 0.01, 3)
        # the layer's default rate (smaller for larger meshes); the operator may change it
        self.lr = dspin(default_lr(self.bench.config, self.bench.layer), 0.00001, 5.0, 0.0005, 5)
        self.epochs = spin(defaults.EPOCHS, 1, 10000)
        self.batch = spin(defaults.BATCH_SIZE, 1, 100000, 8)
        self.twin = QComboBox()
        self.twin.addItems(["latest calibration", "nominal (datasheet)"])
        self.twin_label = QLabel("")
        self.twin_label.setWordWrap(True)
        form = QFormLayout()
        form.addRow("mode", self.mode)
        form.addRow("optimizer", self.optimizer)
        form.addRow("rho (SAM radius)", self.rho)
        form.addRow("learning rate", self.lr)
        form.addRow("epochs", self.epochs)
        form.addRow("batch size", self.batch)
        form.addRow("twin", self.twin)
        self.data = DataChoice()
        form.addRow("data set", self.data)

        self.start_button = QPushButton("Start")
        self.start_button.clicked.connect(self.start)
        self.pause_button = QPushButton("Pause")
        self.pause_button.clicked.connect(self.toggle_pause)
        self.abort_button = QPushButton("Abort")
        self.abort_button.clicked.connect(self.abort)
        for b in (self.pause_button, self.abort_button):
            b.setEnabled(False)
        buttons = QHBoxLayout()
        for b in (self.start_button, self.pause_button, self.abort_button):
            buttons.addWidget(b)

        self.epoch_bar = QProgressBar()
        self.epoch_bar.setFormat("epoch %v / %m")
        self.step_bar = QProgressBar()
        self.step_bar.setFormat("step %v / %m")
        self.queries = QLabel("hardware queries: 0")
        self.queries.setStyleSheet("font-size: 15px; font-weight: bold;")
        self.status = QLabel("")
        self.status.setWordWrap(True)

        side = QVBoxLayout()
        side.addWidget(heading("Training run"))
        side.addLayout(form)
        side.addWidget(self.twin_label)
        side.addLayout(buttons)
        side.addWidget(self.epoch_bar)
        side.addWidget(self.step_bar)
        side.addWidget(self.queries)
        side.addWidget(self.status)
        side.addStretch(1)
        side_w = QWidget()
        side_w.setLayout(side)
        side_w.setFixedWidth(300)

        self.loss_plot = plot("loss", "epoch", "cross-entropy (train)", legend=True)
        self.loss_curve = self.loss_plot.plot(pen=pg.mkPen("#1f77b4", width=2), symbol="o", symbolSize=6,
                                              symbolBrush="#1f77b4", name="train loss")
        self.acc_plot = plot("accuracy", "epoch", "accuracy", legend=True)
        self.acc_plot.setYRange(0, 1)
        self.train_curve = self.acc_plot.plot(pen=pg.mkPen("#1f77b4", width=2), symbol="o", symbolSize=6,
                                              symbolBrush="#1f77b4", name="train")
        self.test_curve = self.acc_plot.plot(pen=pg.mkPen("#d62728", width=2), symbol="s", symbolSize=6,
                                             symbolBrush="#d62728", name="test")
        self.hw_plot = plot("hardware queries per epoch", "epoch", "mesh forwards")
        self.hw_bars = pg.BarGraphItem(x=[], height=[], width=0.6, brush="#2ca02c")
        self.hw_plot.addItem(self.hw_bars)
        grid = QGridLayout()
        grid.addWidget(self.loss_plot, 0, 0)
        grid.addWidget(self.acc_plot, 0, 1)
        grid.addWidget(self.hw_plot, 1, 0, 1, 2)
        grid.setRowStretch(0, 3)
        grid.setRowStretch(1, 1)

        layout = QHBoxLayout(self)
        layout.addWidget(side_w)
        layout.addLayout(grid, 1)
        self._reset_curves()
        self._show_twin()

    def set_calibration(self, path: str) -> None:
        """The calibration the operator accepted in the calibration panel: train on it."""
        self.calibration_path = path
        self.twin.setCurrentIndex(0)
        self._show_twin()

    def _show_twin(self) -> None:
        self.twin_label.setText(f"twin: {self.calibration_path}" if self.calibration_path else
                                "twin: the latest calibration of this chip")

    def params(self) -> TrainingParams:
        cal = "nominal" if self.twin.currentIndex() == 1 else self.calibration_path
        return TrainingParams(mode=self.mode.currentText(), optimizer=self.optimizer.currentText(),
                              rho=self.rho.value(), lr=self.lr.value(), epochs=self.epochs.value(),
                              batch_size=self.batch.value(), calibration=cal, data=self.data.spec())

    def set_busy(self, busy: bool) -> None:
        self.start_button.setEnabled(not busy)

    def _reset_curves(self) -> None:
        self.hist = {"epoch": [], "loss": [], "train": [], "test": [], "hw": []}
        for c in (self.loss_curve, self.train_curve, self.test_curve):
            c.setData([], [])
        self.hw_bars.setOpts(x=[], height=[])

    # --- run ---
    def start(self):
        p = self.params()
        if p.data != "digits" and self.data.check(self.bench.make_twin().n_inputs):
            self.status.setText("cannot start: the data set does not load (see above)")
            return None
        self._reset_curves()
        self.epoch_bar.setRange(0, p.epochs)
        self.epoch_bar.setValue(0)
        self.step_bar.setValue(0)
        self.queries.setText("hardware queries: 0")
        job = self.runner.start(run_training, p, "training", wire=self._wire)
        if job is None:
            self.status.setText("cannot start: " + ("connect the station first" if not self.bench.connected
                                                    else "another job is running"))
            return None
        self.job = job
        self.result = None
        self.pause_button.setEnabled(True)
        self.pause_button.setText("Pause")
        self.abort_button.setEnabled(True)
        self.status.setText(f"{p.mode} training with {p.optimizer}" + (f", rho {p.rho:g}" if "sam" in p.optimizer else ""))
        return job

    def _wire(self, job) -> None:
        job.progress.connect(self._progress)
        job.succeeded.connect(self._done)
        job.aborted.connect(lambda why: self._ended(f"aborted: {why}"))
        job.failed.connect(lambda why: self._ended(f"<span style='color:#c62828'>failed: {why}</span>; outputs are safe"))

    def toggle_pause(self) -> None:
        if self.job is None:
            return
        control = self.job.control
        if control.paused:
            control.resume()
            self.pause_button.setText("Pause")
            self.status.setText("resumed")
        else:
            control.pause()
            self.pause_button.setText("Resume")
            self.status.setText("paused (between steps; the hardware holds its last setting)")

    def abort(self) -> None:
        if self.job is not None:
            self.job.control.abort("training aborted by the operator")
            self.status.setText("aborting: outputs to safe state, saving the run so far…")

    def _progress(self, kind: str, payload) -> None:
        if kind == "step":
            epoch, step, steps, hw = payload
            self.step_bar.setRange(0, steps)
            self.step_bar.setValue(step)
            self.queries.setText(f"hardware queries: {hw}")
        elif kind == "epoch":
            rec = payload
            h = self.hist
            h["epoch"].append(rec["epoch"])
            h["loss"].append(rec["loss"])
            h["train"].append(rec["train_accuracy"])
            h["test"].append(rec["test_accuracy"] if rec["test_accuracy"] is not None else float("nan"))
            h["hw"].append(rec["hardware_batches"])
            self.loss_curve.setData(h["epoch"], h["loss"])
            self.train_curve.setData(h["epoch"], h["train"])
            self.test_curve.setData(h["epoch"], h["test"])
            self.hw_bars.setOpts(x=h["epoch"], height=h["hw"])
            self.epoch_bar.setValue(rec["epoch"])

    def _ended(self, text: str) -> None:
        self.pause_button.setEnabled(False)
        self.pause_button.setText("Pause")
        self.abort_button.setEnabled(False)
        self.status.setText(text)

    def _done(self, result: TrainingResult) -> None:
        self.result = result
        self.queries.setText(f"hardware queries: {result.hardware_batches}")
        last = result.epochs[-1] if result.epochs else None
        summary = (f"; last epoch: loss {last['loss']:.3f}, train {last['train_accuracy']:.3f}, "
                   f"test {last['test_accuracy']:.3f}") if last else ""
        if result.status == "aborted":
            self._ended(f"<b>aborted</b> ({result.reason}); outputs safe; run {result.run} saved to {result.path}"
                        f"{summary}; continue it with <tt>labsat train --resume {result.run}</tt>")
        else:
            self._ended(f"<b>done</b> (run {result.run}); saved {result.path}{summary}")
        self.run_saved.emit(str(result.path))
