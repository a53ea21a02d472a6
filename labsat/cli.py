"""labsat command line: calibrate, train, evaluate, demo — adapters over :mod:`labsat.workflows`."""
from __future__ import annotations

import contextlib
import importlib
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.progress import Progress
from rich.table import Table

from labsat import defaults
from labsat.cli_common import (DataOpt, JsonOpt, KindOpt, LrOpt, SeedOpt, StationOpt, _data_help, console,  # noqa: F401
                               open_station, progress, user_errors)
from labsat.cli_format import emit_json, json_output, show_path, switches_as_switches

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Hardware-in-the-loop sharpness-aware training of physical neural networks.")
switches_as_switches()  # --check, not --check <bool>


@app.callback()
def _global_options(log_level: str = typer.Option("warning", "--log-level", help="debug | info | warning | error"),
                    trace: Optional[Path] = typer.Option(None, "--trace", metavar="FILE",
                                                         help="write every instrument message, timestamped, to FILE")):
    """Hardware-in-the-loop sharpness-aware training of physical neural networks."""
    from labsat.logs import setup_logging

    try:
        setup_logging(log_level, trace)
    except (ValueError, OSError) as exc:
        console.print(f"[bold red]error:[/] {exc}", soft_wrap=True)  # one line, never broken
        raise typer.Exit(2)

# shared with the commands feature modules register (one definition: labsat/cli_common.py)
_progress = progress
_user_errors = user_errors


class _RichHooks:
    """The workflows' progress events as rich progress bars; notes printed on the console."""

    def __init__(self, progress: Progress):
        self.progress = progress
        self.tasks: dict[str, int] = {}

    def _task(self, name: str, total, completed=0):
        if name not in self.tasks:
            self.tasks[name] = self.progress.add_task(name, total=total, completed=completed, info="")
        return self.tasks[name]

    def __call__(self, event: str, payload) -> None:
        p = self.progress
        if event in ("measure", "start"):
            k, n = payload
            p.update(self._task("measuring" if event == "measure" else "self-configuring (columns)", n), completed=k)
        elif event == "fit":
            i, total, loss = payload
            p.update(self._task("fitting twin", total), total=total, completed=i, info=f"mse {loss:.2e}")
        elif event == "train_start":
            self.tasks["train"] = p.add_task(payload["label"], total=payload["epochs"], completed=payload["done"],
                                             info="")
        elif event == "step" and "train" in self.tasks:
            epoch, step, steps, _ = payload
            p.update(self.tasks["train"], info=f"step {step}/{steps}")
        elif event == "epoch" and "train" in self.tasks:
            rec = payload
            p.update(self.tasks["train"], completed=rec["epoch"],
                     info=f"loss {rec['loss']:.3f} acc {rec['train_accuracy']:.3f}"
                          + (f" hw {rec['hardware_batches']}" if rec["hardware_batches"] else ""))
        elif event == "section":
            console.rule(str(payload))


_active_hooks: list = []


@contextlib.contextmanager
def _hooks():
    """:class:`labsat.workflows.Hooks` for one command: progress bars, notes on the console. Nested uses
    (the demo's calibration) share the outer progress display (rich allows one live display)."""
    from labsat.workflows import Hooks

    if _active_hooks:
        yield _active_hooks[-1]
        return
    with _progress() as progress:
        hooks = Hooks(progress=_RichHooks(progress), note=console.print)
        _active_hooks.append(hooks)
        try:
            yield hooks
        finally:
            _active_hooks.pop()


def run_calibration(station, settings: int | None = None, inputs: int | None = None,
                    holdout: float = defaults.CAL_HOLDOUT, seed: int = 0, self_configure: bool = False):
    """The calibrate workflow with progress bars (recorded, saved): a
    :class:`labsat.workflows.CalibrationResult` (``.path``, ``.meta``)."""
    from labsat import workflows

    with _hooks() as hooks:
        return workflows.calibrate(station, workflows.CalibrationParams(settings, inputs, holdout, seed=seed,
                                                                        self_configure=self_configure),
                                   hooks, source="labsat cli")


@app.command()
def calibrate(station: Path = StationOpt, chip_seed: Optional[int] = SeedOpt, kind: Optional[str] = KindOpt,
              settings: Optional[int] = typer.Option(None, help="random heater settings to measure (default: "
                                                     f"{defaults.CAL_SETTINGS} up to 8 modes, 128 above)"),
              inputs: Optional[int] = typer.Option(None, help="inputs measured per heater setting (default: "
                                                   f"{defaults.CAL_INPUTS} up to 8 modes, N²/8 above: 16 N² "
                                                   "readings in all)"),
              holdout: float = typer.Option(defaults.CAL_HOLDOUT, help="fraction of settings held out to test the fit"),
              start: str = typer.Option("datasheet", help="Clements meshes above 8 modes: the fit's start, 'datasheet' "
                                        "or 'self-configure' (MZI by MZI from the instruments first: ~290 N² readings "
                                        "more; needed from ~40 modes when the phase offsets are ~0.3 rad, "
                                        "calibration/README.md)"),
              check: bool = typer.Option(False, "--check", help="only re-measure a few settings and say whether the "
                                         "stored fit is still valid (exit 0 valid, 1 stale)"),
              check_factor: float = typer.Option(2.0, "--drift-factor", help="--check: stale when the RMSE exceeds "
                                                 "this times the stored held-out RMSE"),
              calibration: Optional[Path] = typer.Option(None, help="--check: calibration file (default: latest)"),
              as_json: bool = JsonOpt):
    """Measure the chip, fit its twin, save the calibration (recorded in the run database)."""
    from labsat.calibration import load_calibration

    if check:
        from labsat.cli_calibration import check_command

        with _user_errors(), open_station(station, chip_seed, kind) as st:
            raise typer.Exit(check_command(st, calibration, factor=check_factor, console=console))

    from labsat.runs import db_path_for

    with _user_errors(), json_output(console, as_json), open_station(station, chip_seed, kind) as st:
        if start not in ("datasheet", "self-configure"):
            raise ValueError(f"--start must be 'datasheet' or 'self-configure', got {start!r}")
        result = run_calibration(st, settings, inputs, holdout, self_configure=start == "self-configure")
        record = load_calibration(result.path)
        if as_json:
            emit_json({"run": result.run, "device": record["device"], "calibration": show_path(result.path),
                       "residuals": result.meta["residuals"], "fit_final_mse": result.meta["fit_final_mse"]})
            return
        table = Table(title=f"calibration of {record['device']} (run {result.run})")
        table.add_column("twin")
        table.add_column("held-out RMSE (norm. power)", justify="right")
        table.add_column("max |error|", justify="right")
        for name, key in (("nominal (datasheet)", "nominal_holdout"), ("fitted", "fitted_holdout")):
            r = result.meta["residuals"][key]
            table.add_row(name, f"{r['rmse']:.4f}", f"{r['max_abs']:.4f}")
        console.print(table)
        console.print(f"saved [bold]{show_path(result.path)}[/] (run {result.run} in {show_path(db_path_for(st.config))})",
                      soft_wrap=True)


ThreadsOpt = typer.Option(None, "--threads", help="torch intra-op threads (default: 1 for small tensors, "
                          "all cores for large ones)")


@app.command("train")
def train_cmd(station: Path = StationOpt, chip_seed: Optional[int] = SeedOpt, kind: Optional[str] = KindOpt,
              mode: str = typer.Option("offline", help="offline (on the twin) or online (on the hardware)"),
              optimizer: str = typer.Option(defaults.OPTIMIZER, help="sgd | adam | sam | asam | saf | mesa | noise"),
              base: str = typer.Option(defaults.BASE_OPTIMIZER, help="base optimizer of sam/asam: sgd | adam"),
              rho: float = typer.Option(defaults.RHO, help="SAM neighbourhood radius (in control units)"),
              perturb: str = typer.Option(defaults.PERTURB, help="the SAM radius's scope: 'controls' (the physical "
                                          "controls only, the benchmarks' SAT) or 'all' parameters"),
              perturbed_pass: str = typer.Option(defaults.PERTURBED_PASS, help="online sam/asam: the perturbed "
                                                 "pass on the 'twin' (1 hardware forward per step) or on the "
                                                 "'hardware' (naive SAM, 2 forwards)"),
              lr: Optional[float] = LrOpt,
              epochs: int = typer.Option(defaults.EPOCHS),
              batch_size: int = typer.Option(defaults.BATCH_SIZE), seed: int = typer.Option(0),
              threads: Optional[int] = ThreadsOpt,
              calibration: Optional[Path] = typer.Option(None, help="calibration file (default: latest for the chip)"),
              nominal: bool = typer.Option(False, help="use the uncalibrated datasheet twin"),
              force: bool = typer.Option(False, "--force", help="use a calibration of another device or kind"),
              out: Optional[Path] = typer.Option(None, help="model file (default: runs/<mode>-<optimizer>.pt)"),
              resume: Optional[int] = typer.Option(None, "--resume", metavar="RUN",
                                                   help="continue run RUN from its last checkpoint, with its own settings"),
              data: Optional[str] = DataOpt, as_json: bool = JsonOpt):
    """Train the layer's classifier offline on the twin or online on the hardware (recorded in the run database)."""
    from labsat import runs, workflows
    from labsat.config import load_config
    from labsat.train import TrainConfig

    with _user_errors(), json_output(console, as_json):
        if resume is not None:  # the run's own settings; the command-line ones are ignored
            with runs.RunDB.for_station(load_config(station)) as db:
                record = db.run(resume)
            if record["station_yaml"] is not None and Path(station).read_text() != record["station_yaml"]:
                console.print(f"[yellow]warning:[/] {station} changed since run {resume} started "
                              "(`labsat runs show` has the snapshot it started with)")
            try:
                request, opened = workflows.resume_request(record["config"])
            except runs.RunError as exc:
                raise runs.RunError(f"run {resume}: {exc}") from None
            chip_seed, kind = opened["chip_seed"], opened["kind"] or kind
            cfg = request.train
            console.print(f"resuming run {resume} ({cfg.mode} {cfg.optimizer}, {cfg.epochs} epochs)")
        else:
            if perturbed_pass not in ("twin", "hardware"):
                raise ValueError(f"--perturbed-pass must be 'twin' or 'hardware', got {perturbed_pass!r}")
            cfg = TrainConfig(mode=mode, optimizer=optimizer, base=base, rho=rho, lr=lr, epochs=epochs,
                              batch_size=batch_size, seed=seed, perturb=perturb,
                              twin_perturbed=perturbed_pass == "twin")
            request = workflows.TrainingRequest(cfg, calibration="nominal" if nominal else
                                                (None if calibration is None else str(calibration)),
                                                out=None if out is None else str(out), threads=threads, data=data,
                                                force=force)
        with open_station(station, chip_seed, kind) as st, _hooks() as hooks:
            result = workflows.train(st, request, hooks, resume=resume)
        last = result.epochs[-1] if result.epochs else None
        cal = result.calibration if result.calibration == "nominal" else show_path(result.calibration)
        if as_json:
            emit_json({"run": result.run, "model": show_path(result.path), "calibration": cal, "final": last,
                       "hardware_batches": result.hardware_batches})
            return
        if last:
            console.print(f"final train loss {last['loss']:.4f}, accuracy {last['train_accuracy']:.3f}")
        console.print(f"saved [bold]{show_path(result.path)}[/] (twin: {cal}; run {result.run})", soft_wrap=True)


def evaluate_models(model_files: list[Path], stations: dict[str, object],
                    data: Optional[str] = None) -> dict[str, dict[str, float]]:
    """Accuracy of each model on each station's hardware: {model: {station label: accuracy}}, on the
    test split of ``data`` (``--data``), by default the data set each model was trained on."""
    from labsat.workflows import accuracies

    return accuracies(model_files, stations, data=data)


@app.command()
def evaluate(models: list[Path] = typer.Argument(..., help="model files from `labsat train`"),
             station: Path = StationOpt, chip_seed: Optional[int] = SeedOpt, kind: Optional[str] = KindOpt,
             other_chip_seed: Optional[int] = typer.Option(defaults.EVAL_OTHER_CHIP_SEED,
                                                           help="simulated backend: a second chip to test transfer on"),
             other_station: Optional[Path] = typer.Option(None, help="a second station file (another device)"),
             data: Optional[str] = typer.Option(None, "--data", help=f"data set: {_data_help()}; default: the one "
                                                "each model was trained on"),
             as_json: bool = JsonOpt):
    """Test accuracy on the device the model was trained for and on another device."""
    from labsat import workflows

    with _user_errors(), json_output(console, as_json), contextlib.ExitStack() as stack:
        st_a = stack.enter_context(open_station(station, chip_seed, kind))
        stations = {st_a.device_id(): st_a}
        if other_station is not None:
            st_b = stack.enter_context(open_station(other_station, None, kind))
            stations[st_b.device_id()] = st_b
        elif st_a.simulated and other_chip_seed is not None:
            st_b = stack.enter_context(open_station(station, other_chip_seed, kind))
            stations[st_b.device_id()] = st_b
        run_id, results = workflows.evaluate(models, stations, workflows.Hooks(note=console.print), config={
            "chip_seed": chip_seed, "kind": kind, "other_chip_seed": other_chip_seed,
            "other_station": None if other_station is None else str(other_station)}, data=data)
        if as_json:
            emit_json({"run": run_id, "devices": list(stations),
                       "accuracy": {show_path(m): row for m, row in results.items()}})
            return
        table = Table(title=f"test accuracy on hardware (run {run_id})")
        table.add_column("model")
        for label in stations:
            table.add_column(label, justify="right")
        for name, row in results.items():
            table.add_row(Path(name).stem, *(f"{100 * row[k]:.1f} %" for k in stations))
        console.print(table)


@app.command()
def demo(station: Path = StationOpt, kind: Optional[str] = KindOpt,
         chip_a: int = typer.Option(defaults.DEMO_CHIP_A, help="virtual chip the models are trained for"),
         chip_b: int = typer.Option(defaults.DEMO_CHIP_B, help="a second virtual chip, other imperfections"),
         offline_epochs: int = typer.Option(defaults.DEMO_OFFLINE_EPOCHS),
         online_epochs: int = typer.Option(defaults.DEMO_ONLINE_EPOCHS),
         rho: float = typer.Option(defaults.RHO), lr: Optional[float] = LrOpt,
         threads: Optional[int] = ThreadsOpt,
         runs_dir: Optional[Path] = typer.Option(None, help="where models go (default: the station's runs_dir)"),
         data: Optional[str] = DataOpt, as_json: bool = JsonOpt):
    """The whole path on the virtual lab: calibrate chip A, train offline/online x plain/SAT, test on A and B."""
    from labsat import workflows
    from labsat.config import load_config

    with _user_errors(), json_output(console, as_json):
        cfg = load_config(station)
        params = workflows.DemoParams(chip_a=chip_a, chip_b=chip_b, offline_epochs=offline_epochs,
                                      online_epochs=online_epochs, rho=rho, lr=lr, runs_dir=runs_dir, kind=kind,
                                      threads=threads, data=data)
        with _hooks() as hooks:
            result = workflows.run_demo(cfg, params, open_station, hooks,
                                        calibrate=run_calibration)  # the layer's default budget, as `calibrate`
        cal_path = result.calibration.path
        if as_json:
            emit_json({"calibration": show_path(cal_path),
                       "models": {k: show_path(v) for k, v in result.models.items()},
                       "evaluation_run": result.evaluation_run, "run_database": show_path(result.run_database),
                       "accuracy": {label: result.accuracy[str(f)] for label, f in result.models.items()}})
            return
        table = Table(title=f"test accuracy on the virtual chips ({result.data.name}, {result.data.n_classes} classes)")
        table.add_column("training")
        for label in result.devices:
            table.add_column(label, justify="right")
        for label, path in result.models.items():
            row = result.accuracy[str(path)]
            table.add_row(label, *(f"{100 * row[k]:.1f} %" for k in result.devices))
        console.print(table)
        models_dir = Path(next(iter(result.models.values()))).parent
        console.print(f"calibration: {show_path(cal_path)}", soft_wrap=True)
        console.print(f"models: {show_path(models_dir)}/ ({', '.join(Path(f).name for f in result.models.values())})",
                      soft_wrap=True)
        console.print(f"runs (calibration, 4 trainings, evaluation {result.evaluation_run}): "
                      f"{show_path(result.run_database)}; `labsat runs list`", soft_wrap=True)


# Feature modules add their own commands: each exposes ``register(app)``.
for _name in ("labsat.experiments", "labsat.gui.app", "labsat.cli_runs", "labsat.cli_calibration",
              "labsat.freespace_experiment"):
    try:
        importlib.import_module(_name).register(app)
    except ModuleNotFoundError as _exc:  # feature not built yet in this checkout
        if _exc.name != _name:
            raise


def main() -> None:  # pragma: no cover
    sys.exit(app())
