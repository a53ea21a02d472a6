"""Robustness panel: saved models under drift, on another chip, and their loss landscape."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtWidgets import (QCheckBox, QComboBox, QFileDialog, QFormLayout, QGridLayout, QHBoxLayout,
                               QLabel, QListWidget, QListWidgetItem, QPushButton, QVBoxLayout, QWidget)

from .common import color, dspin, heading, plot, spin
from .jobs import RobustnessParams, run_robustness
from .runner import JobRunner


class RobustnessPanel(QWidget):
    def __init__(self, runner: JobRunner, parent=None):
        super().__init__(parent)
        self.runner = runner
        self.bench = runner.bench
        self.job = None
        self.results: dict | None = None

        self.models = QListWidget()
        self.models.setMinimumHeight(110)
        refresh = QPushButton("Refresh")
        refresh.clicked.connect(self.refresh_models)
        add = QPushButton("Add file…")
        add.clicked.connect(self._add_file)
        model_buttons = QHBoxLayout()
        model_buttons.addWidget(refresh)
        model_buttons.addWidget(add)

        self.drift_max = dspin(2.0, 0.0, 50.0, 0.5, 2)
        self.drift_max.setSuffix(" K")
        self.drift_points = spin(9, 2, 200)
        self.radius = dspin(0.5, 0.01, 10.0, 0.1, 2)
        self.slice_points = spin(21, 3, 501)
        self.surface = QCheckBox("2-D landscape")
        self.surface.setChecked(True)
        self.grid_points = spin(11, 3, 101)
        self.landscape_on = QComboBox()
        self.landscape_on.addItems(["twin", "hardware"])
        self.transfer = QCheckBox("test on another chip (seed)")
        self.transfer.setChecked(self.bench.config.station.backend == "sim")
        self.transfer.setEnabled(self.bench.config.station.backend == "sim")
        self.transfer_seed = spin(2, 0, 10**6)
        form = QFormLayout()
        form.addRow("drift up to", self.drift_max)
        form.addRow("drift points", self.drift_points)
        form.addRow("slice radius (control units)", self.radius)
        form.addRow("slice points", self.slice_points)
        form.addRow(self.surface, self.grid_points)
        form.addRow("landscape evaluated on", self.landscape_on)
        form.addRow(self.transfer, self.transfer_seed)

        self.run_button = QPushButton("Run evaluations")
        self.run_button.clicked.connect(self.start)
        self.abort_button = QPushButton("Abort")
        self.abort_button.setEnabled(False)
        self.abort_button.clicked.connect(lambda: self.runner.abort("robustness run aborted by the operator"))
        buttons = QHBoxLayout()
        buttons.addWidget(self.run_button)
        buttons.addWidget(self.abort_button)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.transfer_label = QLabel("")
        self.transfer_label.setWordWrap(True)

        side = QVBoxLayout()
        side.addWidget(heading("Saved models (tick to compare)"))
        side.addWidget(self.models)
        side.addLayout(model_buttons)
        side.addLayout(form)
        side.addLayout(buttons)
        side.addWidget(self.status)
        side.addWidget(self.transfer_label)
        side.addStretch(1)
        side_w = QWidget()
        side_w.setLayout(side)
        side_w.setFixedWidth(330)

        self.drift_plot = plot("test accuracy on hardware vs drift", "temperature change (K)", "accuracy", legend=True)
        self.drift_plot.setYRange(0, 1)
        self.slice_plot = plot("loss along a random direction in control space", "step α (control units)",
                               "test loss", legend=True)
        # two 2-D maps side by side (e.g. plain vs SAM), one colour scale
        cmap = pg.colormap.get("viridis")
        self.surface_views = []
        surf_row = QHBoxLayout()
        for k in range(2):
            pw = plot("2-D loss landscape", "α (direction 1)", "β (direction 2)")
            image = pg.ImageItem()
            image.setColorMap(cmap)
            pw.addItem(image)
            pw.addItem(pg.ScatterPlotItem([0], [0], symbol="+", size=14, pen=pg.mkPen("w", width=2)))
            choice = QComboBox()
            choice.currentTextChanged.connect(self._show_surfaces)
            box = QVBoxLayout()
            row = QHBoxLayout()
            row.addWidget(QLabel("landscape of" if k == 0 else "next to"))
            row.addWidget(choice, 1)
            box.addLayout(row)
            box.addWidget(pw, 1)
            surf_row.addLayout(box, 1)
            self.surface_views.append((choice, pw, image))
        self.surface_bar = pg.ColorBarItem(colorMap=cmap, label="test loss", interactive=False)
        self.surface_bar.setImageItem([v[2] for v in self.surface_views],
                                      insert_in=self.surface_views[-1][1].getPlotItem())
        surf_w = QWidget()
        surf_w.setLayout(surf_row)

        grid = QGridLayout()
        grid.addWidget(self.drift_plot, 0, 0)
        grid.addWidget(self.slice_plot, 0, 1)
        grid.addWidget(surf_w, 1, 0, 1, 2)

        layout = QHBoxLayout(self)
        layout.addWidget(side_w)
        layout.addLayout(grid, 1)
        self.curves, self.data, self._labels = {}, {}, []
        self.refresh_models()

    # --- models ---
    def refresh_models(self) -> None:
        checked = set(self.selected_models())
        self.models.clear()
        runs = self.bench.runs_dir()
        files = sorted(runs.rglob("*.pt"), key=lambda p: p.stat().st_mtime) if runs.exists() else []
        for f in files:
            self._add_item(str(f), str(f) in checked)

    def _add_item(self, path: str, checked: bool) -> None:
        for i in range(self.models.count()):
            if self.models.item(i).data(Qt.UserRole) == path:
                self.models.item(i).setCheckState(Qt.Checked if checked else Qt.Unchecked)
                return
        item = QListWidgetItem(Path(path).name)
        item.setToolTip(path)
        item.setData(Qt.UserRole, path)
        item.setFlags(item.flags() | Qt.ItemIsUserCheckable)
        item.setCheckState(Qt.Checked if checked else Qt.Unchecked)
        self.models.addItem(item)

    def add_model(self, path: str, checked: bool = True) -> None:
        self._add_item(str(path), checked)

    def _add_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "model file", str(self.bench.runs_dir()), "models (*.pt)")
        if path:
            self.add_model(path)

    def selected_models(self) -> list[str]:
        return [self.models.item(i).data(Qt.UserRole) for i in range(self.models.count())
                if self.models.item(i).checkState() == Qt.Checked]

    def params(self) -> RobustnessParams:
        return RobustnessParams(models=self.selected_models(), drift_max_k=self.drift_max.value(),
                                drift_points=self.drift_points.value(), landscape_radius=self.radius.value(),
                                landscape_points=self.slice_points.value(), landscape_2d=self.surface.isChecked(),
                                grid_points=self.grid_points.value(), landscape_on=self.landscape_on.currentText(),
                                transfer_seed=self.transfer_seed.value() if self.transfer.isChecked() else None)

    def set_busy(self, busy: bool) -> None:
        self.run_button.setEnabled(not busy)

    # --- run ---
    def start(self):
        p = self.params()
        if not p.models:
            self.status.setText("tick at least one saved model")
            return None
        self.drift_plot.clear()
        self.slice_plot.clear()
        for choice, pw, image in self.surface_views:
            choice.clear()
            image.clear()
        self.curves, self.data, self._labels = {}, {}, []
        self.transfer_label.setText("")
        job = self.runner.start(run_robustness, p, "robustness", wire=self._wire)
        if job is None:
            self.status.setText("cannot start: " + ("connect the station first" if not self.bench.connected
                                                    else "another job is running"))
            return None
        self.job = job
        self.abort_button.setEnabled(True)
        self.status.setText("evaluating…")
        return job

    def _wire(self, job) -> None:
        job.progress.connect(self._progress)
        job.succeeded.connect(self._done)
        job.aborted.connect(lambda why: self._ended(f"aborted: {why}"))
        job.failed.connect(lambda why: self._ended(f"<span style='color:#c62828'>failed: {why}</span>"))

    def _curve(self, plot_widget, kind: str, label: str):
        key = (kind, label)
        if key not in self.curves:
            if label not in self._labels:
                self._labels.append(label)
            c = color(self._labels.index(label))
            self.curves[key] = plot_widget.plot(pen=pg.mkPen(c, width=2), symbol="o", symbolSize=5,
                                                symbolBrush=c, name=label)
            self.data[key] = ([], [])
        return self.curves[key], self.data[key]

    def _progress(self, kind: str, payload) -> None:
        if kind == "drift":
            label, dk, acc = payload
            curve, (xs, ys) = self._curve(self.drift_plot, "drift", label)
            xs.append(dk)
            ys.append(acc)
            curve.setData(xs, ys)
            self.status.setText(f"{label}: drift {dk:.2f} K → accuracy {acc:.3f}")
        elif kind == "slice":
            label, a, loss = payload
            curve, (xs, ys) = self._curve(self.slice_plot, "slice", label)
            xs.append(a)
            ys.append(loss)
            curve.setData(xs, ys)
            self.status.setText(f"{label}: loss slice α={a:+.2f}")
        elif kind == "surface_row":
            label, i, n = payload
            self.status.setText(f"{label}: 2-D landscape row {i + 1}/{n}")
        elif kind == "transfer":
            label, acc = payload
            self.transfer_label.setText(self.transfer_label.text() + f"{label}: {acc:.3f} on the other chip<br>")

    def _ended(self, text: str) -> None:
        self.abort_button.setEnabled(False)
        self.status.setText(text)

    def _done(self, results: dict) -> None:
        self.results = results
        lines = []
        for label, res in results["models"].items():
            acc0 = res["drift_accuracy"][0] if res.get("drift_accuracy") else res.get("accuracy")
            line = f"<b>{label}</b> ({res.get('optimizer')}): {acc0:.3f} here"
            if "transfer_accuracy" in res:
                line += f", {res['transfer_accuracy']:.3f} on {res['transfer_device']}"
            lines.append(line)
        self.transfer_label.setText("test accuracy on hardware:<br>" + "<br>".join(lines))
        labels = [k for k, r in results["models"].items() if "surface" in r]
        for k, (choice, _, _) in enumerate(self.surface_views):
            choice.blockSignals(True)
            choice.clear()
            choice.addItems(labels)
            if labels:
                choice.setCurrentIndex(min(k, len(labels) - 1))
            choice.blockSignals(False)
        self._show_surfaces()
        self._ended("done")

    def _show_surfaces(self, *_) -> None:
        if not self.results:
            return
        grid = np.asarray(self.results["grid"])
        step = grid[1] - grid[0]
        shown = []
        for choice, pw, image in self.surface_views:
            label = choice.currentText()
            res = self.results["models"].get(label, {})
            if "surface" not in res:
                image.clear()
                continue
            surf = np.asarray(res["surface"])
            image.setImage(surf, autoLevels=False)
            image.setRect(pg.QtCore.QRectF(grid[0] - step / 2, grid[0] - step / 2, step * len(grid), step * len(grid)))
            pw.setTitle(f"{label} ({res.get('optimizer')})")
            shown.append(surf)
        if shown:
            self.surface_bar.setLevels((float(min(np.min(x) for x in shown)), float(max(np.max(x) for x in shown))))
