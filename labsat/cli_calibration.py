"""Calibration commands (registered on the labsat CLI): drift check, plots, learned twin; a front door
over :mod:`labsat.calibration` (which sits below the kinds and imports no front door).

``labsat calibrate --check`` (in labsat/cli.py) calls :func:`check_command`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer



def check_command(station, calibration, factor: float = 2.0, settings: int = 8, inputs: int = 16,
                  console=None) -> int:
    """Print the verdict of :func:`labsat.workflows.calibrate.check_station`; return 0 valid / 1 stale."""
    from labsat.workflows.calibrate import check_station

    result, record = check_station(station, calibration, settings=settings, inputs=inputs, factor=factor)
    if console is not None:
        style = "bold green" if result.valid else "bold red"
        console.print(f"calibration [bold]{record['path']}[/] ({record.get('created_utc', '?')})")
        console.print(f"[{style}]{result.summary()}[/]")
    return 0 if result.valid else 1


def register(app: typer.Typer) -> None:
    from labsat.cli_common import KindOpt, SeedOpt, StationOpt, console, open_station
    from labsat.cli_common import user_errors as _user_errors

    @app.command("calibration-plot")
    def calibration_plot(station: Path = StationOpt, chip_seed: Optional[int] = SeedOpt,
                         kind: Optional[str] = KindOpt,
                         calibration: Optional[Path] = typer.Option(None, help="calibration file (default: latest)"),
                         settings: int = typer.Option(16, help="fresh (held-out) settings to measure"),
                         inputs: int = typer.Option(16, help="inputs per setting"),
                         out: Path = typer.Option(Path("calibration/plots"), help="folder for the PNGs")):
        """Measured vs predicted on fresh held-out settings, and the residual histogram (PNG)."""
        from labsat.calibration.measure import measure
        from labsat.calibration.plots import plot_fit
        from labsat.kinds import calibration_for, kind_of

        with _user_errors(), open_station(station, chip_seed, kind) as st:
            layer = st.layer_names[0]
            record, _ = calibration_for(st.config, layer, st.device_id(), calibration)  # checked
            twin = kind_of(st.config, layer).make_twin(st.config, layer)
            twin.load_fitted_state(record["twin"])
            fresh = measure(st.layer(), settings, inputs, seed=12345)
            paths = plot_fit(twin, fresh, out, title=f"{st.device_id()} ({Path(record['path']).stem})")
        for p in paths:
            console.print(f"wrote [bold]{p}[/]")

    @app.command("learn-twin")
    def learn_twin(station: Path = StationOpt, chip_seed: Optional[int] = SeedOpt, kind: Optional[str] = KindOpt,
                   settings: int = typer.Option(256, help="random control settings to measure"),
                   inputs: int = typer.Option(16, help="inputs per setting"),
                   sigma: Optional[float] = typer.Option(None, help="sample Gaussian around mid-range controls "
                                                         "with this spread (default: uniform over [0, 1])"),
                   epochs: int = typer.Option(150), hidden: int = typer.Option(128),
                   out: Optional[Path] = typer.Option(None, help="twin file (default: <calibration_dir>/<device>/learned.pt)")):
        """Train a neural twin (MLP) of the station's layer from random control/input readings."""
        import numpy as np

        from labsat.calibration.learned import collect, fit_learned_twin

        with _user_errors(), open_station(station, chip_seed, kind) as st:
            hw = st.layer()
            center = None if sigma is None else np.full(hw.n_controls, 0.5)
            data = collect(hw, settings, inputs, seed=0, center=center, sigma=sigma or 0.05)
            fit = fit_learned_twin(data, hidden=hidden, epochs=epochs)
            directory = st.config.resolve(st.config.station.calibration_dir)
            path = out or directory / st.device_id() / "learned.pt"
            fit.twin.save(path, {"device": st.device_id(), "report": fit.report, "settings": settings,
                                 "inputs_per_setting": inputs, "sigma": sigma})
        r = fit.report
        console.print(f"held-out RMSE {r['rmse']:.4f} (constant predictor {r['constant_rmse']:.4f}) "
                      f"on {r['n']} values; saved [bold]{path}[/]")
