"""labsat command line: calibrate, train, evaluate, demo."""
from __future__ import annotations

import contextlib
import importlib
import datetime as _dt
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Hardware-in-the-loop sharpness-aware training of physical neural networks.")
console = Console()

StationOpt = typer.Option(Path("instruments.yaml"), "--station", "-s", help="station description (instruments.yaml)")
SeedOpt = typer.Option(None, "--chip-seed", help="simulated backend: which virtual chip (overrides the file)")


def _progress() -> Progress:
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.fields[info]}"), TimeElapsedColumn(), console=console, transient=False)


@contextlib.contextmanager
def _user_errors():
    """Turn the errors a user can fix into one clear line and exit code 2 (outputs are already safe)."""
    from labsat.calibration import CalibrationError
    from labsat.config import ConfigError
    from labsat.drivers.base import InstrumentError, LimitError

    try:
        yield
    except (ConfigError, CalibrationError, LimitError, InstrumentError, FileNotFoundError, ValueError, KeyError) as exc:
        console.print(f"[bold red]error:[/] {exc}")
        raise typer.Exit(2)
    except KeyboardInterrupt:
        console.print("[bold yellow]interrupted[/]: every output was put in its safe state")
        raise typer.Exit(130)


KindOpt = typer.Option(None, "--kind", help="which physical network of the station (mesh, ...); default: its first layer")


def open_station(path, chip_seed: Optional[int] = None, kind: Optional[str] = None, **kwargs):
    """A Station (from a file or a loaded config) opening only the layer of ``kind``."""
    from labsat.config import load_config
    from labsat.kinds import layer_for_kind
    from labsat.station import Station

    cfg = load_config(path) if isinstance(path, (str, Path)) else path
    return Station(cfg, chip_seed=chip_seed, layers=[layer_for_kind(cfg, kind)], **kwargs)


def _layer(station) -> str:
    return station.layer_names[0]


def run_calibration(station, settings: int, inputs: int, holdout: float, seed: int = 0) -> tuple[Path, dict]:
    from labsat.calibration import fit_twin, measure, residual_summary, save_calibration

    from labsat.kinds import kind_of

    hw = station.layer()
    with _progress() as progress:
        task = progress.add_task("measuring", total=settings, info="")
        data = measure(hw, settings, inputs, seed=seed,
                       progress=lambda k, n: progress.update(task, completed=k))
        train_set, held = data.split(holdout, seed=seed)
        twin = kind_of(station.config, _layer(station)).make_twin(station.config, _layer(station))
        nominal = residual_summary(twin, held)
        fit_task = progress.add_task("fitting twin", total=1, info="")

        def report(i, total, loss):
            progress.update(fit_task, total=total, completed=i, info=f"mse {loss:.2e}")

        fit = kind_of(station.config, _layer(station)).fit_twin or fit_twin  # a kind may bring its own fit
        history = fit(twin, train_set, progress=report)
    fitted = residual_summary(twin, held)
    meta = {"instruments": station.identities(), "station": station.config.station.name,
            "backend": station.config.station.backend, "settings": settings, "inputs_per_setting": inputs,
            "residuals": {"nominal_holdout": nominal, "fitted_holdout": fitted,
                          "fitted_train": residual_summary(twin, train_set)},
            "fit_final_mse": history[-1]}
    directory = station.config.resolve(station.config.station.calibration_dir)
    path = save_calibration(directory, station.device_id(), twin.fitted_state(), meta, data)
    return path, meta


@app.command()
def calibrate(station: Path = StationOpt, chip_seed: Optional[int] = SeedOpt, kind: Optional[str] = KindOpt,
              settings: int = typer.Option(64, help="random heater settings to measure"),
              inputs: int = typer.Option(32, help="inputs measured per heater setting"),
              holdout: float = typer.Option(0.2, help="fraction of settings held out to test the fit"),
              check: bool = typer.Option(False, "--check", help="only re-measure a few settings and say whether the "
                                         "stored fit is still valid (exit 0 valid, 1 stale)"),
              check_factor: float = typer.Option(2.0, "--drift-factor", help="--check: stale when the RMSE exceeds "
                                                 "this times the stored held-out RMSE"),
              calibration: Optional[Path] = typer.Option(None, help="--check: calibration file (default: latest)")):
    """Measure the chip, fit its twin, save the calibration (and reload it to check)."""
    from labsat import runs
    from labsat.calibration import load_calibration

    if check:
        from labsat.calibration.cli import check_command

        with _user_errors(), open_station(station, chip_seed, kind) as st:
            raise typer.Exit(check_command(st, calibration, factor=check_factor, console=console))

    with _user_errors(), open_station(station, chip_seed, kind) as st:
        db = runs.RunDB.for_station(st.config)
        run_id = runs.start_station_run(db, "calibrate", st, {"settings": settings, "inputs": inputs,
                                                              "holdout": holdout, "chip_seed": chip_seed})
        with runs.recording(db, run_id, note=console.print):
            path, meta = run_calibration(st, settings, inputs, holdout)
            record = load_calibration(path)
            db.finish(run_id, "completed", calibration=str(path),
                      result={"calibration": str(path), "residuals": meta["residuals"],
                              "fit_final_mse": meta["fit_final_mse"]})
        table = Table(title=f"calibration of {record['device']}")
        table.add_column("twin")
        table.add_column("held-out RMSE (norm. power)", justify="right")
        table.add_column("max |error|", justify="right")
        for name, key in (("nominal (datasheet)", "nominal_holdout"), ("fitted", "fitted_holdout")):
            r = meta["residuals"][key]
            table.add_row(name, f"{r['rmse']:.4f}", f"{r['max_abs']:.4f}")
        console.print(table)
        console.print(f"saved [bold]{path}[/]")


def _load_twin_state(st, calibration: Optional[Path], nominal: bool):
    from labsat.calibration import latest_calibration, load_calibration

    if nominal:
        return None, "nominal"
    directory = st.config.resolve(st.config.station.calibration_dir)
    path = calibration or latest_calibration(directory, st.device_id())
    record = load_calibration(path)
    return record["twin"], str(path)


def run_training(st, cfg, twin_state, calibration_name: str, out: Path, data=None, label: str = "",
                 recorder=None) -> dict:
    """Train and save; ``recorder`` (a :class:`labsat.runs.TrainRecorder`) checkpoints every epoch into
    the run database and, if the run has a checkpoint, continues from it."""
    from labsat.data import load_digits
    from labsat.kinds import kind_of
    from labsat.train import model_for, save_model, train

    lname = _layer(st)
    layer = st.config.layers[lname]
    twin0 = kind_of(st.config, lname).make_twin(st.config, lname)
    n_inputs = twin0.n_inputs
    # a twin that takes other inputs (images for free space) brings its own data set
    data = data or (twin0.load_data(seed=0) if hasattr(twin0, "load_data") else load_digits(n_inputs, seed=0))
    hw = st.layer() if cfg.mode == "online" else None
    model = model_for(st.config, lname, data.n_classes, seed=cfg.seed, twin_state=twin_state, hardware=hw)
    resume = None
    if recorder is not None:
        recorder.attach(hw)
        resume = recorder.resume_state()
    with _progress() as progress:
        task = progress.add_task(label or f"{cfg.mode} {cfg.optimizer}", total=cfg.epochs, info="",
                                 completed=0 if resume is None else resume["epoch"])
        step_info = {"step": ""}

        def on_step(step, steps):
            progress.update(task, info=f"step {step}/{steps}")

        def on_epoch(rec):
            progress.update(task, completed=rec.epoch,
                            info=f"loss {rec.loss:.3f} acc {rec.train_accuracy:.3f}"
                                 + (f" hw {rec.hardware_batches}" if rec.hardware_batches else ""))

        history = train(model, data, cfg, on_step=on_step, on_epoch=on_epoch, resume=resume,
                        checkpoint=None if recorder is None else recorder.checkpoint)
        del step_info
    if recorder is not None:
        recorder.record_final_parameters(model, layer)
    meta = {"history": history.as_dict(), "device": st.device_id(), "calibration": calibration_name,
            "layer": layer.model_dump(), "layer_name": lname, "kind": layer.kind,
            "n_classes": data.n_classes, "dataset": data.name,
            "created_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(),
            "hardware_batches": hw.batches if hw else 0,
            "twin_refreshes": getattr(getattr(model.physical.twin, "online", None), "refreshes", 0)}
    if recorder is not None:
        meta["run"] = recorder.run
    save_model(out, model, data.encoder, meta)
    return meta


@app.command("train")
def train_cmd(station: Path = StationOpt, chip_seed: Optional[int] = SeedOpt, kind: Optional[str] = KindOpt,
              mode: str = typer.Option("offline", help="offline (on the twin) or online (on the hardware)"),
              optimizer: str = typer.Option("sam", help="sgd | adam | sam | asam"),
              base: str = typer.Option("adam", help="base optimizer of sam/asam: sgd | adam"),
              rho: float = typer.Option(0.05, help="SAM neighbourhood radius (in control units)"),
              lr: float = typer.Option(0.03), epochs: int = typer.Option(20),
              batch_size: int = typer.Option(64), seed: int = typer.Option(0),
              calibration: Optional[Path] = typer.Option(None, help="calibration file (default: latest for the chip)"),
              nominal: bool = typer.Option(False, help="use the uncalibrated datasheet twin"),
              out: Optional[Path] = typer.Option(None, help="model file (default: runs/<mode>-<optimizer>.pt)"),
              resume: Optional[int] = typer.Option(None, "--resume", metavar="RUN",
                                                   help="continue run RUN from its last checkpoint, with its own settings")):
    """Train the mesh classifier offline on the twin or online on the hardware (recorded in the run database)."""
    from dataclasses import asdict

    from labsat import runs
    from labsat.config import load_config
    from labsat.train import TrainConfig

    with _user_errors(), contextlib.ExitStack() as guard:
        db = guard.enter_context(runs.RunDB.for_station(load_config(station)))
        if resume is not None:  # the run's own settings; the command-line ones are ignored
            record = db.run(resume)
            stored = record["config"]
            if record["station_yaml"] is not None and Path(station).read_text() != record["station_yaml"]:
                console.print(f"[yellow]warning:[/] {station} changed since run {resume} started "
                              "(`labsat runs show` has the snapshot it started with)")
            if "train" not in stored:
                raise runs.RunError(f"run {resume} has no training settings to resume with")
            known = TrainConfig.__dataclass_fields__
            cfg = TrainConfig(**{k: v for k, v in stored["train"].items() if k in known})
            chip_seed, out, kind = stored.get("chip_seed"), Path(stored["out"]), stored.get("kind", kind)
            nominal = stored.get("calibration") == "nominal"
            calibration = None if nominal else Path(stored["calibration"])
            db.reopen(resume)
            guard.enter_context(runs.recording(db, resume, note=console.print))
            console.print(f"resuming run {resume} ({cfg.mode} {cfg.optimizer}, {cfg.epochs} epochs)")
        else:
            cfg = TrainConfig(mode=mode, optimizer=optimizer, base=base, rho=rho, lr=lr, epochs=epochs,
                              batch_size=batch_size, seed=seed)
        # unwinds in reverse: the station reaches its safe state before the run is marked failed
        st = guard.enter_context(open_station(station, chip_seed, kind))
        twin_state, cal = _load_twin_state(st, calibration, nominal)
        runs_dir = st.config.resolve(st.config.station.runs_dir)
        out = out or runs_dir / f"{cfg.mode}-{cfg.optimizer}.pt"
        run_id = resume
        if run_id is None:
            run_id = runs.start_station_run(db, "train", st, {
                "train": asdict(cfg), "chip_seed": chip_seed, "kind": kind, "calibration": cal,
                "out": str(Path(out).resolve())}, calibration=cal)
            guard.enter_context(runs.recording(db, run_id, note=console.print))
            console.print(f"run {run_id} in {db.path}")
        recorder = runs.TrainRecorder(db, run_id, runs_dir / "checkpoints")
        meta = run_training(st, cfg, twin_state, cal, out, recorder=recorder)
        last = meta["history"]["epochs"][-1] if meta["history"]["epochs"] else {}
        db.finish(run_id, "completed", result={"out": str(out), "final": last,
                                               "hardware_batches": meta["hardware_batches"]})
        last = meta["history"]["epochs"][-1] if meta["history"]["epochs"] else None
        if last:
            console.print(f"final train loss {last['loss']:.4f}, accuracy {last['train_accuracy']:.3f}")
        console.print(f"saved [bold]{out}[/] (twin: {cal})")


def evaluate_models(model_files: list[Path], stations: dict[str, object]) -> dict[str, dict[str, float]]:
    """Accuracy of each model on each station's hardware: {model: {station label: accuracy}}."""
    from labsat.data import Encoder, load_digits
    from labsat.kinds import kind_of
    from labsat.train import accuracy, load_model_file, model_for

    results: dict[str, dict[str, float]] = {}
    for path in model_files:
        blob = load_model_file(path)
        meta = blob["meta"]
        results[str(path)] = {}
        for label, st in stations.items():
            hw = st.layer()
            twin0 = kind_of(st.config, _layer(st)).make_twin(st.config, _layer(st))
            data = (twin0.load_data(seed=0, encoder_state=blob["encoder"]) if hasattr(twin0, "load_data")
                    else load_digits(hw.modes, seed=0, encoder=Encoder.from_state(blob["encoder"])))
            model = model_for(st.config, _layer(st), meta["n_classes"], hardware=hw)
            try:
                missing = model.load_state_dict(blob["state_dict"], strict=False)
            except RuntimeError as exc:  # size mismatch: trained for another layer
                detail = "; ".join(line.strip() for line in str(exc).splitlines()[1:])
                raise ValueError(f"{path} does not fit the layer of {label}: {detail}") from None
            if missing.unexpected_keys:
                raise ValueError(f"{path}: unexpected parameters {missing.unexpected_keys}")
            results[str(path)][label] = accuracy(model, data.x_test, data.y_test, on_hardware=True)
    return results


@app.command()
def evaluate(models: list[Path] = typer.Argument(..., help="model files from `labsat train`"),
             station: Path = StationOpt, chip_seed: Optional[int] = SeedOpt, kind: Optional[str] = KindOpt,
             other_chip_seed: Optional[int] = typer.Option(2, help="simulated backend: a second chip to test transfer on"),
             other_station: Optional[Path] = typer.Option(None, help="a second station file (another device)")):
    """Test accuracy on the device the model was trained for and on another device."""

    with _user_errors(), contextlib.ExitStack() as stack:
        st_a = stack.enter_context(open_station(station, chip_seed, kind))
        stations = {st_a.device_id(): st_a}
        if other_station is not None:
            st_b = stack.enter_context(open_station(other_station, None, kind))
            stations[st_b.device_id()] = st_b
        elif st_a.simulated and other_chip_seed is not None:
            st_b = stack.enter_context(open_station(station, other_chip_seed, kind))
            stations[st_b.device_id()] = st_b
        from labsat import runs

        db = stack.enter_context(runs.RunDB.for_station(st_a.config))
        run_id = runs.start_station_run(db, "evaluate", st_a, {
            "models": [str(Path(m).resolve()) for m in models], "chip_seed": chip_seed, "kind": kind,
            "other_chip_seed": other_chip_seed, "other_station": None if other_station is None else str(other_station)})
        with runs.recording(db, run_id, note=console.print):
            results = evaluate_models(models, stations)
            db.finish(run_id, "completed", result={"accuracy": results, "devices": list(stations)})
        table = Table(title=f"test accuracy on hardware (run {run_id})")
        table.add_column("model")
        for label in stations:
            table.add_column(label, justify="right")
        for name, row in results.items():
            table.add_row(Path(name).stem, *(f"{100 * row[k]:.1f} %" for k in stations))
        console.print(table)


@app.command()
def demo(station: Path = StationOpt, kind: Optional[str] = KindOpt,
         chip_a: int = typer.Option(1, help="virtual chip the models are trained for"),
         chip_b: int = typer.Option(2, help="a second virtual chip, other imperfections"),
         offline_epochs: int = typer.Option(30), online_epochs: int = typer.Option(10),
         rho: float = typer.Option(0.05), lr: float = typer.Option(0.03),
         runs_dir: Optional[Path] = typer.Option(None, help="where models go (default: the station's runs_dir)")):
    """The whole path on the virtual lab: calibrate chip A, train offline/online x plain/SAT, test on A and B."""
    from labsat.config import load_config
    from labsat.train import TrainConfig

    with _user_errors():
        cfg = load_config(station)
        if cfg.station.backend != "sim":
            raise ValueError("station.backend: the demo runs on the virtual lab (backend: sim)")
        runs = runs_dir or cfg.resolve(cfg.station.runs_dir) / "demo"
        plan = [("offline plain", "offline", "adam", offline_epochs), ("offline SAT", "offline", "sam", offline_epochs),
                ("online plain", "online", "adam", online_epochs), ("online SAT", "online", "sam", online_epochs)]
        files = {}
        from dataclasses import asdict

        from labsat import runs as rundb

        with open_station(cfg, chip_a, kind) as st, rundb.RunDB.for_station(cfg) as db:
            console.rule(f"calibrating {st.device_id()}")
            run_id = rundb.start_station_run(db, "calibrate", st, {"settings": 64, "inputs": 32, "holdout": 0.2,
                                                                   "chip_seed": chip_a, "demo": True})
            with rundb.recording(db, run_id, note=console.print):
                path, meta = run_calibration(st, settings=64, inputs=32, holdout=0.2)
                db.finish(run_id, "completed", calibration=str(path),
                          result={"calibration": str(path), "residuals": meta["residuals"]})
            r = meta["residuals"]
            console.print(f"held-out RMSE: nominal twin {r['nominal_holdout']['rmse']:.4f}, "
                          f"fitted twin {r['fitted_holdout']['rmse']:.4f}  ({path})")
            twin_state, cal = _load_twin_state(st, path, False)
            data = None
            for label, mode, opt, epochs in plan:
                console.rule(label)
                tcfg = TrainConfig(mode=mode, optimizer=opt, rho=rho, lr=lr, epochs=epochs)
                files[label] = runs / f"{label.replace(' ', '-')}.pt"
                run_id = rundb.start_station_run(db, "train", st, {
                    "train": asdict(tcfg), "chip_seed": chip_a, "kind": kind, "calibration": cal,
                    "out": str(files[label].resolve()), "demo": label}, calibration=cal)
                with rundb.recording(db, run_id, note=console.print):
                    recorder = rundb.TrainRecorder(db, run_id, cfg.resolve(cfg.station.runs_dir) / "checkpoints")
                    tmeta = run_training(st, tcfg, twin_state, cal, files[label], data=data, label=label,
                                         recorder=recorder)
                    db.finish(run_id, "completed", result={"out": str(files[label]),
                                                           "final": (tmeta["history"]["epochs"] or [{}])[-1]})
        console.rule("evaluating on hardware")
        with open_station(cfg, chip_a, kind) as st_a, open_station(cfg, chip_b, kind) as st_b:
            labels = {f"chip A ({st_a.device_id()})": st_a, f"chip B ({st_b.device_id()})": st_b}
            results = evaluate_models(list(files.values()), labels)
        table = Table(title="test accuracy on the virtual chips (digits, 10 classes)")
        table.add_column("training")
        for label in labels:
            table.add_column(label, justify="right")
        for label, path in files.items():
            row = results[str(path)]
            table.add_row(label, *(f"{100 * row[k]:.1f} %" for k in labels))
        console.print(table)


# Feature modules add their own commands: each exposes ``register(app)``.
for _name in ("labsat.experiments", "labsat.gui.app", "labsat.runs", "labsat.calibration.cli",
              "labsat.freespace_experiment"):
    try:
        importlib.import_module(_name).register(app)
    except ModuleNotFoundError as _exc:  # feature not built yet in this checkout
        if _exc.name != _name:
            raise


def main() -> None:  # pragma: no cover
    sys.exit(app())
