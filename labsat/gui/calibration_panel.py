"""Calibration panel: sweep the chip, fit its twin, compare measured and predicted powers, save the fit."""
from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Signal
from PySide6.QtWidgets import (QCheckBox, QFormLayout, QGridLayout, QHBoxLayout, QLabel, QProgressBar,
                               QPushButton, QVBoxLayout, QWidget)

from labsat import defaults
from labsat.workflows.calibrate import banded, default_budget

from .common import dspin, heading, plot, spin
from .jobs import CalibrationParams, CalibrationResult, run_calibration, save_calibration_result
from .runner import JobRunner


def _fit_steps() -> dict:
    """The mesh fit's own step counts (:func:`labsat.calibration.fit_twin`'s defaults)."""
    import inspect

    from labsat.calibration import fit_twin

    params = inspect.signature(fit_twin).parameters
    return {k: params[k].default for k in ("adam_steps", "lbfgs_steps")}


class CalibrationPanel(QWidget):
    saved = Signal(str)  # path of the accepted calibration

    def __init__(self, runner: JobRunner, parent=None):
        super().__init__(parent)
        self.runner = runner
        self.bench = runner.bench
        self.job = None
        self.result: CalibrationResult | None = None
        self.saved_path: str | None = None

        settings, inputs = default_budget(self.bench, self.bench.layer)  # follows the layer's size, as the CLI
        self.settings = spin(settings, 2, 100000)
        self.inputs = spin(inputs, 1, 4096)
        self.holdout = dspin(defaults.CAL_HOLDOUT, 0.05, 0.9, 0.05, 2)
        fit_steps = _fit_steps()
        self.adam_steps = spin(fit_steps["adam_steps"], 1, 100000, 50)
        self.lbfgs_steps = spin(fit_steps["lbfgs_steps"], 0, 10000, 10)
        form = QFormLayout()
        form.addRow("heater settings", self.settings)
        form.addRow("inputs per setting", self.inputs)
        form.addRow("held-out fraction", self.holdout)
        form.addRow("Adam steps", self.adam_steps)
        form.addRow("L-BFGS iterations", self.lbfgs_steps)
        # Clements meshes above 8 modes: the MZI-by-MZI start before the bands, with its own first-fit step counts
        self.self_configure = QCheckBox("self-configuring start")
        self.self_configure.setToolTip("read every MZI's bar point, couplers, crosstalk links and loop phases from the "
                                       "instruments before the fit (~290 N² readings more); needed from ~40 modes "
                                       "when the phase offsets are ~0.3 rad (calibration/README.md)")
        self.self_configure.setEnabled(banded(self.bench, self.bench.layer))
        self.self_configure.toggled.connect(self._start_steps)
        form.addRow("", self.self_configure)
        if self.bench.kind().fit_twin is not None:  # the layer's kind brings its own fit and step counts
            for w in (self.adam_steps, self.lbfgs_steps):
                w.setEnabled(False)
                w.setToolTip(f"the {self.bench.kind().name} kind fits its twin with its own step counts")

        self.run_button = QPushButton("Run calibration")
        self.run_button.clicked.connect(self.start)
        self.abort_button = QPushButton("Abort")
        self.abort_button.setEnabled(False)
        self.abort_button.clicked.connect(lambda: self.runner.abort("calibration aborted by the operator"))
        self.accept_button = QPushButton("Accept and save fit")
        self.accept_button.setEnabled(False)
        self.accept_button.clicked.connect(self.accept_fit)
        self.measure_bar = QProgressBar()
        self.measure_bar.setFormat("sweep %v / %m settings")
        self.fit_bar = QProgressBar()
        self.fit_bar.setFormat("fit %v / %m steps")
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.summary = QLabel("")
        self.summary.setWordWrap(True)

        buttons = QHBoxLayout()
        buttons.addWidget(self.run_button)
        buttons.addWidget(self.abort_button)
        side = QVBoxLayout()
        side.addWidget(heading("Calibration sweep"))
        side.addLayout(form)
        side.addLayout(buttons)
        side.addWidget(self.measure_bar)
        side.addWidget(self.fit_bar)
        side.addWidget(self.status)
        side.addWidget(self.summary)
        side.addWidget(self.accept_button)
        side.addStretch(1)
        side_w = QWidget()
        side_w.setLayout(side)
        side_w.setFixedWidth(300)

        self.live_plot = plot("sweep: mean detector power, latest setting", "output port", "normalised power")
        self.live_bars = pg.BarGraphItem(x=np.arange(8), height=np.zeros(8), width=0.7, brush="#ff7f0e")
        self.live_plot.addItem(self.live_bars)
        self.loss_plot = plot("twin fit (training MSE)", "step", "MSE")
        self.loss_plot.setLogMode(y=True)
        self.loss_curve = self.loss_plot.plot(pen=pg.mkPen("#1f77b4", width=2))
        self.loss_x: list = []
        self.loss_y: list = []
        self.scatter_plot = plot("held-out settings: predicted vs measured", "measured power", "predicted power",
                                 legend=True)
        self.resid_plot = plot("held-out residual (predicted − measured)", "residual", "count", legend=True)

        grid = QGridLayout()
        grid.addWidget(self.live_plot, 0, 0)
        grid.addWidget(self.loss_plot, 0, 1)
        grid.addWidget(self.scatter_plot, 1, 0)
        grid.addWidget(self.resid_plot, 1, 1)

        layout = QHBoxLayout(self)
        layout.addWidget(side_w)
        layout.addLayout(grid, 1)

    def _start_steps(self, on: bool) -> None:
        """The first fit's step counts follow the start (a longer, gentler first fit after the self-configured one)."""
        from labsat.calibration.progressive import ProgressivePlan

        plan = ProgressivePlan(settings=0, inputs=0)
        steps = (plan.start_adam_steps, plan.start_lbfgs_steps) if on else tuple(_fit_steps().values())
        self.adam_steps.setValue(steps[0])
        self.lbfgs_steps.setValue(steps[1])

    def params(self) -> CalibrationParams:
        return CalibrationParams(settings=self.settings.value(), inputs=self.inputs.value(),
                                 holdout=self.holdout.value(), adam_steps=self.adam_steps.value(),
                                 lbfgs_steps=self.lbfgs_steps.value(),
                                 self_configure=self.self_configure.isEnabled() and self.self_configure.isChecked())

    def set_busy(self, busy: bool) -> None:
        self.run_button.setEnabled(not busy)

    # --- run ---
    def start(self):
        p = self.params()
        try:
            p.validate()
        except ValueError as exc:
            self.status.setText(f"<span style='color:#c62828'>{exc}</span>")
            return None
        self.result = None
        self.accept_button.setEnabled(False)
        self.measure_bar.setRange(0, p.settings)
        self.measure_bar.setValue(0)
        self.fit_bar.setRange(0, p.adam_steps + p.lbfgs_steps)
        self.fit_bar.setValue(0)
        self.loss_x, self.loss_y = [], []
        self.loss_curve.setData([], [])
        self.scatter_plot.clear()
        self.resid_plot.clear()
        job = self.runner.start(run_calibration, p, "calibration", wire=self._wire)
        if job is None:
            self.status.setText("cannot start: " + ("connect the station first" if not self.bench.connected
                                                    else "another job is running"))
            return None
        self.job = job
        self.abort_button.setEnabled(True)
        self.status.setText("measuring…")
        return job

    def _wire(self, job) -> None:
        job.progress.connect(self._progress)
        job.succeeded.connect(self._done)
        job.aborted.connect(lambda why: self._ended(f"aborted: {why}; outputs are safe, nothing was saved"))
        job.failed.connect(lambda why: self._ended(f"<span style='color:#c62828'>failed: {why}</span>"))

    def _progress(self, kind: str, payload) -> None:
        if kind == "start":  # the self-configuring start, column by column
            k, n = payload
            self.measure_bar.setFormat("self-configuring: column %v / %m")
            self.measure_bar.setRange(0, n)
            self.measure_bar.setValue(k)
        elif kind == "measure":
            if self.measure_bar.format() != "sweep %v / %m settings":
                self.measure_bar.setFormat("sweep %v / %m settings")
                self.measure_bar.setRange(0, payload[1])
            k, n = payload
            self.measure_bar.setValue(k)
            if k == n:
                self.status.setText("fitting the twin…")
        elif kind == "powers":
            p = np.asarray(payload)
            self.live_bars.setOpts(x=np.arange(len(p)), height=p)
        elif kind == "fit":
            i, total, loss = payload
            self.fit_bar.setMaximum(total)  # a kind's own fit has its own step count
            self.fit_bar.setValue(i)
            self.loss_x.append(i)
            self.loss_y.append(max(loss, 1e-12))
            self.loss_curve.setData(self.loss_x, self.loss_y)

    def _ended(self, text: str) -> None:
        self.abort_button.setEnabled(False)
        self.status.setText(text)

    def _done(self, result: CalibrationResult) -> None:
        self.result = result
        self._ended("fit done: check the held-out comparison, then accept and save it")
        self.accept_button.setEnabled(True)
        meas = result.holdout_measured.ravel()
        for name, pred, col in (("nominal twin", result.holdout_nominal, "#9e9e9e"),
                                ("fitted twin", result.holdout_fitted, "#1f77b4")):
            self.scatter_plot.plot(meas, pred.ravel(), pen=None, symbol="o", symbolSize=4,
                                   symbolPen=None, symbolBrush=pg.mkBrush(col), name=name)
        lo = float(min(0.0, meas.min(), result.holdout_fitted.min()))  # balanced detectors: signed
        hi = float(max(meas.max(), result.holdout_fitted.max(), 1e-9))
        self.scatter_plot.plot([lo, hi], [lo, hi], pen=pg.mkPen("k", width=1, style=pg.QtCore.Qt.DashLine), name="ideal")
        r_nom = (result.holdout_nominal - result.holdout_measured).ravel()
        r_fit = (result.holdout_fitted - result.holdout_measured).ravel()
        lim = float(np.percentile(np.abs(r_nom), 99)) or 1e-3
        edges = np.linspace(-lim, lim, 61)
        for name, r, col in (("nominal", r_nom, (158, 158, 158, 120)), ("fitted", r_fit, (31, 119, 180, 170))):
            hist, _ = np.histogram(np.clip(r, -lim, lim), bins=edges)
            self.resid_plot.plot(edges, hist, stepMode="center", fillLevel=0, brush=col,
                                 pen=pg.mkPen(col[:3]), name=name)
        res = result.meta["residuals"]
        self.summary.setText(
            f"<b>{result.device}</b>: held-out RMSE nominal {res['nominal_holdout']['rmse']:.4f} → "
            f"fitted {res['fitted_holdout']['rmse']:.4f} (max |err| {res['fitted_holdout']['max_abs']:.4f}); "
            f"{len(result.data)} settings × {result.data.x.shape[1]} inputs")

    def accept_fit(self) -> str | None:
        if self.result is None:
            return None
        try:
            path = save_calibration_result(self.bench, self.result)
        except Exception as exc:
            self.status.setText(f"<span style='color:#c62828'>could not save: {exc}</span>")
            return None
        self.saved_path = str(path)
        self.accept_button.setEnabled(False)
        self.status.setText(f"saved {path}")
        self.saved.emit(str(path))
        return str(path)
