"""What every command line front door shares (``labsat``'s own commands and those that feature modules
register): the console, the common options, opening a station, and turning user errors into one line."""
from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

console = Console()

StationOpt = typer.Option(Path("instruments.yaml"), "--station", "-s", help="station description (instruments.yaml)")
SeedOpt = typer.Option(None, "--chip-seed", help="simulated backend: which virtual chip (overrides the file)")


def _kind_names() -> str:
    from labsat.kinds import KINDS

    return ", ".join(k.name for k in KINDS.values())


KindOpt = typer.Option(None, "--kind", help=f"which physical network of the station: {_kind_names()}; "
                       "default: its first layer")


def _data_help() -> str:
    from labsat.data import DATA_HELP

    return DATA_HELP


DataOpt = typer.Option(None, "--data", help=f"data set: {_data_help()}; default: digits")
LrOpt = typer.Option(None, "--lr", help="learning rate (default: the layer's: 0.03 up to 8 modes, smaller for larger "
                     "meshes, labsat.defaults.lr_for)")
JsonOpt = typer.Option(False, "--json", help="print the result as JSON on standard output (progress on standard error)")


def progress() -> Progress:
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.fields[info]}"), TimeElapsedColumn(), console=console, transient=False)


@contextlib.contextmanager
def user_errors():
    """Turn the errors a user can fix into one clear line and exit code 2 (outputs are already safe)."""
    from labsat.calibration import CalibrationError
    from labsat.config import ConfigError
    from labsat.drivers.base import InstrumentError, LimitError

    try:
        yield
    except (ConfigError, CalibrationError, LimitError, InstrumentError, FileNotFoundError, ValueError, KeyError) as exc:
        console.print(f"[bold red]error:[/] {escape(str(exc))}", soft_wrap=True)  # one line, never broken; a key
        # like [layers] is text, not markup
        raise typer.Exit(2)
    except KeyboardInterrupt:
        console.print("[bold yellow]interrupted[/]: every output was put in its safe state")
        raise typer.Exit(130)


def open_station(path, chip_seed: Optional[int] = None, kind: Optional[str] = None, **kwargs):
    """A Station (from a file or a loaded config) opening only the layer of ``kind``."""
    from labsat.config import load_config
    from labsat.kinds import layer_for_kind
    from labsat.station import Station

    cfg = load_config(path) if isinstance(path, (str, Path)) else path
    return Station(cfg, chip_seed=chip_seed, layers=[layer_for_kind(cfg, kind)], **kwargs)
