"""The SAT paper's MZI-mesh protocol (``research/sat-paper.md`` §2b) and its transfer grid.

Network: a digital LeNet front end (conv-BN-ReLU-pool x2, fc 400 -> 120, BN, fc 120 -> 64) whose 64 real
outputs are the input amplitudes of a 64-mode rectangular mesh (2016 MZIs, :mod:`labsat.twins.clements`,
neurophox's Bloch convention, input phase screen gamma). Readout ``paper``: the 64 output intensities
divided by their per-sample L2 norm, the first 10 as logits, no scale; ``scale``: the same times a
learnable scale (the ablation). Init: theta Haar-random (``haar_rect_theta``), phi and gamma uniform.

A chip (one seed) is the paper's error model: N(0, sigma) added to every theta and phi, and two couplers
per MZI with independent errors e ~ N(0, sigma), amplitudes sqrt(1 +- e) (nothing clipped: |e| > 1
makes the output NaN and every prediction class 0, as in the authors' code). It is the same mesh core
the virtual chip uses; through-the-instruments runs at 64 modes are branch scale's.

Methods: ``bp`` (ideal mesh), ``pat`` (chip forward substituted into the ideal model's 10 logits, ideal
backward), ``nat`` (fresh N(0, 0.01) on theta, phi and couplers every forward; the authors' notebook
never adds its phase noise, we do), all SGD lr 0.1 momentum 0.5 with conv/fc weights clamped to
[-1, 1]; ``sat`` (SAM rho 0.3 over Adam lr 0.1, ideal mesh) and ``sat_insitu`` (SAT with the PAT
substitution in both SAM passes). labsat's own (``--set methods=...,bp_twin,sat_twin,sat_insitu_twin``):
the chip is calibrated first (:mod:`.calibrated`: measured in the virtual lab's physics, issue 12's
progressive fit, once per chip, cached) and ``bp_twin`` / ``sat_twin`` train on the calibrated twin instead of
the ideal mesh (deployed on the chip), ``sat_insitu_twin`` is SAT in situ with the calibrated twin as the
backward model. ``dat`` (``--set methods=...,dat``): dual adaptive training (Zheng et al. 2023, the authors'
train.py in small): a learned error predictor (:func:`sepn`) on the mesh's output field, trained every step on the
chip's outputs, and PAT with the ideal mesh + predictor as the backward model. One task = one (method, seed, chip): trained once (cached under
``<out>/cache``), evaluated on its own chip (whole test set) and, for the transfer grid, on new chips.
"""
from __future__ import annotations

import functools
import hashlib
import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
import torch.nn.functional as F

from labsat.twins import clements
from labsat.twins.layout import MeshLayout

from . import common

METHODS = ("bp", "pat", "nat", "sat", "sat_insitu")  # the paper's methods (the default list)
OTHER_METHODS = ("dat",)  # the paper's other baseline, by --set methods=: dual adaptive training (Zheng et al. 2023)
# labsat's own: calibrate the chip (labsat.paper.calibrated), train on the calibrated twin (deploy on the chip);
# sat_insitu_twin: SAT in situ with the calibrated twin (not the ideal mesh) as the backward model
TWIN_METHODS = ("bp_twin", "sat_twin", "sat_insitu_twin")
ALL_METHODS = METHODS + OTHER_METHODS + TWIN_METHODS
LABELS = {"bp": "BP", "pat": "PAT", "nat": "NAT (σ 0.01)", "sat": "SAT in silico", "sat_insitu": "SAT in situ",
          "bp_twin": "BP on calibrated twin", "sat_twin": "SAT on calibrated twin",
          "sat_insitu_twin": "SAT in situ, calibrated twin backward", "dat": "DAT (learned error predictor)"}
PAPER_OWN = {"dat": 94.6, "bp": 68.6, "pat": 70.2, "nat": 79.8, "sat": 92.3, "sat_insitu": 97.1}  # σ = 0.15, MNIST, %
PAPER_TRANSFER = {0.0: 98.5, 0.1: 98.2, 0.15: 95.2, 0.2: 61.3, 0.3: 9.8}  # SAT in situ, mean of 5 new chips
TRANSFER_SIGMAS = (0.0, 0.1, 0.15, 0.2, 0.3)


@dataclass
class Settings:
    modes: int = 64
    sigma: float = 0.15  # the chip's phase and splitter error (the paper's phaseE = bsE)
    epochs: int = 40
    batch_size: int = 128  # ~10 steps per epoch on the digits, as batch 6000 gives on MNIST
    readout: str = "paper"  # paper | scale
    init: str = "haar"  # haar | zero (theta = 0) | uniform
    sgd_lr: float = 0.1
    momentum: float = 0.5
    sat_lr: float = 0.1
    rho: float = 0.3
    nat_sigma: float = 0.01
    front: str = "lenet"  # lenet | linear (a 784 -> 64 linear front end, an ablation)
    transfer_sigmas: tuple = ()
    transfer_chips: int = 5
    error_model: str = "paper"  # paper | labsat (then sigma, transfer_sigmas are spread factors: see chip_errors)
    dat_lr: float = 0.1  # DAT: Adam on the error predictor; chosen on tuning chips 101-102 (benchmarks/README.md;
    # the authors' 1e-3 is over ~50x more steps)
    cal_settings: int = 0  # *_twin: heater settings per control band of the calibration (0: issue 12's plan, 32)

    def __post_init__(self):
        if not 10 <= self.modes <= 64:
            raise ValueError(f"modes: between 10 (the 10 logits are output ports) and 64, got {self.modes}")
        for key, allowed in (("readout", ("paper", "scale")), ("init", ("haar", "zero", "uniform")),
                             ("front", ("lenet", "linear")), ("error_model", ("paper", "labsat"))):
            if getattr(self, key) not in allowed:
                raise ValueError(f"{key}: one of {' | '.join(allowed)}, got {getattr(self, key)!r}")
        if self.cal_settings < 0:
            raise ValueError(f"cal_settings: heater settings per band, at least 1 (0: the plan's), got {self.cal_settings}")
        if self.epochs < 1 or self.sigma < 0:
            raise ValueError("epochs must be at least 1 and sigma non-negative")


class Mesh(nn.Module):
    """Trainable theta, phi, gamma of an N-mode rectangular mesh in the Bloch convention."""

    def __init__(self, modes: int, init: str, seed: int):
        super().__init__()
        self.layout = MeshLayout(modes)
        rng = np.random.default_rng(seed)
        m = self.layout.n_mzi
        if init == "haar":
            theta = clements.haar_rect_theta(self.layout, rng)
        elif init == "zero":
            theta = np.zeros(m)
        elif init == "uniform":
            theta = rng.uniform(0, 2 * np.pi, m)
        else:
            raise ValueError(f"unknown init {init!r}: haar | zero | uniform")
        self.theta = nn.Parameter(torch.as_tensor(theta, dtype=torch.float64))
        self.phi = nn.Parameter(torch.as_tensor(rng.uniform(0, 2 * np.pi, m), dtype=torch.float64))
        self.gamma = nn.Parameter(torch.as_tensor(rng.uniform(0, 2 * np.pi, modes), dtype=torch.float64))

    def matrix(self, errors: dict | None = None) -> torch.Tensor:
        th, ph, bs, split = self.theta, self.phi, None, None
        if errors is not None and "eta" in errors:  # labsat's model: errors depend on the programmed phases
            d = heater_phase_errors(th, ph, errors)
            th, ph, split = th + d[0::2], ph + d[1::2], errors["split"]
        elif errors is not None:
            th, ph, bs = th + errors["theta"], ph + errors["phi"], errors["bs"]
        return clements.mesh_matrix(th, ph, self.layout, convention="bloch", bs_error=bs, split_error=split,
                                    gamma=self.gamma)


def heater_phase_errors(theta: torch.Tensor, phi: torch.Tensor, errors: dict) -> torch.Tensor:
    """labsat's error model on programmed phases: each heater (θ, φ of every MZI, interleaved as on the
    chip) set for phase p = (θ or φ) mod 2π gives ``offset + eta * (p + kappa * (p_left + p_right))`` with
    ``eta`` its relative efficiency and ``kappa`` the heat shared with each physical neighbour
    (:class:`labsat.drivers.sim.chip.ChipTruth`); returns the error on each heater's phase, (2M,)."""
    p = torch.stack([theta.detach(), phi.detach()], -1).reshape(-1).remainder(2 * math.pi)
    heat = p.clone()
    heat[:-1] += errors["kappa"] * p[1:]
    heat[1:] += errors["kappa"] * p[:-1]
    return errors["offset"] + errors["eta"] * heat - p


def chip_errors(layout: MeshLayout, chip: int, sigma: float, splitter_sigma: float | None = None,
                model: str = "paper") -> dict:
    """The fabrication errors of chip ``chip`` (a seed). ``paper``: phase N(0, sigma), couplers
    N(0, splitter_sigma). ``labsat``: the virtual chip's own draw (:class:`labsat.drivers.sim.chip.ChipTruth`:
    phase offsets, heater efficiency, thermal crosstalk to neighbours, coupler splitting angles, port loss)
    with every spread of the default :class:`ChipSpec` times ``sigma`` (1 = the virtual lab's chip); its
    modulator spread, drift and detector noise are left out (the paper's protocol has none)."""
    if model == "labsat":
        return labsat_chip_errors(layout, chip, sigma)
    g = torch.Generator().manual_seed(int(chip))
    m = layout.n_mzi
    bs_sigma = sigma if splitter_sigma is None else splitter_sigma
    return {"theta": torch.randn(m, generator=g, dtype=torch.float64) * sigma,
            "phi": torch.randn(m, generator=g, dtype=torch.float64) * sigma,
            "bs": torch.randn(m, 2, generator=g, dtype=torch.float64) * bs_sigma}


def labsat_chip_errors(layout: MeshLayout, chip: int, spread: float) -> dict:
    from labsat.drivers.sim.chip import ChipSpec, ChipTruth

    d = ChipSpec()
    spec = ChipSpec(modes=layout.modes, phase_offset_sigma=d.phase_offset_sigma * spread,
                    efficiency_sigma=d.efficiency_sigma * spread, coupler_sigma=d.coupler_sigma * spread,
                    crosstalk_mean=d.crosstalk_mean * spread, crosstalk_sigma=d.crosstalk_sigma * spread,
                    port_loss_sigma=d.port_loss_sigma * spread)
    t = ChipTruth.draw(spec, int(chip))
    f64 = lambda a: torch.as_tensor(np.asarray(a, dtype=np.float64))  # noqa: E731
    return {"offset": f64(t.offset), "eta": f64(t.eta / spec.eta_nominal), "kappa": f64(t.kappa),
            "split": f64(t.coupler - math.pi / 4), "gain": f64(t.port_gain)}


class LeNetFront(nn.Module):
    def __init__(self, out: int = 64):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1, 6, 5, padding=2), nn.BatchNorm2d(6), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(6, 16, 5), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
            nn.Linear(400, 120), nn.BatchNorm1d(120), nn.ReLU(), nn.Linear(120, out))

    def forward(self, x):
        return self.net(x)


class MeshNet(nn.Module):
    """Front end -> 64 real amplitudes -> mesh -> normalised intensities -> 10 logits."""

    def __init__(self, s: Settings, seed: int):
        super().__init__()
        torch.manual_seed(seed)
        self.front = LeNetFront(s.modes) if s.front == "lenet" else nn.Sequential(nn.Flatten(), nn.Linear(784, s.modes))
        self.mesh = Mesh(s.modes, s.init, seed)
        self.readout = s.readout
        if s.readout == "scale":
            self.log_scale = nn.Parameter(torch.tensor(math.log(10.0), dtype=torch.float64))
        elif s.readout != "paper":
            raise ValueError(f"unknown readout {s.readout!r}: paper | scale")
        self.errors: dict | None = None  # the chip's errors when deployed
        self.twin: dict | None = None  # the calibrated twin's errors (labsat.paper.calibrated), None = ideal mesh
        self.sepn: nn.Module | None = None  # DAT's systematic-error prediction network (set by train for "dat")
        self.sepn_weight = 1.0  # DAT's cn_weight: 0 early in training, then 1
        self.similarity: torch.Tensor | None = None  # DAT: MSE(twin + SEPN, chip) of the last forward
        self.mode = "ideal"  # ideal | chip | twin | pat | nat | dat
        self.nat_sigma = 0.0

    def digital(self) -> list[nn.Parameter]:
        return list(self.front.parameters())

    def _logits(self, z: torch.Tensor, errors: dict | None, sepn: float = 0.0) -> torch.Tensor:
        if sepn:  # DAT: the SEPN's correction added to the mesh's output field, then the same readout
            a = clements.apply(self.mesh.matrix(errors), z.to(torch.float64))
            ri = torch.cat([a.real, a.imag], -1)
            ri = ri + sepn * self.sepn(ri)
            n = a.shape[-1]
            p = ri[..., :n] ** 2 + ri[..., n:] ** 2
        else:
            p = clements.powers(self.mesh.matrix(errors), z.to(torch.float64))
        if errors is not None and "gain" in errors:  # labsat's model: per-port loss
            p = p * errors["gain"]
        p = p / p.norm(dim=-1, keepdim=True)
        out = p[..., :10]
        if self.readout == "scale":
            out = out * self.log_scale.exp()
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.front(x)
        if self.mode == "ideal":
            return self._logits(z, None)
        if self.mode == "chip":
            return self._logits(z, self.errors)
        if self.mode == "twin":
            return self._logits(z, self.twin)
        if self.mode == "nat":
            m = self.mesh.layout.n_mzi
            n = {"theta": torch.randn(m, dtype=torch.float64) * self.nat_sigma,
                 "phi": torch.randn(m, dtype=torch.float64) * self.nat_sigma,
                 "bs": torch.randn(m, 2, dtype=torch.float64) * self.nat_sigma}
            return self._logits(z, n)
        with torch.no_grad():
            chip = self._logits(z, self.errors)
        if self.mode == "dat":  # the chip's values, the gradient of the ideal mesh + SEPN (weighted)
            ideal = self._logits(z, None, self.sepn_weight)
            self.similarity = F.mse_loss(self._logits(z, None, 1.0), chip)  # trains the SEPN on the measurement
        else:  # pat: the chip's values, the model's (ideal or twin) gradient
            ideal = self._logits(z, self.twin)
        return ideal + (chip - ideal).detach()


def sepn(modes: int) -> nn.Module:
    """DAT's systematic-error prediction network, small: a residual MLP on the mesh's output field
    ([Re, Im], 2N -> 4N -> 2N, ReLU), its last layer zero so that it starts as no correction. (The authors'
    is a complex U-Net on the 8x8-reshaped 64 outputs of each mesh; see benchmarks/README.md.)"""
    net = nn.Sequential(nn.Linear(2 * modes, 4 * modes), nn.ReLU(), nn.Linear(4 * modes, 2 * modes)).double()
    nn.init.zeros_(net[-1].weight)
    nn.init.zeros_(net[-1].bias)
    return net


@functools.lru_cache(maxsize=2)
def _data(spec: str, n_train, n_test):
    xtr, ytr, xte, yte, name = common.load_images(spec, seed=0, n_train=n_train, n_test=n_test)
    norm = lambda a: (a - 0.1307) / 0.3081  # noqa: E731  the authors' MNIST normalisation
    return norm(xtr), ytr, norm(xte), yte, name


def train(model: MeshNet, method: str, x, y, s: Settings, seed: int) -> list[float]:
    from labsat.sat import SAM

    if method not in ALL_METHODS:
        raise ValueError(f"unknown method {method!r}; choose from {', '.join(ALL_METHODS)}")
    if (method in TWIN_METHODS) != (model.twin is not None):
        raise ValueError(f"method {method!r}: the calibrated twin is set exactly for {', '.join(TWIN_METHODS)}")
    model.mode = {"bp": "ideal", "sat": "ideal", "pat": "pat", "sat_insitu": "pat", "nat": "nat", "bp_twin": "twin",
                  "sat_twin": "twin", "sat_insitu_twin": "pat", "dat": "dat"}[method]
    model.nat_sigma = s.nat_sigma
    sam = method in ("sat", "sat_insitu", "sat_twin", "sat_insitu_twin")
    params = [p for n, p in model.named_parameters() if not n.startswith("sepn.")]  # the model's own
    dat = method == "dat"
    if dat:
        torch.manual_seed(seed)
        model.sepn = sepn(s.modes)
        sepn_params = list(model.sepn.parameters())
        sepn_opt = torch.optim.Adam(sepn_params, lr=s.dat_lr)
    opt = SAM(params, torch.optim.Adam, rho=s.rho, lr=s.sat_lr) if sam else \
        torch.optim.SGD(params, lr=s.sgd_lr, momentum=s.momentum)
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model.train()
    losses = []
    for epoch in range(s.epochs):
        model.sepn_weight = 0.0 if epoch < 0.4 * s.epochs else 1.0  # DAT: cn_weight 0 for 20 of the authors' 50 epochs
        order = torch.randperm(len(x), generator=g)
        total = 0.0
        for i in range(0, len(x), s.batch_size):
            idx = order[i:i + s.batch_size]
            if len(idx) < 2:
                continue
            xb, yb = x[idx], y[idx]

            def closure():
                opt.zero_grad()
                out = F.cross_entropy(model(xb), yb)
                out.backward()
                return out

            if sam:
                loss = opt.step(closure)
            elif dat:  # as the authors' train.py: the SEPN steps on the similarity loss alone; the model's
                # parameters on the task loss through the chip's values plus the similarity loss (their
                # optimizer_pnn.zero_grad() comes before loss_cn.backward())
                opt.zero_grad()
                sepn_opt.zero_grad()
                loss = F.cross_entropy(model(xb), yb)
                grads = torch.autograd.grad(model.similarity, sepn_params, retain_graph=True)
                (loss + model.similarity).backward(inputs=params)
                for p_, g_ in zip(sepn_params, grads):
                    p_.grad = g_
                sepn_opt.step()
                opt.step()
            else:
                loss = closure()
                opt.step()
            if not sam:
                with torch.no_grad():  # the authors clamp the digital weights of the SGD methods (DAT's too)
                    for p in model.digital():
                        if p.dim() > 1:
                            p.clamp_(-1.0, 1.0)
            total += float(loss.detach()) * len(idx)
        losses.append(total / len(x))
    model.mode = "ideal"
    return losses


@torch.no_grad()
def accuracy(model: MeshNet, x, y, errors: dict | None) -> float:
    model.eval()
    model.errors, model.mode = errors, ("ideal" if errors is None else "chip")
    correct = 0
    for i in range(0, len(x), 1000):
        out = model(x[i:i + 1000])
        pred = torch.where(torch.isnan(out).any(-1), torch.zeros_like(out[:, 0], dtype=torch.long), out.argmax(-1))
        correct += int((pred == y[i:i + 1000]).sum())
    model.mode = "ideal"
    return correct / len(x)


def _key(task: dict) -> str:
    keep = {k: v for k, v in task.items() if k not in ("out", "transfer_sigmas", "transfer_chips", "set")}
    keep["settings"] = {k: v for k, v in task["settings"].items() if k not in ("transfer_sigmas", "transfer_chips")
                        and not (k, v) == ("error_model", "paper")}  # models trained before it existed still found
    return hashlib.sha1(json.dumps(keep, sort_keys=True, default=str).encode()).hexdigest()[:16]


def run_task(task: dict) -> list[dict]:
    """Train (or load from the cache) one (method, seed, chip); rows for the own chip and each new chip."""
    torch.set_num_threads(1)
    s = Settings(**task["settings"])
    xtr, ytr, xte, yte, name = _data(task["data"], task.get("n_train"), task.get("n_test"))
    model = MeshNet(s, task["seed"])
    if task["method"] == "dat":  # its state (cached with the model) includes the error predictor
        model.sepn = sepn(s.modes)
    own = chip_errors(model.mesh.layout, task["chip"], s.sigma, model=s.error_model)
    model.errors = own
    calibration: dict = {}
    if task["method"] in TWIN_METHODS:  # calibrated once per chip (cached), then every method and seed loads it
        from . import calibrated

        budget = f"-s{s.cal_settings}" if s.cal_settings else ""
        cal_file = f"cal-{s.error_model}-{s.sigma:g}-N{s.modes}{budget}-chip{task['chip']}.json"
        model.twin, calibration = calibrated.calibrate(
            s.modes, own, task["chip"], Path(task["out"]) / "cache" / cal_file if task.get("out") else None,
            settings=s.cal_settings or None)
    cache = Path(task["out"]) / "cache" / f"mzi-{_key(task)}.pt" if task.get("out") else None
    t0 = time.perf_counter()
    if cache is not None and cache.exists():
        saved = torch.load(cache, weights_only=False)
        model.load_state_dict(saved["state"])
        losses, seconds = saved["losses"], saved["train_s"]
    else:
        losses = train(model, task["method"], xtr, ytr, s, task["seed"])
        seconds = time.perf_counter() - t0
        if cache is not None:
            cache.parent.mkdir(parents=True, exist_ok=True)
            torch.save({"state": model.state_dict(), "losses": losses, "train_s": seconds}, cache)
    base = {"platform": "mzi", "method": task["method"], "seed": task["seed"], "train_chip": task["chip"],
            "readout": s.readout, "init": s.init, "front": s.front, "modes": s.modes, "train_sigma": s.sigma,
            "error_model": s.error_model,
            "epochs": s.epochs, "final_loss": losses[-1] if losses else float("nan"), "train_s": seconds,
            "data": name, "twin_accuracy": accuracy(model, xte, yte, None), **calibration}
    if model.twin is not None:  # the model on the twin it was trained on (the twin-to-chip gap beside it)
        base["calibrated_twin_accuracy"] = accuracy(model, xte, yte, model.twin)
    rows = [{**base, "deploy": "own chip", "chip": task["chip"], "sigma": s.sigma,
             "accuracy": accuracy(model, xte, yte, own)}]
    for point, sig in enumerate(task.get("transfer_sigmas") or s.transfer_sigmas):
        for k in range(task.get("transfer_chips", s.transfer_chips)):
            chip = common.transfer_chip(point, k)
            rows.append({**base, "deploy": "new chip", "chip": chip, "sigma": sig,
                         "accuracy": accuracy(model, xte, yte, chip_errors(model.mesh.layout, chip, sig,
                                                                           model=s.error_model))})
    return rows


LATER_SETTINGS = {"dat_lr": 0.1, "cal_settings": 0}  # added after results were stored: left out of a task while at their default,
# so that the stored results (keyed by the task) and cached models are still found


def tasks(protocol: common.Protocol, settings: Settings, out: Path | None, methods=METHODS,
          transfer: bool = False) -> list[dict]:
    st = {k: v for k, v in asdict(settings).items() if LATER_SETTINGS.get(k, object()) != v}
    st["transfer_sigmas"] = list(TRANSFER_SIGMAS) if transfer else list(st["transfer_sigmas"])
    return [{"method": m, "seed": seed, "chip": chip, "data": protocol.data, "n_train": protocol.n_train,
             "n_test": protocol.n_test, "settings": st, "out": str(out) if out else None}
            for seed in protocol.seeds for chip in protocol.eval_chips for m in methods]  # seed-major: more seeds extend a run


def report(rows: list[dict]) -> tuple[str, object]:
    own = [r for r in rows if r["deploy"] == "own chip"]
    new = [r for r in rows if r["deploy"] == "new chip"]
    parts = []
    methods = list(dict.fromkeys(r["method"] for r in rows))
    key = lambda r: (r["readout"], r["init"], r["front"], r["modes"], r["train_sigma"], r.get("error_model", "paper"))  # noqa: E731
    variants = list(dict.fromkeys(key(r) for r in rows))
    data = rows[0]["data"] if rows else "?"
    for v in variants:
        sub = [r for r in own if key(r) == v]
        body = [[LABELS[m], f"{PAPER_OWN.get(m, '–')}" if v == ("paper", "haar", "lenet", 64, 0.15, "paper") else "–",
                 common.fmt([r["accuracy"] for r in sub if r["method"] == m]),
                 common.fmt([r["twin_accuracy"] for r in sub if r["method"] == m])] for m in methods]
        chip = (f"chip σ {v[4]:g} (phase = splitter)" if v[5] == "paper" else
                f"chip: labsat's error model, spread × {v[4]:g} (offsets, efficiency, crosstalk, couplers, port loss)")
        parts.append(f"**MZI mesh {v[3]}×{v[3]}, readout {v[0]}, init {v[1]}, front end {v[2]}, {chip}; {data}; "
                     f"{rows[0]['epochs']} epochs** (% test accuracy, mean ± std (n = chips × seeds))\n\n"
                     + common.md_table(["method", "paper (MNIST)", "ours on its chip", "ours on the ideal mesh"], body))
    if new:
        sigmas = list(dict.fromkeys(r["sigma"] for r in new))
        body = []
        for m in methods:
            cells = [LABELS[m]]
            for sg in sigmas:
                paper = PAPER_TRANSFER.get(sg) if m == "sat_insitu" else None
                cells.append(f"{paper if paper is not None else '–'} / "
                             + common.fmt([r["accuracy"] for r in new if r["method"] == m and r["sigma"] == sg]))
            body.append(cells)
        parts.append(f"**Transfer: trained on its chip at σ {rows[0]['train_sigma']:g}, deployed unchanged on 5 new chips "
                     f"per σ; {data}** (% accuracy, paper / ours mean ± std (n = train chips × seeds × new chips))\n\n"
                     + common.md_table(["method"] + [f"σ {sg:g}" for sg in sigmas], body))
    fig, axes = common.plt().subplots(1, 2 if new else 1, figsize=(11 if new else 6, 3.8), squeeze=False)
    ax = axes[0][0]
    for i, m in enumerate(methods):
        vals = [100 * r["accuracy"] for r in own if r["method"] == m]
        ax.scatter(np.full(len(vals), i) + np.linspace(-0.15, 0.15, len(vals)), vals, s=12)
        ax.bar(i, np.mean(vals) if vals else 0, alpha=0.3)
    ax.set_xticks(range(len(methods)), [LABELS[m] for m in methods], rotation=20, fontsize=8)
    ax.set(ylabel="accuracy on its chip (%)", ylim=(0, 100), title="MZI mesh, own chip")
    if new:
        ax = axes[0][1]
        for m in methods:
            ms = [common.mean_std([r["accuracy"] for r in new if r["method"] == m and r["sigma"] == sg]) for sg in sigmas]
            ax.errorbar(sigmas, [100 * a[0] for a in ms], [100 * a[1] for a in ms], marker="o", capsize=3, label=LABELS[m])
        ax.plot(list(PAPER_TRANSFER), list(PAPER_TRANSFER.values()), "k--", label="paper SAT in situ")
        ax.set(xlabel="σ of the new chips", ylabel="accuracy (%)", ylim=(0, 100), title="transfer to new chips")
        ax.legend(fontsize=7)
    return "\n".join(parts), fig
