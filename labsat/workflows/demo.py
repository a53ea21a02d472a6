"""The demo: calibrate virtual chip A, train offline/online x plain/SAT, test on chips A and B.

Every step is a workflow (so each appears in the run database, tagged ``demo``)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from labsat import defaults
from labsat.workflows import calibrate as _cal
from labsat.workflows import evaluate as _eval
from labsat.workflows import training as _train
from labsat.workflows.hooks import QUIET, Hooks, run_tags


@dataclass
class DemoParams:
    chip_a: int = defaults.DEMO_CHIP_A
    chip_b: int = defaults.DEMO_CHIP_B
    offline_epochs: int = defaults.DEMO_OFFLINE_EPOCHS
    online_epochs: int = defaults.DEMO_ONLINE_EPOCHS
    rho: float = defaults.RHO
    lr: float | None = None  # None: the layer's default (workflows.default_lr, by mesh size)
    runs_dir: Path | None = None  # where models go; default <station runs_dir>/demo
    kind: str | None = None
    threads: int | None = None
    data: str | None = None  # a --data spec (labsat.data.load_dataset); default digits


@dataclass
class DemoResult:
    calibration: _cal.CalibrationResult
    models: dict = field(default_factory=dict)  # label -> model file
    devices: dict = field(default_factory=dict)  # column label -> device id
    accuracy: dict = field(default_factory=dict)  # model file -> {column label: accuracy}
    data: object = None  # the data set trained on (labsat.data.Dataset)
    evaluation_run: int | None = None  # the evaluation's run in the run database
    run_database: Path | None = None


def plan(p: DemoParams) -> list[tuple[str, str, str, int]]:
    return [("offline plain", "offline", "adam", p.offline_epochs), ("offline SAT", "offline", "sam", p.offline_epochs),
            ("online plain", "online", "adam", p.online_epochs), ("online SAT", "online", "sam", p.online_epochs)]


def run_demo(cfg, p: DemoParams, open_station, hooks: Hooks = QUIET, calibrate=None) -> DemoResult:
    """``open_station(config, chip_seed, kind)`` opens a station (the front door's, so its errors and
    signals are handled there); ``calibrate(station)`` may replace the calibration step (tests shrink it)."""
    from labsat.train import TrainConfig

    if cfg.station.backend != "sim":
        raise ValueError("station.backend: the demo runs on the virtual lab (backend: sim)")
    out_dir = p.runs_dir or cfg.resolve(cfg.station.runs_dir) / "demo"
    with open_station(cfg, p.chip_a, p.kind) as st:
        from labsat.kinds import kind_of

        kind = kind_of(st.config, st.layer_names[0])
        data = _train.dataset_for(kind.make_twin(st.config, st.layer_names[0]), spec=p.data,
                                  kind_name=kind.name)  # a bad --data stops the demo before it measures
        hooks.emit("section", f"calibrating {st.device_id()}")
        with run_tags(demo=True):
            cal = calibrate(st) if calibrate is not None else _cal.calibrate(st, hooks=hooks)
        r = cal.meta["residuals"]
        hooks.say(f"held-out RMSE: nominal twin {r['nominal_holdout']['rmse']:.4f}, "
                  f"fitted twin {r['fitted_holdout']['rmse']:.4f}  ({cal.path})")
        result = DemoResult(cal, data=data)
        for label, mode, opt, epochs in plan(p):
            hooks.emit("section", label)
            path = out_dir / f"{label.replace(' ', '-')}.pt"
            request = _train.TrainingRequest(TrainConfig(mode=mode, optimizer=opt, rho=p.rho, lr=p.lr, epochs=epochs),
                                             calibration=str(cal.path), out=str(path), threads=p.threads,
                                             data=p.data)
            with run_tags(demo=label):
                _train.train(st, request, hooks, label=label, data=data)
            result.models[label] = path
    hooks.emit("section", "evaluating on hardware")
    with open_station(cfg, p.chip_a, p.kind) as st_a, open_station(cfg, p.chip_b, p.kind) as st_b:
        stations = {f"chip A ({st_a.device_id()})": st_a, f"chip B ({st_b.device_id()})": st_b}
        result.devices = {k: s.device_id() for k, s in stations.items()}
        with run_tags(demo=True):  # the demo's evaluation is a run too
            result.evaluation_run, result.accuracy = _eval.evaluate(
                list(result.models.values()), stations, hooks,
                config={"chip_seed": p.chip_a, "other_chip_seed": p.chip_b, "kind": p.kind,
                        "data": getattr(data, "source", "") or p.data}, data=p.data)
        from labsat.runs import db_path_for

        result.run_database = db_path_for(cfg)
    return result
