"""``labsat gui``: the lab workstation window (pyqtgraph + PySide6).

Registered on the typer app by :mod:`labsat.cli` through :func:`register`. Qt is imported only when
the command runs, so the CLI works where no Qt is installed.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def run_gui(station: Path, chip_seed: Optional[int] = None, connect: bool = True,
            layer: Optional[str] = None) -> int:
    try:
        from PySide6.QtWidgets import QApplication
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise RuntimeError("the GUI needs PySide6 and pyqtgraph: pip install 'labsat[gui]'") from exc
    from .window import MainWindow

    import signal

    from PySide6.QtCore import QTimer

    app = QApplication.instance() or QApplication(["labsat gui"])
    window = MainWindow(station, chip_seed=chip_seed, layer=layer)
    window.show()
    if connect:
        window.connect_station()
    # Ctrl-C / SIGTERM in the terminal close the window the normal way (job aborted, outputs safe);
    # a timer lets Python see the signal while Qt's event loop runs
    previous = {s: signal.signal(s, lambda *_: window.close()) for s in (signal.SIGINT, signal.SIGTERM)}
    tick = QTimer()
    tick.timeout.connect(lambda: None)
    tick.start(200)
    try:
        return app.exec()
    finally:
        tick.stop()
        for s, handler in previous.items():
            signal.signal(s, handler)


def register(app: typer.Typer) -> None:
    @app.command("gui")
    def gui(station: Path = typer.Option(Path("instruments.yaml"), "--station", "-s",
                                         help="station description (instruments.yaml)"),
            chip_seed: Optional[int] = typer.Option(None, "--chip-seed",
                                                    help="simulated backend: which virtual chip"),
            layer: Optional[str] = typer.Option(None, "--layer",
                                                help="the physical layer the panels work on (default: the first)"),
            connect: bool = typer.Option(True, "--connect/--no-connect", help="connect the station on start")):
        """Open the lab workstation: station, calibration, training and robustness panels."""
        from labsat.config import ConfigError

        try:
            code = run_gui(station, chip_seed, connect, layer)
        except (ConfigError, FileNotFoundError, RuntimeError, KeyError) as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2)
        raise typer.Exit(code)
