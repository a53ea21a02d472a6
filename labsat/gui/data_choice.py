"""The data set a training run uses: the built-in digits, MNIST IDX files, or a user's NPZ / CSV.

A small form row (kind + path + Browse) whose :meth:`DataChoice.spec` is the same ``--data`` spec the
command line takes (:func:`labsat.data.load_dataset`), so both front doors load data one way.
:meth:`DataChoice.check` loads it once and shows the one-line error of a bad file.
"""
from __future__ import annotations

from PySide6.QtWidgets import QComboBox, QFileDialog, QHBoxLayout, QLabel, QLineEdit, QPushButton, QVBoxLayout, QWidget

KINDS = {"digits (built in)": "digits", "MNIST IDX folder": "mnist", "NPZ file (x, y)": "npz",
         "CSV file (features, label)": "csv"}


class DataChoice(QWidget):
    def __init__(self, parent=None):
        super().__init__(parent)
        self.kind = QComboBox()
        self.kind.addItems(list(KINDS))
        self.kind.currentTextChanged.connect(self._kind_changed)
        self.path = QLineEdit()
        self.path.setPlaceholderText("path")
        self.browse = QPushButton("Browse…")
        self.browse.clicked.connect(self._browse)
        self.error = QLabel("")
        self.error.setWordWrap(True)
        self.error.setStyleSheet("color: #c62828;")
        row = QHBoxLayout()
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.kind)
        row.addWidget(self.path, 1)
        row.addWidget(self.browse)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(row)
        layout.addWidget(self.error)
        self._kind_changed(self.kind.currentText())

    def _kind_changed(self, text: str) -> None:
        needs_path = KINDS[text] != "digits"
        self.path.setEnabled(needs_path)
        self.browse.setEnabled(needs_path)
        self.error.setText("")

    def _browse(self) -> None:  # pragma: no cover - a modal dialog
        kind = KINDS[self.kind.currentText()]
        if kind == "mnist":
            chosen = QFileDialog.getExistingDirectory(self, "MNIST IDX folder")
        else:
            chosen, _ = QFileDialog.getOpenFileName(self, f"{kind.upper()} file", "", f"*.{kind}")
        if chosen:
            self.path.setText(chosen)

    def set_spec(self, spec: str) -> None:
        kind, _, path = spec.partition(":")
        for label, k in KINDS.items():
            if k == kind:
                self.kind.setCurrentText(label)
        self.path.setText(path)

    def spec(self) -> str:
        kind = KINDS[self.kind.currentText()]
        return "digits" if kind == "digits" else f"{kind}:{self.path.text().strip()}"

    def check(self, features: int) -> str | None:
        """Load the chosen data once; the error line (also shown), or None when it loads."""
        from labsat.data import load_dataset

        try:
            load_dataset(self.spec(), features)
        except (ValueError, OSError) as exc:
            self.error.setText(str(exc))
            return str(exc)
        self.error.setText("")
        return None
