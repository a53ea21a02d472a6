"""Log pane: labsat's log records (and, on request, the instrument I/O trace) as they happen.

Fed by the same Python logging as ``labsat --log-level`` and ``--trace`` (loggers ``labsat`` and
``labsat.io``): a handler turns each record into a Qt signal, so records from worker threads reach the
pane on the GUI thread.
"""
from __future__ import annotations

import logging

from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QFont
from PySide6.QtWidgets import QCheckBox, QComboBox, QHBoxLayout, QLabel, QPlainTextEdit, QPushButton, QVBoxLayout, QWidget

from labsat.drivers.trace import io_log

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


class _Emitter(QObject):
    record = Signal(str)


class QtLogHandler(logging.Handler):
    def __init__(self):
        super().__init__()
        self.emitter = _Emitter()
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.emitter.record.emit(self.format(record))
        except RuntimeError:  # the pane is gone
            pass


class LogPanel(QWidget):
    MAX_LINES = 5000

    def __init__(self, parent=None, level: str = "INFO"):
        super().__init__(parent)
        self.text = QPlainTextEdit()
        self.text.setReadOnly(True)
        self.text.setMaximumBlockCount(self.MAX_LINES)
        self.text.setFont(QFont("monospace", 9))
        self.level = QComboBox()
        self.level.addItems(LEVELS)
        self.level.setCurrentText(level)
        self.level.currentTextChanged.connect(self.set_level)
        self.io = QCheckBox("instrument I/O")
        self.io.setToolTip("show every message to and from the instruments (the --trace lines)")
        self.io.toggled.connect(self.show_io)
        clear = QPushButton("Clear")
        clear.clicked.connect(self.text.clear)
        top = QHBoxLayout()
        top.addWidget(QLabel("level"))
        top.addWidget(self.level)
        top.addWidget(self.io)
        top.addStretch(1)
        top.addWidget(clear)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addLayout(top)
        layout.addWidget(self.text, 1)
        self.setMinimumHeight(170)

        self.handler = QtLogHandler()
        self.handler.addFilter(lambda r: not r.name.startswith(io_log.name))  # I/O lines: only via the checkbox
        self.handler.emitter.record.connect(self.text.appendPlainText)
        self.io_handler = QtLogHandler()
        self.io_handler.emitter.record.connect(self.text.appendPlainText)
        self._logger = logging.getLogger("labsat")
        self._logger.addHandler(self.handler)
        self._io_level = None
        self.set_level(level)

    def set_level(self, name: str) -> None:
        self.handler.setLevel(getattr(logging, name))
        if self._logger.getEffectiveLevel() > self.handler.level:
            self._logger.setLevel(self.handler.level)

    def show_io(self, on: bool) -> None:
        if on:
            if self._io_level is None:
                self._io_level = (io_log.level, io_log.propagate)
            io_log.addHandler(self.io_handler)
            io_log.setLevel(logging.DEBUG)
            io_log.propagate = False  # to this pane (and a --trace file), not to the console
        else:
            io_log.removeHandler(self.io_handler)
            if self._io_level is not None:
                io_log.setLevel(self._io_level[0])
                io_log.propagate = self._io_level[1]
                self._io_level = None

    def lines(self) -> list[str]:
        return self.text.toPlainText().splitlines()

    def detach(self) -> None:
        """Stop listening (the window closes)."""
        self.show_io(False)
        self._logger.removeHandler(self.handler)
