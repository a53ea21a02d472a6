"""The SAT paper's claims, measured on the virtual lab: ``labsat experiment NAME``.

- ``imprecise``: train offline on a twin calibrated with a small measurement budget (a realistic,
  imprecise model), measure on the device: plain, SAT, ASAM, SAF, MESA, noise injection, and online
  physics-aware training (PAT) with and without SAT.
- ``transfer``: models trained for chip A, deployed unchanged on other virtual chips (other fabrication
  draws); accuracy distribution, plain vs SAT.
- ``perturbation``: after deployment, sweep a thermal drift (the chip's environment temperature);
  accuracy vs magnitude, no retraining.
- ``sharpness``: loss increase within rho (random and adversarial directions) and the top Hessian
  eigenvalue (power iteration) of each trained model, on the calibrated twin.
- ``rho``: device accuracy of offline SAT vs rho on the imprecise twin (tuning SAT's one knob).

Every number is a mean +- std over ``--seeds`` seeds (the seed sets the calibration's random settings,
the network's initialisation and the data order). Each experiment writes ``results.csv``,
``table.md``, ``plot.png`` and ``results.json`` into ``<out>/<name>``. The hidden truth of the virtual
chip is never read: experiments only touch its environment (``lab.chip.extra_kelvin``).

The independent units (calibrations of virtual chips, trainings, evaluations on each chip and drift,
sharpness measures; :mod:`labsat.experiment_units`) run as Dask tasks through :mod:`labsat.sweeps`: on
an embedded LocalCluster sized to the machine, on a lab's cluster (``--scheduler tcp://HOST:8786``), or
one after the other (``--scheduler serial``), with the same numbers. Each result is stored in the run
database (``<runs_dir>/labsat.sqlite``, table ``sweep_results``) as its task ends, keyed by the task, so
the experiments share their calibrations and models and an interrupted experiment, re-run, computes
only what is missing.
"""
from __future__ import annotations

import functools
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Optional

import numpy as np
import torch

from labsat.paper.common import write_results

if TYPE_CHECKING:
    from rich.progress import Progress

EXPERIMENTS = ("imprecise", "transfer", "perturbation", "sharpness", "rho")


@dataclass
class Setup:
    """Sizes and knobs of a run; :meth:`small` for CI, :meth:`full` for the paper-scale run."""

    station: Path = Path("instruments.yaml")
    kind: Optional[str] = None  # the station's layer of this kind (mesh, microring, ...); None: its first layer
    chip: int = 1
    data: str = "digits"
    seeds: int = 3
    offline_epochs: int = 10
    online_epochs: int = 3  # online methods fine-tune the plain offline model on the hardware
    lr: Optional[float] = None  # None: the layer's default (labsat.workflows.default_lr: by mesh size)
    batch_size: int = 64
    rho: float = 0.05  # SAM radius in control units (u in [0, 1]), L2 over the controls only
    asam_rho: float = 0.1
    sigma: float = 0.01  # noise injection std (control units, controls only)
    perturb: str = "controls"  # SAM/ASAM/noise perturb the physical controls, not the digital readout
    cal_settings: int = 16  # calibration budget: random heater settings ...
    cal_inputs: int = 12  # ... times inputs per setting (the imprecise twin)
    n_chips: int = 10  # transfer: other chips
    fab_scale: Optional[float] = None  # scale the virtual chips' fabrication spread (phase offsets, couplers)
    drift_kelvin: tuple = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0)
    rho_grid: tuple = (0.0, 0.05, 0.1, 0.2, 0.3, 0.5, 0.8)
    sharp_rho: float = 0.1  # radius for the loss-increase measure (controls only)
    sharp_random: int = 10
    sharp_adv_steps: int = 5
    hessian_iters: int = 20
    sharp_samples: int = 300
    n_train: Optional[int] = 2000  # mnist subsets
    n_test: Optional[int] = 1000
    methods: tuple = ("plain", "sat", "asam", "saf", "mesa", "noise", "pat", "pat+sat", "pat+sat(hw)")
    out: Path = Path("runs/experiments")
    full: bool = False
    # where the units run (labsat.sweeps): None = embedded LocalCluster of `workers` processes (or Dask config
    # labsat.scheduler), "tcp://HOST:8786" = a lab's cluster, "serial" = this process; the same numbers
    scheduler: Optional[str] = None
    workers: Optional[int] = None
    store: Optional[Path] = None  # run database for the results (default: the station's <runs_dir>/labsat.sqlite)

    @classmethod
    def small(cls, **kw) -> "Setup":
        return cls(**kw)

    @classmethod
    def make_full(cls, **kw) -> "Setup":
        base = dict(seeds=5, offline_epochs=30, online_epochs=10, n_chips=20, full=True,
                    drift_kelvin=(0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 4.0),
                    sharp_random=20, sharp_adv_steps=10, hessian_iters=40, sharp_samples=449,
                    n_train=10000, n_test=2000)
        base.update(kw)
        return cls(**base)


METHOD_LABELS = {
    "plain": "plain (offline)", "sat": "SAT (offline)", "asam": "ASAM (offline)", "saf": "SAF (offline)",
    "mesa": "MESA (offline)", "noise": "noise inj. (offline)", "pat": "PAT (online)",
    "pat+sat": "PAT+SAT (online, twin-perturbed)", "pat+sat(hw)": "PAT+SAT (online, both on hw)",
}
ONLINE_START = "plain"  # online methods start from this offline model (same seed) and fine-tune on hardware


def method_config(method: str, setup: Setup, seed: int):
    from labsat.train import TrainConfig

    off = dict(mode="offline", epochs=setup.offline_epochs, lr=setup.lr, batch_size=setup.batch_size, seed=seed)
    on = dict(mode="online", epochs=setup.online_epochs, lr=setup.lr, batch_size=setup.batch_size, seed=seed)
    table = {
        "plain": dict(off, optimizer="adam"),
        "sat": dict(off, optimizer="sam", rho=setup.rho, perturb=setup.perturb),
        "asam": dict(off, optimizer="asam", rho=setup.asam_rho, perturb=setup.perturb),
        "saf": dict(off, optimizer="saf"),
        "mesa": dict(off, optimizer="mesa"),
        "noise": dict(off, optimizer="noise", sigma=setup.sigma, perturb=setup.perturb),
        "pat": dict(on, optimizer="adam"),
        "pat+sat": dict(on, optimizer="sam", rho=setup.rho, twin_perturbed=True, perturb=setup.perturb),
        "pat+sat(hw)": dict(on, optimizer="sam", rho=setup.rho, twin_perturbed=False, perturb=setup.perturb),
    }
    if method.startswith("sat@"):  # rho sweep
        rho = float(method[4:])
        return TrainConfig(**dict(off, optimizer="sam" if rho > 0 else "adam", rho=rho, perturb=setup.perturb))
    if method not in table:
        raise ValueError(f"unknown method {method!r}; choose from {', '.join(table)}")
    return TrainConfig(**table[method])


class Lab:
    """Chip A's station config, the layer the experiment runs on (any kind with a virtual device), the data,
    and the experiment's units run as sweeps (:mod:`labsat.sweeps`): calibrations per seed, trainings per
    (method, seed), evaluations per (model, chip, drift)."""

    def __init__(self, setup: Setup, sweeps, name: str = "experiment", log: Callable[[str], None] = print):
        from labsat.experiment_units import env_of, environment

        self.config, self.layer_name, self.kind = resolve(name, setup)
        if setup.lr is None:  # the rate every front door defaults to for this layer (CLI, GUI, demo)
            from labsat.workflows import default_lr

            setup = replace(setup, lr=default_lr(self.config, self.layer_name))
        self.setup, self.sweeps, self.name, self.log = setup, sweeps, name, log
        if setup.fab_scale is not None:
            from labsat.drivers.sim.chip import ChipSpec

            self.config = self.config.model_copy(deep=True)
            self.config.station.sim.phase_offset_sigma = ChipSpec.phase_offset_sigma * setup.fab_scale
            self.config.station.sim.coupler_sigma = ChipSpec.coupler_sigma * setup.fab_scale
        data = setup.data
        if data.startswith("mnist:") and data[6:]:
            data = "mnist:" + str(Path(data[6:]).resolve())  # workers elsewhere find it on a shared path
        self.env = env_of(self.config, data, setup.n_train, setup.n_test, layer=self.layer_name)
        self.data = environment({"env": self.env}).data  # the data set every unit builds (checked here)

    def run(self, fn, tasks: list[dict], what: str) -> list:
        return self.sweeps.run(fn, tasks, name=f"{self.name}: {what}")

    # --- calibration with a budget: the imprecise twin ---
    def twin_states(self, seeds) -> dict[int, dict]:
        from labsat import experiment_units as units

        s = self.setup
        seeds = list(seeds)
        tasks = [{"env": self.env, "chip": s.chip, "settings": s.cal_settings, "inputs": s.cal_inputs, "seed": seed}
                 for seed in seeds]
        return dict(zip(seeds, self.run(units.calibrate, tasks, "calibrations")))

    # --- trained models ---
    def models(self, methods, seeds) -> dict[tuple[str, int], dict]:
        """{(method, seed): {"state": state dict, "meta": {...}}}: offline trainings first, then the online
        fine-tunings of the plain offline model (same seed)."""
        from labsat import experiment_units as units

        s = self.setup
        methods, seeds = list(dict.fromkeys(methods)), list(seeds)
        cfgs = {(m, seed): method_config(m, s, seed) for m in methods for seed in seeds}
        online = [k for k, c in cfgs.items() if c.mode == "online"]
        offline = [k for k, c in cfgs.items() if c.mode == "offline"]
        offline += [(ONLINE_START, seed) for seed in seeds
                    if any(k[1] == seed for k in online) and (ONLINE_START, seed) not in cfgs]
        twins = self.twin_states(seeds)

        def task(m, seed, start=None):
            cfg = cfgs.get((m, seed)) or method_config(m, s, seed)
            return {"env": self.env, "chip": s.chip if cfg.mode == "online" else None, "config": asdict(cfg),
                    "seed": seed, "twin": twins[seed], "start": start}

        done = dict(zip(offline, self.run(units.train, [task(*k) for k in offline], "offline trainings")))
        if online:
            starts = {seed: units.state_json(done[(ONLINE_START, seed)]["state"]) for _, seed in online}
            done.update(zip(online, self.run(units.train, [task(m, seed, starts[seed]) for m, seed in online],
                                              "online trainings")))
        out = {}
        for k in cfgs:
            meta = dict(done[k]["meta"], method=k[0])
            out[k] = {"state": done[k]["state"], "meta": meta}
            self.log(f"{METHOD_LABELS.get(k[0], k[0])} seed {k[1]}: trained in {meta['seconds']:.1f} s"
                     + (f" ({meta['hardware_queries']} hardware queries, {meta['queries_per_step']:.0f}/step)"
                        if meta["hardware_queries"] else ""))
        return out

    # --- evaluations, one fresh virtual lab each ---
    def evaluate(self, models: dict[tuple[str, int], dict], chips=None, drifts=(0.0,),
                 twin: bool = False) -> dict[tuple, dict]:
        """{(method, seed, chip, delta_kelvin): {"device": accuracy, "twin": accuracy or None}}."""
        from labsat import experiment_units as units

        chips = [self.setup.chip] if chips is None else list(chips)
        specs = {k: {"seed": k[1], "state": units.state_json(r["state"])} for k, r in models.items()}
        keys = [(m, seed, chip, float(dk)) for chip in chips for dk in drifts for (m, seed) in models]
        tasks = [{"env": self.env, "chip": chip, "delta_kelvin": dk, "model": specs[(m, seed)], "twin": twin}
                 for m, seed, chip, dk in keys]
        return dict(zip(keys, self.run(units.evaluate, tasks, "evaluations")))


def resolve(name: str, setup: Setup):
    """``(station config, layer, kind)`` of experiment ``name`` with ``setup``, or one line (ValueError, a
    ConfigError) saying why it cannot run: an unknown experiment, a station that is not the virtual lab,
    no layer of ``setup.kind``, or an experiment that makes no sense for the layer's kind (every one
    measures on a virtual device; ``perturbation`` drifts the device's environment temperature;
    ``--fab-scale`` scales the MZI mesh's fabrication spread)."""
    from labsat.config import load_config
    from labsat.kinds import kind_of, layer_for_kind

    if name not in RUNNERS:
        raise ValueError(f"unknown experiment {name!r}; choose from {', '.join(RUNNERS)}")
    if setup.lr is not None and not setup.lr > 0:
        raise ValueError(f"--lr: the learning rate must be > 0, got {setup.lr}")
    if setup.seeds < 1:
        raise ValueError("--seeds must be at least 1")
    config = load_config(setup.station)
    if config.station.backend != "sim":
        # units are distributed: only virtual-lab and twin work may leave the process that owns a bench
        raise ValueError("station.backend: the experiments run on the virtual lab (backend: sim)")
    layer = layer_for_kind(config, setup.kind)
    kind = kind_of(config, layer)
    scene = kind.make_scene(config, layer, config.station.sim.chip_seed)
    if scene is None:
        raise ValueError(f"experiment {name}: the {kind.name} kind (layer {layer}) has no virtual device to "
                         "measure on")
    if name == "perturbation" and not hasattr(scene, "extra_kelvin"):
        raise ValueError(f"experiment perturbation: the {kind.name} kind (layer {layer}) has no environment "
                         "temperature to drift; it applies to heater-tuned kinds (mesh, microring, pulse)")
    if setup.fab_scale is not None:
        if kind.name != "mesh":
            raise ValueError(f"--fab-scale: scales the MZI mesh's fabrication spread; layer {layer} is a "
                             f"{kind.name}")
        if setup.fab_scale < 0:
            raise ValueError("--fab-scale must be non-negative")
    return config, layer, kind


# --- aggregation and output ---
def mean_std(values) -> tuple[float, float]:
    a = np.asarray(values, dtype=float)
    return float(a.mean()), float(a.std(ddof=1)) if len(a) > 1 else 0.0


def _fmt(values, pct: bool = True, digits: int = 1) -> str:
    m, s = mean_std(values)
    k = 100.0 if pct else 1.0
    return f"{k * m:.{digits}f} ± {k * s:.{digits}f}"


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _label(method: str) -> str:
    """A method's name for a plot axis, one short line per part."""
    return METHOD_LABELS.get(method, method).replace(" (", "\n(").replace(", ", ",\n")


def _md_table(header: list[str], body: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in body]
    return "\n".join(lines) + "\n"


def _describe(setup: Setup) -> str:
    return (f"{'' if setup.kind is None else setup.kind + ', '}data {setup.data}, chip A = vchip-{setup.chip}, {setup.seeds} seeds, offline {setup.offline_epochs} "
            f"epochs, online {setup.online_epochs} epochs (fine-tuning the plain offline model), twin calibrated from {setup.cal_settings}x"
            f"{setup.cal_inputs} measurements, rho {setup.rho}, ASAM rho {setup.asam_rho}, noise sigma {setup.sigma} "
            f"(perturbing the {setup.perturb})"
            + ("" if setup.fab_scale is None else f", fabrication spread x{setup.fab_scale:g}"))


# --- 1. imprecise model ---
def run_imprecise(lab: Lab) -> dict:
    s = lab.setup
    models = lab.models(s.methods, range(s.seeds))
    acc = lab.evaluate(models, twin=True)
    rows = []
    for seed in range(s.seeds):
        for method in s.methods:
            meta, a = models[(method, seed)]["meta"], acc[(method, seed, s.chip, 0.0)]
            rows.append({"method": method, "seed": seed, "device_accuracy": a["device"], "twin_accuracy": a["twin"],
                         "hardware_queries": meta["hardware_queries"], "queries_per_step": meta["queries_per_step"],
                         "train_seconds": round(meta["seconds"], 2)})
    body = []
    for method in s.methods:
        r = [x for x in rows if x["method"] == method]
        body.append([METHOD_LABELS[method], _fmt([x["device_accuracy"] for x in r]),
                     _fmt([x["twin_accuracy"] for x in r]), f"{np.mean([x['hardware_queries'] for x in r]):.0f}",
                     f"{np.mean([x['queries_per_step'] for x in r]):.0f}"])
    md = (f"Imprecise twin: test accuracy (%) on the device vs on the twin it was trained with; {_describe(s)}.\n\n"
          + _md_table(["training", "device accuracy", "twin accuracy", "hardware queries", "queries/step"], body))
    plt = _plt()
    fig, ax = plt.subplots(figsize=(9, 4))
    xs = np.arange(len(s.methods))
    for off, key, label in ((-0.2, "device_accuracy", "on the device"), (0.2, "twin_accuracy", "on the twin")):
        ms = [mean_std([x[key] for x in rows if x["method"] == m]) for m in s.methods]
        ax.bar(xs + off, [100 * m for m, _ in ms], 0.4, yerr=[100 * e for _, e in ms], capsize=3, label=label)
    ax.set_xticks(xs, [_label(m) for m in s.methods], fontsize=7)
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("Trained on an imprecise twin, measured on the device")
    ax.legend()
    fig.tight_layout()
    return {"rows": rows, "table": md, "figure": fig}


# --- 2. transfer ---
TRANSFER_METHODS = ("plain", "sat", "noise", "pat", "pat+sat")


def run_transfer(lab: Lab) -> dict:
    s = lab.setup
    methods = [m for m in TRANSFER_METHODS if m in s.methods]
    models = lab.models(methods, range(s.seeds))
    chips = [s.chip + 1 + k for k in range(s.n_chips)]
    acc = lab.evaluate(models, chips=[s.chip] + chips)
    rows = [{"method": m, "seed": seed, "chip": chip, "own_chip": chip == s.chip, "accuracy": a["device"]}
            for (m, seed, chip, _), a in acc.items()]
    body = []
    for m in methods:
        own = [x["accuracy"] for x in rows if x["method"] == m and x["own_chip"]]
        other = [x["accuracy"] for x in rows if x["method"] == m and not x["own_chip"]]
        per_seed = [np.mean([x["accuracy"] for x in rows if x["method"] == m and not x["own_chip"] and x["seed"] == k])
                    for k in range(s.seeds)]
        body.append([METHOD_LABELS[m], _fmt(own), _fmt(per_seed), f"{100 * np.min(other):.1f}",
                     f"{100 * np.median(other):.1f}", f"{100 * (np.mean(own) - np.mean(other)):.1f}"])
    md = (f"Transfer: trained for chip A (vchip-{s.chip}), deployed unchanged on {s.n_chips} other chips "
          f"(vchip-{chips[0]}..{chips[-1]}); accuracy (%), {_describe(s)}. 'other chips' is the mean over "
          "chips, then mean ± std over seeds; min and median over all (chip, seed).\n\n"
          + _md_table(["training", "chip A", "other chips", "min", "median", "drop"], body))
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8, 4))
    data = [[100 * x["accuracy"] for x in rows if x["method"] == m and not x["own_chip"]] for m in methods]
    ax.boxplot(data)
    ax.set_xticks(range(1, len(methods) + 1), [_label(m) for m in methods], fontsize=7)
    for i, m in enumerate(methods):
        own = [100 * x["accuracy"] for x in rows if x["method"] == m and x["own_chip"]]
        ax.scatter([i + 1] * len(own), own, marker="*", color="red", zorder=3, label="chip A" if i == 0 else None)
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(f"Deployed unchanged on {s.n_chips} other chips ({s.seeds} seeds each)")
    ax.legend()
    fig.tight_layout()
    return {"rows": rows, "table": md, "figure": fig}


# --- 3. perturbation (thermal drift after deployment) ---
def run_perturbation(lab: Lab) -> dict:
    s = lab.setup
    methods = [m for m in TRANSFER_METHODS if m in s.methods]
    models = lab.models(methods, range(s.seeds))
    # the environment changes (a fresh virtual lab of chip A per drift and model); the model is not retrained
    acc = lab.evaluate(models, drifts=s.drift_kelvin)
    rows = [{"method": m, "seed": seed, "delta_kelvin": dk, "accuracy": a["device"]}
            for (m, seed, _, dk), a in acc.items()]
    header = ["training"] + [f"ΔT = {dk:g} K" for dk in s.drift_kelvin]
    body = [[METHOD_LABELS[m]] + [_fmt([x["accuracy"] for x in rows if x["method"] == m and x["delta_kelvin"] == dk])
                                  for dk in s.drift_kelvin] for m in methods]
    md = (f"Thermal drift after deployment on chip A (vchip-{s.chip}), no retraining: accuracy (%) vs the "
          f"chip's temperature change; {_describe(s)}.\n\n" + _md_table(header, body))
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4))
    for m in methods:
        ms = [mean_std([x["accuracy"] for x in rows if x["method"] == m and x["delta_kelvin"] == dk])
              for dk in s.drift_kelvin]
        mean = np.array([a for a, _ in ms]) * 100
        std = np.array([b for _, b in ms]) * 100
        ax.plot(s.drift_kelvin, mean, marker="o", label=METHOD_LABELS[m])
        ax.fill_between(s.drift_kelvin, mean - std, mean + std, alpha=0.15)
    ax.set_xlabel("temperature change after deployment (K)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("Thermal drift, no retraining")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return {"rows": rows, "table": md, "figure": fig}


# --- 4. sharpness ---
def run_sharpness(lab: Lab) -> dict:
    from labsat import experiment_units as units

    s = lab.setup
    n = min(s.sharp_samples, len(lab.data.x_test))  # as the sharpness unit takes them
    models = lab.models(s.methods, range(s.seeds))
    keys = [(m, seed) for seed in range(s.seeds) for m in s.methods]
    tasks = [{"env": lab.env, "model": {"seed": seed, "state": units.state_json(models[(m, seed)]["state"])},
              "seed": seed, "rho": s.sharp_rho, "n_random": s.sharp_random, "adversarial_steps": s.sharp_adv_steps,
              "hessian_iters": s.hessian_iters, "samples": s.sharp_samples} for m, seed in keys]
    rows = [{"method": m, "seed": seed, **r} for (m, seed), r in zip(keys, lab.run(units.sharpness, tasks, "sharpness"))]
    body = []
    for m in s.methods:
        r = [x for x in rows if x["method"] == m]
        body.append([METHOD_LABELS[m]] + [_fmt([x[k] for x in r], pct=False, digits=3)
                                           for k in ("twin_loss", "random_increase", "adversarial_increase")]
                    + [_fmt([x[k] for x in r], pct=False, digits=2) for k in ("hessian_top_controls", "hessian_top_all")])
    md = (f"Sharpness on the calibrated twin ({n} test samples): loss increase within an L2 ball of radius "
          f"{s.sharp_rho} in the controls u ({s.sharp_random} random directions; {s.sharp_adv_steps}-step "
          "projected gradient ascent), and the top Hessian eigenvalue (power iteration on Hessian-vector "
          f"products) in the controls and in all trained parameters; {_describe(s)}.\n\n"
          + _md_table(["training", "loss", "max increase (random)", "max increase (adversarial)",
                       "λmax (controls)", "λmax (all)"], body))
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    xs = np.arange(len(s.methods))
    labels = [_label(m) for m in s.methods]
    for ax, key, title in ((axes[0], "adversarial_increase", f"max loss increase, ||e|| <= {s.sharp_rho} (controls)"),
                           (axes[1], "hessian_top_controls", "top Hessian eigenvalue (controls)")):
        ms = [mean_std([x[key] for x in rows if x["method"] == m]) for m in s.methods]
        ax.bar(xs, [a for a, _ in ms], yerr=[b for _, b in ms], capsize=3)
        ax.set_xticks(xs, labels, fontsize=6, rotation=45, ha="right")
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return {"rows": rows, "table": md, "figure": fig}


# --- 5. rho sweep ---
def run_rho(lab: Lab) -> dict:
    s = lab.setup
    methods = {rho: f"sat@{rho:g}" for rho in s.rho_grid}
    models = lab.models(methods.values(), range(s.seeds))
    acc = lab.evaluate(models, twin=True)
    rows = [{"rho": rho, "seed": seed, "device_accuracy": acc[(methods[rho], seed, s.chip, 0.0)]["device"],
             "twin_accuracy": acc[(methods[rho], seed, s.chip, 0.0)]["twin"]}
            for seed in range(s.seeds) for rho in s.rho_grid]
    body = [[f"{rho:g}", _fmt([x["device_accuracy"] for x in rows if x["rho"] == rho]),
             _fmt([x["twin_accuracy"] for x in rows if x["rho"] == rho])] for rho in s.rho_grid]
    md = (f"Offline SAT on the imprecise twin vs rho (rho = 0 is plain Adam): accuracy (%); {_describe(s)}.\n\n"
          + _md_table(["rho", "device accuracy", "twin accuracy"], body))
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 4))
    for key, label in (("device_accuracy", "device"), ("twin_accuracy", "twin")):
        ms = [mean_std([x[key] for x in rows if x["rho"] == rho]) for rho in s.rho_grid]
        ax.errorbar(s.rho_grid, [100 * a for a, _ in ms], yerr=[100 * b for _, b in ms], marker="o", capsize=3,
                    label=label)
    ax.set_xlabel("rho (control units, global L2)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("Offline SAT: choosing rho")
    ax.legend()
    fig.tight_layout()
    return {"rows": rows, "table": md, "figure": fig}


RUNNERS = {"imprecise": run_imprecise, "transfer": run_transfer, "perturbation": run_perturbation,
           "sharpness": run_sharpness, "rho": run_rho}


def run_experiment(name: str, setup: Setup, log: Callable[[str], None] = print, *,
                   progress: bool | Progress = False) -> dict:
    """Run one experiment and write its table, CSV, JSON and PNG into ``setup.out / name``.

    Its units run as sweeps (:mod:`labsat.sweeps`): ``setup.scheduler`` None (an embedded LocalCluster of
    ``setup.workers`` processes, or the address in Dask's config ``labsat.scheduler``),
    ``"tcp://HOST:8786"`` or ``"serial"``; results are stored in ``setup.store`` (default: the station's run
    database) as each task ends, and a re-run computes only what is missing. ``progress``: a bar per sweep
    (``True``: its own display; a running ``rich.progress.Progress``: added to the caller's display)."""
    from labsat.runs import db_path_for
    from labsat.sweeps import Sweeps

    config = resolve(name, setup)[0]  # checked before anything starts
    t0 = time.perf_counter()
    store = setup.store if setup.store is not None else db_path_for(config)
    with Sweeps(store, scheduler=setup.scheduler, n_workers=setup.workers, progress=progress, log=log) as sweeps:
        lab = Lab(setup, sweeps, name=name, log=log)
        result = RUNNERS[name](lab)
    directory = Path(setup.out) / name
    meta = {"experiment": name,
            "setup": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(lab.setup).items()},
            "seconds": time.perf_counter() - t0}
    write_results(directory, result["rows"], result["table"], meta)
    result["figure"].savefig(directory / "plot.png", dpi=120)
    _plt().close(result["figure"])
    result.update(directory=directory, seconds=meta["seconds"])
    return result


def register(app) -> None:
    import typer

    from labsat.cli_common import LrOpt
    from rich.console import Console
    from rich.markdown import Markdown
    from rich.progress import ProgressColumn
    from rich.text import Text

    console = Console()

    class _Count(ProgressColumn):
        """The experiment's line counts its steps; a sweep's bar counts its tasks (done/total)."""

        def render(self, task) -> Text:
            if task.total is None:
                return Text(f"{task.completed:.0f} steps")
            return Text(f"{task.completed:.0f}/{task.total:.0f} tasks", style="progress.download")

    class _Info(ProgressColumn):
        """The experiment's latest note (sweep bars have none)."""

        def render(self, task) -> Text:
            return Text(str(task.fields.get("info", "")), style="dim", no_wrap=True, overflow="ellipsis")

    def experiment(name: str = typer.Argument(..., help="imprecise | transfer | perturbation | sharpness | rho | "
                                                         "paper-mzi | paper-transfer | paper-microring | paper-freespace"),
                   full: bool = typer.Option(False, "--full", help="paper-scale sizes (minutes to hours)"),
                   seeds: Optional[int] = typer.Option(None, help="seeds (mean ± std over them); default 3, --full 5"),
                   data: str = typer.Option("digits", help="digits | mnist:DIR | npz:FILE | csv:FILE (see labsat.data)"),
                   station: Path = typer.Option(Path("instruments.yaml"), "--station", "-s"),
                   kind: Optional[str] = typer.Option(None, help="the station's layer of this kind (mesh, microring, "
                                                      "freespace, pulse, ...); default: its first layer"),
                   chip: int = typer.Option(1, help="chip A: the virtual chip models are trained for"),
                   rho: Optional[float] = typer.Option(None, help="SAM radius (control units)"),
                   lr: Optional[float] = LrOpt,
                   sigma: Optional[float] = typer.Option(None, help="noise-injection std (control units)"),
                   offline_epochs: Optional[int] = typer.Option(None), online_epochs: Optional[int] = typer.Option(None),
                   cal_settings: Optional[int] = typer.Option(None, help="calibration budget: heater settings"),
                   cal_inputs: Optional[int] = typer.Option(None, help="calibration budget: inputs per setting"),
                   chips: Optional[int] = typer.Option(None, help="transfer: number of other chips"),
                   rho_grid: Optional[str] = typer.Option(None, help="rho experiment: comma-separated radii"),
                   fab_scale: Optional[float] = typer.Option(None, help="scale the virtual chips' fabrication "
                                                             "spread (phase offsets, couplers); 1 = default"),
                   out: Path = typer.Option(Path("runs/experiments"), help="output root (one folder per experiment)"),
                   scheduler: Optional[str] = typer.Option(
                       None, help="where the units run: a Dask scheduler address (tcp://HOST:8786), 'serial' (this "
                       "process), 'local' (an embedded LocalCluster; the default, unless Dask config labsat.scheduler "
                       "names another)"),
                   workers: Optional[int] = typer.Option(None, min=1, help="embedded LocalCluster: worker processes "
                                                         "(1 thread each); default: the CPUs available"),
                   settings: Optional[list[str]] = typer.Option(None, "--set", help="paper-*: override a setting, "
                                                                "KEY=VALUE (repeatable), e.g. --set readout=scale"),
                   as_json: bool = typer.Option(False, "--json", help="print the rows as JSON (progress on stderr)")):
        """Measure one of the SAT paper's claims on the virtual lab; writes a table and a plot."""
        from labsat.calibration import CalibrationError
        from labsat.config import ConfigError
        from labsat.runs import RunError
        from labsat.sweeps import SweepError

        torch.set_num_threads(1)
        if name.startswith("paper-"):  # the paper's own protocols: labsat.paper
            from labsat import paper
            from labsat.config import ConfigError as _ConfigError
            from labsat.workflows import Hooks, paper_experiment

            try:  # recorded as an experiment run in the station's run database (labsat runs list)
                result = paper_experiment(name, station, paper.run,
                                          Hooks(note=lambda msg: console.print(f"[dim]{msg}[/]", soft_wrap=True)),
                                          full=full, seeds=seeds, chips=chips, data=data, out=out,
                                          settings=settings, scheduler=None if scheduler == "local" else scheduler,
                                          n_workers=workers)
            except (ValueError, FileNotFoundError, _ConfigError, OSError) as exc:
                console.print(f"[bold red]error:[/] {exc}", soft_wrap=True)
                raise typer.Exit(2)
            console.print(Markdown(result["table"]))
            console.print(f"wrote {result['directory']}/(table.md, results.csv, results.json, plot.png) "
                          f"in {result['seconds']:.0f} s (run {result['run']})", soft_wrap=True)
            return
        try:
            grid = None if rho_grid is None else tuple(float(r) for r in rho_grid.split(","))
        except ValueError:
            console.print(f"[bold red]error:[/] --rho-grid: comma-separated numbers, got {rho_grid!r}")
            raise typer.Exit(2)
        kw = {k: v for k, v in dict(seeds=seeds, data=data, station=station, kind=kind, chip=chip, rho=rho, lr=lr, sigma=sigma,
                                    offline_epochs=offline_epochs, online_epochs=online_epochs,
                                    cal_settings=cal_settings, cal_inputs=cal_inputs, n_chips=chips, fab_scale=fab_scale,
                                    rho_grid=grid, out=out, scheduler=scheduler, workers=workers).items()
              if v is not None}
        from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        from labsat.cli_format import emit_json, json_output, show_path

        try:
            setup = Setup.make_full(**kw) if full else Setup.small(**kw)
            resolve(name, setup)  # bad input is one line before a run is recorded
            from labsat.workflows import Hooks, experiment as recorded_experiment

            # progress: a line for the experiment (every calibration and training it reports) and a bar per
            # sweep of its units (labsat.sweeps adds them to this display); the experiment is recorded as a
            # run (labsat.workflows.experiment)
            with json_output(console, as_json), Progress(SpinnerColumn(), TextColumn("[bold]{task.description}"),
                                                         BarColumn(), _Count(), TimeElapsedColumn(), _Info(),
                                                         console=console) as bar:
                task = bar.add_task(f"experiment {name}", total=None, info="")

                def log(msg: str) -> None:
                    bar.console.print(f"[dim]{msg}[/]", soft_wrap=True)
                    bar.update(task, advance=1, info=msg[:48])

                result = recorded_experiment(name, setup, functools.partial(run_experiment, progress=bar),
                                             Hooks(note=log))
        except (ValueError, FileNotFoundError, KeyError, ConfigError, CalibrationError, RunError, SweepError,
                OSError) as exc:
            console.print(f"[bold red]error:[/] {exc}", soft_wrap=True)
            raise typer.Exit(2)
        where = show_path(result["directory"])
        if as_json:
            emit_json({"experiment": name, "run": result["run"], "directory": where, "seconds": result["seconds"],
                       "rows": result["rows"]})
            return
        console.print(Markdown(result["table"]))
        console.print(f"wrote {where}/(table.md, results.csv, results.json, plot.png) "
                      f"in {result['seconds']:.0f} s (run {result['run']})", soft_wrap=True)

    app.command("experiment")(experiment)
