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
the network's initialisation and the data order). Trained models and calibrations are cached under
``<out>/cache`` so the four experiments share them. Each experiment writes ``results.csv``,
``table.md``, ``plot.png`` and ``results.json`` into ``<out>/<name>``. The hidden truth of the virtual
chip is never read: experiments only touch its environment (``lab.chip.extra_kelvin``).
"""
from __future__ import annotations

import csv
import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch

EXPERIMENTS = ("imprecise", "transfer", "perturbation", "sharpness", "rho")


@dataclass
class Setup:
    """Sizes and knobs of a run; :meth:`small` for CI, :meth:`full` for the paper-scale run."""

    station: Path = Path("instruments.yaml")
    chip: int = 1
    data: str = "digits"
    seeds: int = 3
    offline_epochs: int = 10
    online_epochs: int = 3  # online methods fine-tune the plain offline model on the hardware
    lr: float = 0.03
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
        "pat+sat(hw)": dict(on, optimizer="sam", rho=setup.rho, perturb=setup.perturb),
    }
    if method.startswith("sat@"):  # rho sweep
        rho = float(method[4:])
        return TrainConfig(**dict(off, optimizer="sam" if rho > 0 else "adam", rho=rho, perturb=setup.perturb))
    if method not in table:
        raise ValueError(f"unknown method {method!r}; choose from {', '.join(table)}")
    return TrainConfig(**table[method])


def _key(obj) -> str:
    return hashlib.sha1(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _resistance(config) -> float:
    layer = config.layers["mesh"]
    return float(config.instruments[layer.heaters.instrument].limits.resistance_ohm)


class Lab:
    """Chip A's station, the data, per-seed calibrations and a cache of trained models."""

    def __init__(self, setup: Setup, log: Callable[[str], None] = print):
        from labsat.config import load_config
        from labsat.data import load_dataset

        self.setup, self.log = setup, log
        self.config = load_config(setup.station)
        if self.config.station.backend != "sim":
            raise ValueError("station.backend: the experiments run on the virtual lab (backend: sim)")
        if setup.fab_scale is not None:
            if setup.fab_scale < 0:
                raise ValueError("--fab-scale must be non-negative")
            from labsat.drivers.sim.chip import ChipSpec

            self.config = self.config.model_copy(deep=True)
            self.config.station.sim.phase_offset_sigma = ChipSpec.phase_offset_sigma * setup.fab_scale
            self.config.station.sim.coupler_sigma = ChipSpec.coupler_sigma * setup.fab_scale
        self.layer = self.config.layers["mesh"]
        self.data = load_dataset(setup.data, self.layer.modes, seed=0, n_train=setup.n_train, n_test=setup.n_test)
        self.cache = Path(setup.out) / "cache"
        self.cache.mkdir(parents=True, exist_ok=True)
        self._twins: dict[int, dict] = {}

    def station(self, chip: int | None = None):
        from labsat.station import Station

        return Station(self.config, chip_seed=self.setup.chip if chip is None else chip)

    # --- calibration with a budget: the imprecise twin ---
    def twin_state(self, seed: int) -> dict:
        if seed in self._twins:
            return self._twins[seed]
        from labsat.calibration import fit_twin, measure
        from labsat.physical import twin_for

        s = self.setup
        key = _key(["cal", s.chip, s.cal_settings, s.cal_inputs, seed, str(s.station), s.fab_scale])
        path = self.cache / f"cal-{key}.json"
        if path.exists():
            state = json.loads(path.read_text())
        else:
            t0 = time.perf_counter()
            with self.station() as st:
                meas = measure(st.mesh(), s.cal_settings, s.cal_inputs, seed=1000 + seed)
            twin = twin_for(self.layer, _resistance(self.config))
            fit_twin(twin, meas)
            state = twin.fitted_state()
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps(state))
            tmp.replace(path)  # atomic: parallel runs sharing the cache never read half a file
            self.log(f"calibrated chip {s.chip} (seed {seed}, {s.cal_settings}x{s.cal_inputs} measurements) "
                     f"in {time.perf_counter() - t0:.1f} s")
        self._twins[seed] = state
        return state

    def new_model(self, seed: int, hardware=None):
        from labsat.train import build_model

        return build_model(self.layer, _resistance(self.config), self.data.n_classes, seed=seed,
                           twin_state=self.twin_state(seed), hardware=hardware)

    # --- trained models, cached ---
    def model(self, method: str, seed: int):
        """A trained model for ``method`` and ``seed`` (trained now, or from the cache) and its meta."""
        from labsat.train import train

        cfg = method_config(method, self.setup, seed)
        s = self.setup
        key = _key(["model", asdict(cfg), s.chip, s.data, s.n_train, s.cal_settings, s.cal_inputs,
                    str(s.station), s.offline_epochs if cfg.mode == "online" else None, s.fab_scale])
        path = self.cache / f"model-{key}.pt"
        model = self.new_model(seed)
        if cfg.mode == "online":  # physics-aware fine-tuning of the offline model on the hardware
            model.load_state_dict(self.model(ONLINE_START, seed)[0].state_dict())
        if path.exists():
            blob = torch.load(path, map_location="cpu", weights_only=False)
            model.load_state_dict(blob["state_dict"])
            return model, blob["meta"]
        t0 = time.perf_counter()
        if cfg.mode == "online":
            with self.station() as st:
                hw = st.mesh()
                model.physical.hardware = hw
                history = train(model, self.data, cfg)
                queries = hw.batches
            model.physical.hardware = None
        else:
            history = train(model, self.data, cfg)
            queries = 0
        meta = {"method": method, "seed": seed, "config": asdict(cfg), "seconds": time.perf_counter() - t0,
                "hardware_queries": queries, "final_loss": history.epochs[-1].loss if history.epochs else None,
                "queries_per_step": (float(np.mean(history.step_hardware_batches))
                                     if history.step_hardware_batches else 0.0)}
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        torch.save({"state_dict": model.state_dict(), "meta": meta}, tmp)
        tmp.replace(path)
        self.log(f"trained {METHOD_LABELS.get(method, method)} seed {seed} in {meta['seconds']:.1f} s"
                 + (f" ({queries} hardware queries, {meta['queries_per_step']:.0f}/step)" if queries else ""))
        return model, meta

    def accuracy_on(self, model, st, x=None, y=None) -> float:
        from labsat.train import accuracy

        x = self.data.x_test if x is None else x
        y = self.data.y_test if y is None else y
        model.physical.hardware = st.mesh()
        try:
            return accuracy(model, x, y, on_hardware=True)
        finally:
            model.physical.hardware = None


# --- aggregation and output ---
def mean_std(values) -> tuple[float, float]:
    a = np.asarray(values, dtype=float)
    return float(a.mean()), float(a.std(ddof=1)) if len(a) > 1 else 0.0


def _fmt(values, pct: bool = True, digits: int = 1) -> str:
    m, s = mean_std(values)
    k = 100.0 if pct else 1.0
    return f"{k * m:.{digits}f} ± {k * s:.{digits}f}"


def write_outputs(directory: Path, rows: list[dict], table_md: str, meta: dict) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    if rows:
        keys = list(dict.fromkeys(k for r in rows for k in r))
        with open(directory / "results.csv", "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=keys)
            w.writeheader()
            w.writerows(rows)
    (directory / "table.md").write_text(table_md)
    (directory / "results.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1, default=str))


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
    return (f"data {setup.data}, chip A = vchip-{setup.chip}, {setup.seeds} seeds, offline {setup.offline_epochs} "
            f"epochs, online {setup.online_epochs} epochs (fine-tuning the plain offline model), twin calibrated from {setup.cal_settings}x"
            f"{setup.cal_inputs} measurements, rho {setup.rho}, ASAM rho {setup.asam_rho}, noise sigma {setup.sigma} "
            f"(perturbing the {setup.perturb})"
            + ("" if setup.fab_scale is None else f", fabrication spread x{setup.fab_scale:g}"))


# --- 1. imprecise model ---
def run_imprecise(lab: Lab) -> dict:
    s = lab.setup
    rows = []
    with lab.station() as st:
        for seed in range(s.seeds):
            for method in s.methods:
                model, meta = lab.model(method, seed)
                from labsat.train import accuracy

                twin_acc = accuracy(model, lab.data.x_test, lab.data.y_test, on_hardware=False)
                dev_acc = lab.accuracy_on(model, st)
                rows.append({"method": method, "seed": seed, "device_accuracy": dev_acc, "twin_accuracy": twin_acc,
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
    models = {(m, seed): lab.model(m, seed)[0] for seed in range(s.seeds) for m in methods}
    chips = [s.chip + 1 + k for k in range(s.n_chips)]
    rows = []
    for chip in [s.chip] + chips:
        with lab.station(chip) as st:
            for (m, seed), model in models.items():
                rows.append({"method": m, "seed": seed, "chip": chip, "own_chip": chip == s.chip,
                             "accuracy": lab.accuracy_on(model, st)})
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
    models = {(m, seed): lab.model(m, seed)[0] for seed in range(s.seeds) for m in methods}
    rows = []
    with lab.station() as st:
        chip = st.lab.chip
        try:
            for dk in s.drift_kelvin:
                chip.extra_kelvin = float(dk)  # the environment changes; the model is not retrained
                for (m, seed), model in models.items():
                    rows.append({"method": m, "seed": seed, "delta_kelvin": float(dk),
                                 "accuracy": lab.accuracy_on(model, st)})
        finally:
            chip.extra_kelvin = 0.0
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
    from labsat.sat.sharpness import max_loss_increase, top_hessian_eigenvalue

    s = lab.setup
    n = min(s.sharp_samples, len(lab.data.x_test))
    x, y = lab.data.x_test[:n], lab.data.y_test[:n]
    loss = torch.nn.CrossEntropyLoss()
    rows = []
    for seed in range(s.seeds):
        for m in s.methods:
            model, _ = lab.model(m, seed)
            model.physical.use_hardware = False
            model.eval()
            fn = lambda: loss(model(x), y)  # noqa: E731
            controls = [model.physical.u]
            inc = max_loss_increase(model, fn, s.sharp_rho, n_random=s.sharp_random,
                                    adversarial_steps=s.sharp_adv_steps, params=controls, seed=seed)
            eig_u = top_hessian_eigenvalue(model, fn, iters=s.hessian_iters, params=controls, seed=seed)
            eig_all = top_hessian_eigenvalue(model, fn, iters=s.hessian_iters,
                                             params=[p for p in model.parameters() if p.requires_grad], seed=seed)
            rows.append({"method": m, "seed": seed, "twin_loss": inc["base"], "random_increase": inc["random"],
                         "adversarial_increase": inc["adversarial"], "hessian_top_controls": eig_u,
                         "hessian_top_all": eig_all})
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
    rows = []
    with lab.station() as st:
        for seed in range(s.seeds):
            for rho in s.rho_grid:
                model, meta = lab.model(f"sat@{rho:g}", seed)
                from labsat.train import accuracy

                rows.append({"rho": rho, "seed": seed, "device_accuracy": lab.accuracy_on(model, st),
                             "twin_accuracy": accuracy(model, lab.data.x_test, lab.data.y_test, on_hardware=False)})
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


def run_experiment(name: str, setup: Setup, log: Callable[[str], None] = print) -> dict:
    """Run one experiment and write its table, CSV, JSON and PNG into ``setup.out / name``."""
    if name not in RUNNERS:
        raise ValueError(f"unknown experiment {name!r}; choose from {', '.join(RUNNERS)}")
    if setup.seeds < 1:
        raise ValueError("--seeds must be at least 1")
    t0 = time.perf_counter()
    lab = Lab(setup, log=log)
    result = RUNNERS[name](lab)
    directory = Path(setup.out) / name
    meta = {"experiment": name, "setup": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(setup).items()},
            "seconds": time.perf_counter() - t0}
    write_outputs(directory, result["rows"], result["table"], meta)
    result["figure"].savefig(directory / "plot.png", dpi=120)
    _plt().close(result["figure"])
    result.update(directory=directory, seconds=meta["seconds"])
    return result


def register(app) -> None:
    import typer
    from rich.console import Console
    from rich.markdown import Markdown

    console = Console()

    def experiment(name: str = typer.Argument(..., help="imprecise | transfer | perturbation | sharpness | rho | "
                                                         "paper-mzi | paper-transfer | paper-microring | paper-freespace"),
                   full: bool = typer.Option(False, "--full", help="paper-scale sizes (minutes to hours)"),
                   seeds: Optional[int] = typer.Option(None, help="seeds (mean ± std over them); default 3, --full 5"),
                   data: str = typer.Option("digits", help="digits | mnist:PATH (directory of the MNIST IDX files)"),
                   station: Path = typer.Option(Path("instruments.yaml"), "--station", "-s"),
                   chip: int = typer.Option(1, help="chip A: the virtual chip models are trained for"),
                   rho: Optional[float] = typer.Option(None, help="SAM radius (control units)"),
                   sigma: Optional[float] = typer.Option(None, help="noise-injection std (control units)"),
                   offline_epochs: Optional[int] = typer.Option(None), online_epochs: Optional[int] = typer.Option(None),
                   cal_settings: Optional[int] = typer.Option(None, help="calibration budget: heater settings"),
                   cal_inputs: Optional[int] = typer.Option(None, help="calibration budget: inputs per setting"),
                   chips: Optional[int] = typer.Option(None, help="transfer: number of other chips"),
                   rho_grid: Optional[str] = typer.Option(None, help="rho experiment: comma-separated radii"),
                   fab_scale: Optional[float] = typer.Option(None, help="scale the virtual chips' fabrication "
                                                             "spread (phase offsets, couplers); 1 = default"),
                   out: Path = typer.Option(Path("runs/experiments"), help="output root (one folder per experiment)"),
                   settings: Optional[list[str]] = typer.Option(None, "--set", help="paper-*: override a setting, "
                                                                "KEY=VALUE (repeatable), e.g. --set readout=scale"),
                   scheduler: str = typer.Option("serial", help="paper-*: serial | local (Dask LocalCluster) | tcp://HOST:PORT"),
                   workers: Optional[int] = typer.Option(None, help="paper-*: Dask workers of a local cluster")):
        """Measure one of the SAT paper's claims on the virtual lab; writes a table and a plot."""
        from labsat.calibration import CalibrationError
        from labsat.config import ConfigError

        torch.set_num_threads(1)
        if name.startswith("paper-"):  # the paper's own protocols: labsat.paper
            from labsat import paper

            try:
                result = paper.run(name, full=full, seeds=seeds, chips=chips, data=data, out=out, settings=settings,
                                   scheduler=None if scheduler == "local" else scheduler, n_workers=workers,
                                   log=lambda msg: console.print(f"[dim]{msg}[/]"))
            except (ValueError, FileNotFoundError) as exc:
                console.print(f"[bold red]error:[/] {exc}")
                raise typer.Exit(2)
            console.print(Markdown(result["table"]))
            console.print(f"wrote {result['directory']}/(table.md, results.csv, results.json, plot.png) "
                          f"in {result['seconds']:.0f} s")
            return
        try:
            grid = None if rho_grid is None else tuple(float(r) for r in rho_grid.split(","))
        except ValueError:
            console.print(f"[bold red]error:[/] --rho-grid: comma-separated numbers, got {rho_grid!r}")
            raise typer.Exit(2)
        kw = {k: v for k, v in dict(seeds=seeds, data=data, station=station, chip=chip, rho=rho, sigma=sigma,
                                    offline_epochs=offline_epochs, online_epochs=online_epochs,
                                    cal_settings=cal_settings, cal_inputs=cal_inputs, n_chips=chips, fab_scale=fab_scale,
                                    rho_grid=grid, out=out).items() if v is not None}
        try:
            setup = Setup.make_full(**kw) if full else Setup.small(**kw)
            result = run_experiment(name, setup, log=lambda msg: console.print(f"[dim]{msg}[/]"))
        except (ValueError, FileNotFoundError, KeyError, ConfigError, CalibrationError) as exc:
            console.print(f"[bold red]error:[/] {exc}")
            raise typer.Exit(2)
        console.print(Markdown(result["table"]))
        console.print(f"wrote {result['directory']}/(table.md, results.csv, results.json, plot.png) "
                      f"in {result['seconds']:.0f} s")

    app.command("experiment")(experiment)
