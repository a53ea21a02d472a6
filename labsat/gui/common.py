"""Small shared widgets and helpers for the panels."""
from __future__ import annotations

import pyqtgraph as pg
from PySide6.QtWidgets import QDoubleSpinBox, QLabel, QSpinBox

COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"]


def color(i: int) -> str:
    return COLORS[i % len(COLORS)]


def plot(title: str, x: str = "", y: str = "", legend: bool = False) -> pg.PlotWidget:
    w = pg.PlotWidget(title=title)
    w.setLabel("bottom", x)
    w.setLabel("left", y)
    w.showGrid(x=True, y=True, alpha=0.25)
    for side in ("bottom", "left"):
        w.getAxis(side).enableAutoSIPrefix(False)  # units are in the labels; no "(x0.001)"

    w.setMinimumSize(320, 220)
    if legend:
        legend = w.addLegend(offset=(-10, 10))
        legend.setBrush(pg.mkBrush(255, 255, 255, 210))
    return w


def spin(value: int, lo: int, hi: int, step: int = 1) -> QSpinBox:
    s = QSpinBox()
    s.setRange(lo, hi)
    s.setSingleStep(step)
    s.setValue(value)
    return s


def dspin(value: float, lo: float, hi: float, step: float, decimals: int = 3) -> QDoubleSpinBox:
    s = QDoubleSpinBox()
    s.setDecimals(decimals)
    s.setRange(lo, hi)
    s.setSingleStep(step)
    s.setValue(value)
    return s


def heading(text: str) -> QLabel:
    label = QLabel(f"<b>{text}</b>")
    return label
