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
            console.print(f"[bold red]error:[/] {exc}", soft_wrap=True)  # one line, never broken
            raise typer.Exit(2)

    def _fail(exc: Exception):
        console.print(f"[bold red]error:[/] {exc}", soft_wrap=True)  # one line, never broken
        raise typer.Exit(2)

    def _fmt(x, spec=".4f"):
        return "" if x is None else format(x, spec)

    @runs_app.command("list")
    def list_cmd(station: Path = station_opt, db: Optional[Path] = db_opt,
                 kind: Optional[str] = typer.Option(None, help="calibrate | train | evaluate | experiment"),
                 as_json: bool = typer.Option(False, "--json", help="print the runs as JSON (one object per run)")):
        """Every run: id, kind, status, device, epochs done, last loss and accuracy."""
        from rich import box

        from labsat.cli_format import emit_json

        with _open(station, db) as rdb:
            rows = []
            for r in rdb.runs(kind):
                eps = rdb.epochs(r["id"])
                cfg = r["config"].get("train", r["config"]) if isinstance(r["config"], dict) else {}
                total = cfg.get("epochs") if r["kind"] == "train" else None
                rows.append(dict(run=r["id"], kind=r["kind"], mode=cfg.get("mode"), optimizer=cfg.get("optimizer"),
                                 status=r["status"], device=r["device"], epochs_done=len(eps), epochs=total,
                                 loss=eps[-1]["loss"] if eps else None,
                                 train_accuracy=eps[-1]["train_accuracy"] if eps else None,
                                 test_accuracy=eps[-1]["test_accuracy"] if eps else None,
                                 started_utc=r["started_utc"], ended_utc=r["ended_utc"],
                                 calibration=r["calibration"], error=r["error"]))
            if as_json:
                emit_json({"database": str(rdb.path), "runs": rows})
                return
            # fits 80 columns: no borders, the setup folded under the kind, dates without the year
            table = Table(title=f"runs in {rdb.path} (UTC)", box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True,
                          title_justify="left")
            for col in ("run", "kind", "status", "device", "epochs", "loss", "acc", "started"):
                table.add_column(col, justify="right" if col in ("run", "epochs", "loss", "acc") else "left",
                                 no_wrap=col != "kind", min_width=9 if col == "kind" else None)
            colour = {"completed": "green", "failed": "red", "interrupted": "yellow", "running": "cyan"}
            for row in rows:
                setup = " ".join(str(row[k]) for k in ("mode", "optimizer") if row[k])
                table.add_row(str(row["run"]), row["kind"] + (f" {setup}" if setup else ""),
                              f"[{colour[row['status']]}]{row['status']}[/]", row["device"] or "",
                              f"{row['epochs_done']}/{row['epochs']}" if row["epochs"] is not None else "",
                              _fmt(row["loss"], ".3f"), _fmt(row["train_accuracy"], ".3f"),
                              row["started_utc"][5:16].replace("T", " "))
            console.print(table)

    @runs_app.command("show")
    def show_cmd(run: int = typer.Argument(..., help="run id (from `labsat runs list`)"),
                 station: Path = station_opt, db: Optional[Path] = db_opt,
                 as_json: bool = typer.Option(False, "--json", help="print the run as JSON")):
        """One run: its record, epochs, checkpoints and final parameters."""
        from labsat.cli_format import emit_json

        with _open(station, db) as rdb:
            try:
                r = rdb.run(run)
            except RunError as exc:
                _fail(exc)
            if as_json:
                emit_json({"run": r, "epochs": rdb.epochs(run), "checkpoints": rdb.checkpoints(run),
                           "parameters": rdb.parameters(run)})
                return
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
                   fmt: str = typer.Option("csv", "--format", "-f", help="csv | netcdf | qcodes (a dataset in the "
                                           "QCoDeS database --out, default experiments.db)"),
                   out: Optional[Path] = typer.Option(None, "--out", "-o",
                                                      help="output file (csv default: standard output)"),
                   station: Path = station_opt, db: Optional[Path] = db_opt):
        """Export a run: CSV (one row per epoch) or netCDF (xarray: epochs, final parameters, run attributes)."""
        if fmt not in ("csv", "netcdf", "qcodes"):
            _fail(RunError(f"--format must be qcodes, csv or netcdf, got {fmt!r}"))
        with _open(station, db) as rdb:
            try:
                if fmt == "csv":
                    text = rdb.export_csv(run)
                    if out is None:
                        typer.echo(text, nl=False)
                        return
                    out.write_text(text)
                elif fmt == "qcodes":
                    out = out or Path("experiments.db")
                    console.print(f"wrote {_export_qcodes(rdb, run, out)}", soft_wrap=True)
                    return
                else:
                    rdb.export_netcdf(run, out or Path(f"run-{run}.nc"))
                    out = out or Path(f"run-{run}.nc")
            except RunError as exc:
                _fail(exc)
            except OSError as exc:
                _fail(disk_error(exc, str(out)) or RunError(f"{out}: {exc}"))
            console.print(f"wrote {out}")

    app.add_typer(runs_app, name="runs")


def _export_qcodes(rdb: RunDB, run: int, out: Path) -> str:
    """A run as a QCoDeS dataset in database ``out``: a calibration run's sweep (its NPZ) with the fit as
    metadata, any other run's epochs and final parameters (labsat.qcodes.datasets)."""
    try:
        from labsat.qcodes.datasets import export_calibration, export_run, use_database
    except ImportError as exc:
        raise RunError("export to QCoDeS needs qcodes: pip install 'labsat[qcodes]'") from exc
    info = rdb.run(run)
    path = use_database(out)
    cal = (info["result"] or {}).get("calibration") if info["kind"] == "calibrate" else None
    if cal:
        ds = export_calibration(cal)
    else:
        ds = export_run(rdb, run)
    from labsat.cli_format import show_path

    return f"run {run} as QCoDeS dataset {ds.run_id} ({ds.guid}) in {show_path(path)}"
