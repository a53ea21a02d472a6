"""Train: offline on the twin or online on the hardware, checkpointed per epoch in the run database,
resumable from any process; the same steps whichever front door asked."""
from __future__ import annotations

import contextlib
import datetime as _dt
import os
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from labsat import defaults
from labsat.workflows.hooks import QUIET, Aborted, Hooks
from labsat.workflows.record import recorded


@dataclass
class TrainingRequest:
    """What to train and from which twin. ``train`` is a :class:`labsat.train.TrainConfig`."""

    train: object
    calibration: str | None = None  # a calibration file; None: the latest for the device; "nominal": none
    out: str | None = None  # model file; default <runs_dir>/<mode>-<optimizer>.pt
    threads: int | None = None  # torch intra-op threads; None: chosen for the tensor sizes
    evaluate_each_epoch: bool = False  # test accuracy after every epoch (the GUI's curves)
    data: str | None = None  # a --data spec (labsat.data.load_dataset): digits, mnist:DIR, npz:FILE, csv:FILE
    force: bool = False  # use a calibration of another device or kind (`train --force`); kept for --resume


@dataclass
class TrainingResult:
    run: int
    path: Path
    status: str  # completed | aborted
    epochs: list  # this process's epoch records (dicts)
    hardware_batches: int  # hardware forwards of the whole run, every process that worked on it
    calibration: str
    reason: str = ""
    meta: dict = field(default_factory=dict)


def default_lr(config, layer: str) -> float:
    """The learning rate of a training that names none (`labsat train` without ``--lr``, the GUI's
    starting value, the demo): :func:`labsat.defaults.lr_for` the mesh's size for an MZI mesh layer,
    :data:`labsat.defaults.LR` for the other kinds (tuned at their own sizes)."""
    cfg = config.layers[layer]
    return defaults.lr_for(cfg.modes if cfg.kind == "mzi_mesh" else None)


def twin_state(station, layer: str, calibration: str | Path | None, force: bool = False):
    """``(fitted twin state or None, its name)`` for ``calibration`` (a file, None = latest of the layer's
    kind, 'nominal'). The file is checked for this layer (finite values, shapes, known parameters) and,
    unless ``force``, for this device and kind (:func:`labsat.kinds.calibration_for`)."""
    from labsat.kinds import calibration_for

    if calibration == "nominal":
        return None, "nominal"
    record, path = calibration_for(station.config, layer, station.device_id(layer), calibration,
                                   force=force)  # checked
    return record["twin"], path


def dataset_for(twin, encoder_state=None, spec: str | None = None, kind_name: str = ""):
    """The data set a layer trains on: ``spec`` (a ``--data`` spec, :func:`labsat.data.load_dataset`;
    default PCA'd digits) encoded for the twin's inputs, with a model's encoder when given. A kind whose twin
    brings its own inputs (free space: images) takes only ``digits`` (or the name its models record)."""
    from labsat.data import Encoder, load_dataset

    if hasattr(twin, "load_data"):
        own = twin.load_data(seed=0) if encoder_state is None else twin.load_data(seed=0, encoder_state=encoder_state)
        if spec not in (None, "digits", own.name):  # a model records its data set by name
            raise ValueError(f"--data {spec}: the {kind_name or 'layer'} network takes images; "
                             "it trains on the built-in digits only")
        return own
    return load_dataset(spec or "digits", twin.n_inputs, seed=0,
                        encoder=None if encoder_state is None else Encoder.from_state(encoder_state))


@contextlib.contextmanager
def torch_threads(elements_per_op: int, requested: int | None):
    """Run the block with the intra-op thread count :func:`labsat.defaults.torch_threads` chooses."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(defaults.torch_threads(elements_per_op, requested))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def train(station, request: TrainingRequest, hooks: Hooks = QUIET, *, layer: str | None = None, hardware=None,
          data=None, label: str = "", resume: int | None = None) -> TrainingResult:
    """Train layer ``layer`` of a connected ``station``, recorded as a ``train`` run.

    ``hardware`` (online mode) defaults to the layer's own; ``resume=RUN`` continues that run from its
    last checkpoint (the caller passes the run's stored request, see :func:`resume_request`). An
    :class:`Aborted` from ``hooks.check`` ends the run ``interrupted`` (resumable): the outputs go to their
    safe state and the model trained so far is saved with status ``aborted``.
    """
    from labsat import runs
    from labsat.kinds import kind_of
    from labsat.train import model_for, save_model
    from labsat.train import train as train_loop

    cfg = request.train
    layer = layer or station.layer_names[0]
    layer_cfg = station.config.layers[layer]
    if cfg.lr is None:  # recorded resolved: a resumed run goes on at the same rate
        cfg = replace(cfg, lr=default_lr(station.config, layer))
    state, cal = twin_state(station, layer, request.calibration, request.force)
    runs_dir = station.config.resolve(station.config.station.runs_dir)
    out = Path(request.out) if request.out else runs_dir / f"{cfg.mode}-{cfg.optimizer}.pt"
    kind = kind_of(station.config, layer)
    twin0 = kind.make_twin(station.config, layer)
    data = data or dataset_for(twin0, spec=request.data, kind_name=kind.name)  # checked before a run is recorded
    config = {"train": asdict(cfg), "chip_seed": station.config.station.sim.chip_seed if station.simulated else None,
              "kind": kind.name, "layer": layer, "calibration": cal, "out": str(out.resolve()),
              "threads": request.threads, "data": getattr(data, "source", "") or request.data or data.name,
              "force": request.force}
    with recorded(station, "train", config, hooks, calibration=cal, resume=resume) as rec:
        if resume is None:
            hooks.say(f"run {rec.run} in {os.path.normpath(rec.db.path)}")
        hw = None
        if cfg.mode == "online":
            hw = hardware if hardware is not None else station.layer(layer)
            hw.forget_controls()
        model = model_for(station.config, layer, data.n_classes, seed=cfg.seed, twin_state=state, hardware=hw)
        recorder = runs.TrainRecorder(rec.db, rec.run, runs_dir / "checkpoints", hardware=hw)
        resumed = recorder.resume_state()
        done = 0 if resumed is None else int(resumed["epoch"])
        earlier = rec.db.hardware_batches(rec.run, through_epoch=done)  # forwards of earlier processes
        hooks.emit("train_start", {"label": label or f"{cfg.mode} {cfg.optimizer}", "epochs": cfg.epochs,
                                   "done": done})
        epochs: list = []
        position = {"epoch": done + 1}

        def on_step(step, steps):
            hooks.emit("step", (position["epoch"], step, steps, hw.batches if hw is not None else 0))
            hooks.tick()

        def on_epoch(record):
            epochs.append(asdict(record))
            position["epoch"] = record.epoch + 1
            hooks.emit("epoch", asdict(record))

        status, reason = "completed", ""
        elements = data.x_train.shape[-1] * max(int(getattr(twin0, "n_outputs", 1)), 1) * cfg.batch_size
        try:
            with torch_threads(elements, request.threads):
                train_loop(model, data, cfg, on_step=on_step, on_epoch=on_epoch, resume=resumed,
                           checkpoint=recorder.checkpoint, evaluate_each_epoch=request.evaluate_each_epoch)
        except Aborted as exc:
            status, reason = "aborted", str(exc)
            station.safe_state()  # after the last write of this run
        recorder.record_final_parameters(model, layer_cfg)
        batches = earlier + (hw.batches if hw is not None else 0)
        meta = {"history": {"config": asdict(cfg), "epochs": epochs}, "device": station.device_id(layer),
                "calibration": cal, "layer": layer_cfg.model_dump(), "layer_name": layer, "kind": layer_cfg.kind,
                "n_classes": data.n_classes, "dataset": data.name, "data": getattr(data, "source", "") or data.name,
                "created_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(),
                "hardware_batches": batches, "status": status, "run": rec.run,
                "twin_refreshes": getattr(getattr(model.physical.twin, "online", None), "refreshes", 0)}
        if reason:
            meta["abort_reason"] = reason
        save_model(out, model, data.encoder, meta)
        last = epochs[-1] if epochs else (rec.db.epochs(rec.run) or [{}])[-1]
        summary = {"out": str(out), "final": last, "hardware_batches": batches}
        if status == "aborted":
            rec.db.finish(rec.run, "interrupted", error=f"Aborted: {reason}", result=summary)
            hooks.say(runs.kept(rec.db, rec.run))
        else:
            rec.db.finish(rec.run, "completed", result=summary)
    return TrainingResult(rec.run, out, status, epochs, batches, cal, reason, meta)


def resume_request(stored: dict) -> tuple[TrainingRequest, dict]:
    """The request a stored ``train`` run was started with, and how to open its station
    (``{"chip_seed": ..., "kind": ...}``)."""
    from labsat.runs import RunError
    from labsat.train import TrainConfig

    if "train" not in stored:
        raise RunError("the run has no training settings to resume with")
    known = TrainConfig.__dataclass_fields__
    cfg = TrainConfig(**{k: v for k, v in stored["train"].items() if k in known})
    request = TrainingRequest(cfg, calibration=stored.get("calibration"), out=stored.get("out"),
                              threads=stored.get("threads"), data=stored.get("data"),
                              force=bool(stored.get("force", False)))
    return request, {"chip_seed": stored.get("chip_seed"), "kind": stored.get("kind")}
