"""``labsat runs list|show|export``: the run database on the command line."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

from labsat.runs.db import RunDB, RunError, db_path_for, disk_error

def register(app) -> None:


    import typer
    from rich.console import Console
    from rich.table import Table

    runs_app = typer.Typer(no_args_is_help=True, add_completion=False,
                           help="The run database: list, show and export calibration/training/evaluation runs.")
    console = Console()
    station_opt = typer.Option(Path("instruments.yaml"), "--station", "-s",
                               help="station description; its runs_dir holds labsat.sqlite")
    db_opt = typer.Option(None, "--db", help="a run database file (instead of the station's)")

    def _open(station: Path, db: Optional[Path]) -> RunDB:
        from labsat.config import ConfigError, load_config

        try:
            path = db if db is not None else db_path_for(load_config(station))
            if not path.exists():
                raise RunError(f"{path}: no run database yet (it is made by the first calibrate/train run)")
            return RunDB(path)
        except (RunError, ConfigError) as exc:
            console.print(f"[bold red]error:[/] {exc}")
            raise typer.Exit(2)

    def _fail(exc: Exception):
        console.print(f"[bold red]error:[/] {exc}")
        raise typer.Exit(2)

    def _fmt(x, spec=".4f"):
        return "" if x is None else format(x, spec)

    @runs_app.command("list")
    def list_cmd(station: Path = station_opt, db: Optional[Path] = db_opt,
                 kind: Optional[str] = typer.Option(None, help="calibrate | train | evaluate | experiment")):
        """Every run: id, kind, status, device, epochs done, last loss and accuracy."""
        with _open(station, db) as rdb:
            table = Table(title=f"runs in {rdb.path} (times UTC)")
            for col in ("run", "kind", "status", "device", "config", "epochs", "loss", "acc", "started"):
                table.add_column(col, justify="right" if col in ("run", "epochs", "loss", "acc") else "left",
                                 no_wrap=col in ("run", "kind", "status", "epochs"))
            colour = {"completed": "green", "failed": "red", "interrupted": "yellow", "running": "cyan"}
            for r in rdb.runs(kind):
                eps = rdb.epochs(r["id"])
                cfg = r["config"].get("train", r["config"]) if isinstance(r["config"], dict) else {}
                summary = " ".join(str(cfg[k]) for k in ("mode", "optimizer") if k in cfg)
                total = cfg.get("epochs") if r["kind"] == "train" else None
                table.add_row(str(r["id"]), r["kind"], f"[{colour[r['status']]}]{r['status']}[/]", r["device"] or "",
                              summary, f"{len(eps)}/{total}" if total is not None else "",
                              _fmt(eps[-1]["loss"]) if eps else "", _fmt(eps[-1]["train_accuracy"], ".3f") if eps else "",
                              r["started_utc"][:16].replace("T", " "))
            console.print(table)

    @runs_app.command("show")
    def show_cmd(run: int = typer.Argument(..., help="run id (from `labsat runs list`)"),
                 station: Path = station_opt, db: Optional[Path] = db_opt):
        """One run: its record, epochs, checkpoints and final parameters."""
        with _open(station, db) as rdb:
            try:
                r = rdb.run(run)
            except RunError as exc:
                _fail(exc)
            info = Table(title=f"run {run}", show_header=False)
            info.add_column("field")
            info.add_column("value")
            for key in ("kind", "status", "device", "calibration", "git_revision", "station_path", "host", "pid",
                        "started_utc", "ended_utc", "resumed", "error"):
                info.add_row(key, "" if r[key] is None else str(r[key]))
            info.add_row("config", json.dumps(r["config"]))
            if r["result"] is not None:
                info.add_row("result", json.dumps(r["result"]))
            console.print(info)
            eps = rdb.epochs(run)
            if eps:
                t = Table(title="epochs")
                cols = ("epoch", "loss", "train_accuracy", "test_accuracy", "seconds", "hardware_batches",
                        "hardware_samples", "heater_updates")
                for c in cols:
                    t.add_column(c.replace("_", " "), justify="right")
                for e in eps:
                    t.add_row(*("" if e[c] is None else (f"{e[c]:.4g}" if isinstance(e[c], float) else str(e[c]))
                                for c in cols))
                console.print(t)
            cps = rdb.checkpoints(run)
            if cps:
                console.print(f"checkpoints: {len(cps)}, last: epoch {cps[-1]['epoch']} {cps[-1]['path']}")
            for name, values in rdb.parameters(run).items():
                shown = ", ".join(f"{i}:{v:.4f}" for i, v in list(values.items())[:64])
                console.print(f"final {name} ({len(values)}): {shown}")

    @runs_app.command("export")
    def export_cmd(run: int = typer.Argument(..., help="run id"),
                   fmt: str = typer.Option("csv", "--format", "-f", help="csv | netcdf"),
                   out: Optional[Path] = typer.Option(None, "--out", "-o",
                                                      help="output file (csv default: standard output)"),
                   station: Path = station_opt, db: Optional[Path] = db_opt):
        """Export a run: CSV (one row per epoch) or netCDF (xarray: epochs, final parameters, run attributes)."""
        if fmt not in ("csv", "netcdf"):
            _fail(RunError(f"--format must be csv or netcdf, got {fmt!r}"))
        with _open(station, db) as rdb:
            try:
                if fmt == "csv":
                    text = rdb.export_csv(run)
                    if out is None:
                        typer.echo(text, nl=False)
                        return
                    out.write_text(text)
                else:
                    rdb.export_netcdf(run, out or Path(f"run-{run}.nc"))
                    out = out or Path(f"run-{run}.nc")
            except RunError as exc:
                _fail(exc)
            except OSError as exc:
                _fail(disk_error(exc, str(out)) or RunError(f"{out}: {exc}"))
            console.print(f"wrote {out}")

    app.add_typer(runs_app, name="runs")
