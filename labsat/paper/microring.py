"""The SAT paper's microring protocol: LeNet-5 (batch norm) whose fc2 and fc3 run on ring weight banks.

As in the authors' code (``research/sat-paper.md`` §1): the trainable tensor of fc2/fc3 is the ring
control ``x`` (nm of detuning), the weight is the Lorentzian ``w = 1 - 2 / (1 + (d / gamma)^2)`` with
``gamma = 0.15`` and ``d = x + offset + 0.08 * dT`` (80 pm/K uniform thermal drift). A *chip* is one
draw of per-ring resonance offsets ``N(0, offset_sigma)`` (0.08 in the paper's PAT mismatch model;
``offset_sigma = 0`` is the drift-only chip of the paper's Fig. 2j, where BP reads 100 % at 0 K).

Methods: ``bp`` (Adam on the ideal bank), ``noise`` (weights ``w * (1 + 0.3 n)`` during training),
``pat`` (forward of each bank on the chip, backward through the ideal bank), ``sat`` (SAM rho 0.5
adaptive over Adam lr 0.01 on every parameter, ideal bank). Evaluated on the chip at dT = 0, -1, -2 K,
whole test set, BN in eval mode. One task = one (method, seed, chip, offset_sigma): :func:`run_task`.
"""
from __future__ import annotations

import functools
import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
import torch.nn.functional as F

from . import common

GAMMA = 0.15  # nm, the ring's half linewidth
DRIFT_NM_PER_K = 0.08
METHODS = ("bp", "noise", "pat", "sat")
LABELS = {"bp": "BP", "noise": "noise inj. (σ 0.3)", "pat": "PAT", "sat": "SAT (ρ 0.5 adaptive)"}
PAPER = {"bp": (100, 60, 2), "noise": (98, 75, 31), "pat": (96, 70, 17), "sat": (99, 98, 88)}  # Fig. 2j, %


def lorentz(d: torch.Tensor, gamma: float = GAMMA) -> torch.Tensor:
    return 1.0 - 2.0 / (1.0 + (d / gamma) ** 2)


class RingBank(nn.Module):
    """A fully connected layer whose weights are ring transmissions set by controls ``x`` (nm)."""

    def __init__(self, n_in: int, n_out: int, seed: int):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        bound = 1.0 / np.sqrt(n_in)
        w0 = (torch.rand(n_out, n_in, generator=g) * 2 - 1) * bound  # torch's default Linear init ...
        self.x = nn.Parameter(GAMMA * torch.sqrt((1 + w0) / (1 - w0)))  # ... read back through the Lorentzian
        self.bias = nn.Parameter((torch.rand(n_out, generator=g) * 2 - 1) * bound)
        self.register_buffer("offset", torch.zeros(n_out, n_in))  # the chip's resonance offsets (nm)
        self.drift_k = 0.0
        self.mode = "ideal"  # ideal | chip | pat
        self.noise = 0.0

    def weight(self, on_chip: bool) -> torch.Tensor:
        d = self.x + (self.offset + DRIFT_NM_PER_K * self.drift_k if on_chip else 0.0)
        w = lorentz(d)
        if self.noise and self.training:
            w = w * (1 + self.noise * torch.randn_like(w))
        return w

    def forward(self, inp: torch.Tensor) -> torch.Tensor:
        if self.mode == "ideal":
            return F.linear(inp, self.weight(False), self.bias)
        if self.mode == "chip":
            return F.linear(inp, self.weight(True), self.bias)
        ideal = F.linear(inp, self.weight(False), self.bias)  # pat: the chip's values, the ideal gradient
        with torch.no_grad():
            chip = F.linear(inp, self.weight(True), self.bias)
        return ideal + (chip - ideal).detach()


class RingLeNet(nn.Module):
    """LeNet-5 with batch norm on 28x28 images; fc2 (120 -> 84) and fc3 (84 -> 10) on ring banks."""

    def __init__(self, seed: int):
        super().__init__()
        torch.manual_seed(seed)
        self.features = nn.Sequential(
            nn.Conv2d(1, 6, 5, padding=2), nn.BatchNorm2d(6), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(6, 16, 5), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2))
        self.fc1 = nn.Linear(400, 120)
        self.bn1 = nn.BatchNorm1d(120)
        self.fc2 = RingBank(120, 84, seed + 1)
        self.bn2 = nn.BatchNorm1d(84)
        self.fc3 = RingBank(84, 10, seed + 2)

    def banks(self) -> list[RingBank]:
        return [self.fc2, self.fc3]

    def set(self, mode: str | None = None, drift_k: float | None = None, noise: float | None = None) -> None:
        for b in self.banks():
            if mode is not None:
                b.mode = mode
            if drift_k is not None:
                b.drift_k = drift_k
            if noise is not None:
                b.noise = noise

    def load_chip(self, chip: int, offset_sigma: float) -> None:
        """Draw the chip's per-ring offsets from its seed (the same chip for every model)."""
        g = torch.Generator().manual_seed(chip)
        for b in self.banks():
            b.offset.copy_(torch.randn(b.offset.shape, generator=g) * offset_sigma)

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        h = self.features(img).flatten(1)
        h = F.relu(self.bn1(self.fc1(h)))
        h = F.relu(self.bn2(self.fc2(h)))
        return self.fc3(h)


@dataclass
class Settings:
    epochs: int = 20
    batch_size: int = 64
    lr: float = 0.01
    rho: float = 0.5
    noise: float = 0.3
    drifts: tuple = (0.0, -1.0, -2.0)
    rho_grid: tuple = ()  # non-empty: rho chosen from it on the tuning chips first (:func:`tuning_tasks`)


@functools.lru_cache(maxsize=2)
def _data(spec: str, n_train, n_test):
    return common.load_images(spec, seed=0, n_train=n_train, n_test=n_test)


def train(model: RingLeNet, method: str, x: torch.Tensor, y: torch.Tensor, s: Settings, seed: int) -> float:
    from labsat.sat import SAM

    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose from {', '.join(METHODS)}")
    model.set(mode="pat" if method == "pat" else "ideal", drift_k=0.0, noise=s.noise if method == "noise" else 0.0)
    params = list(model.parameters())
    opt = SAM(params, torch.optim.Adam, rho=s.rho, adaptive=True, lr=s.lr) if method == "sat" \
        else torch.optim.Adam(params, lr=s.lr)
    g = torch.Generator().manual_seed(seed)
    model.train()
    loss = torch.tensor(0.0)
    for _ in range(s.epochs):
        order = torch.randperm(len(x), generator=g)
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

            if method == "sat":
                loss = opt.step(closure)
            else:
                loss = closure()
                opt.step()
    model.set(noise=0.0)
    return float(loss.detach())


@torch.no_grad()
def accuracy(model: RingLeNet, x: torch.Tensor, y: torch.Tensor, mode: str, drift_k: float = 0.0,
             bn: str = "eval", batch: int = 1000) -> float:
    """Test accuracy with batch norm in eval mode (running statistics, ``bn="eval"``) or normalising each
    test batch by its own statistics (``bn="batch"``, what a network left in training mode does)."""
    import copy

    if bn == "batch":
        model = copy.deepcopy(model)  # the batch statistics must not touch the model's running ones
        model.train()
    else:
        model.eval()
    model.set(mode=mode, drift_k=drift_k, noise=0.0)
    correct = sum(int((model(x[i:i + batch]).argmax(1) == y[i:i + batch]).sum()) for i in range(0, len(x), batch))
    return correct / len(x)


def run_task(task: dict) -> list[dict]:
    """Train one (method, seed) for one chip; evaluate on that chip at each drift."""
    torch.set_num_threads(1)
    s = Settings(**task.get("settings", {}))
    xtr, ytr, xte, yte, name = _data(task["data"], task.get("n_train"), task.get("n_test"))
    model = RingLeNet(task["seed"])
    model.load_chip(task["chip"], task["offset_sigma"])
    t0 = time.perf_counter()
    final_loss = train(model, task["method"], xtr, ytr, s, task["seed"])
    seconds = time.perf_counter() - t0
    twin = accuracy(model, xte, yte, "ideal")
    rows = []
    for dk in s.drifts:
        rows.append({"platform": "microring", "set": task.get("set", "evaluation"), "method": task["method"],
                     "seed": task["seed"], "chip": task["chip"], "rho": s.rho, "offset_sigma": task["offset_sigma"],
                     "drift_k": dk,
                     "accuracy": accuracy(model, xte, yte, "chip", dk), "twin_accuracy": twin,
                     "accuracy_bn_batch": accuracy(model, xte, yte, "chip", dk, bn="batch", batch=100),
                     "final_loss": final_loss, "train_s": seconds, "epochs": s.epochs, "data": name})
    return rows


run_task.sweep_version = "3"  # 2: rows carry accuracy_bn_batch; 3: set (tuning | evaluation) and rho


def tuning_tasks(protocol: common.Protocol, settings: Settings, offset_sigma: float = 0.08) -> list[dict]:
    """SAT at each rho of ``settings.rho_grid`` on the declared tuning chips only (first training seed),
    chip offsets ``offset_sigma``: the runs :func:`choose_rho` picks from."""
    from dataclasses import replace

    return [{"method": "sat", "seed": seed, "chip": chip, "offset_sigma": offset_sigma, "data": protocol.data,
             "n_train": protocol.n_train, "n_test": protocol.n_test, "set": "tuning",
             "settings": {**replace(settings, rho=float(rho), rho_grid=()).__dict__}}
            for rho in settings.rho_grid for chip in protocol.tuning_chips for seed in protocol.seeds[:1]]


def choose_rho(rows: list[dict], drift_k: float) -> float:
    """The rho of the tuning rows with the best mean accuracy on the chip at ``drift_k`` (ties: smaller rho)."""
    tuning = [r for r in rows if r.get("set") == "tuning" and r["drift_k"] == drift_k]
    if not tuning:
        raise ValueError(f"no tuning runs at ΔT {drift_k:g} K to choose rho from")
    means = {rho: common.mean_std([r["accuracy"] for r in tuning if r["rho"] == rho])[0]
             for rho in sorted({r["rho"] for r in tuning})}
    return max(means, key=lambda rho: (means[rho], -rho))


def tasks(protocol: common.Protocol, settings: Settings, offset_sigmas=(0.08,), methods=METHODS) -> list[dict]:
    """One task per (offset spread, chip, seed, method); with no offsets every chip is the same bank, so
    only the first evaluation chip is run. Only SAT's tasks carry rho (the others do not use it, so a
    re-tuned rho recomputes only SAT)."""
    return [{"method": m, "seed": seed, "chip": chip, "offset_sigma": o, "data": protocol.data,
             "n_train": protocol.n_train, "n_test": protocol.n_test, "set": "evaluation",
             "settings": {**settings.__dict__, "rho_grid": (), **({} if m == "sat" else {"rho": None})}}
            for o in offset_sigmas for chip in (protocol.eval_chips if o else protocol.eval_chips[:1])
            for seed in protocol.seeds for m in methods]


def report(rows: list[dict], settings: Settings) -> tuple[str, object]:
    data = rows[0]["data"] if rows else "?"
    lines = []
    tuning = [r for r in rows if r.get("set") == "tuning"]
    rows = [r for r in rows if r.get("set", "evaluation") == "evaluation"]

    def label(m: str) -> str:
        return f"SAT (ρ {settings.rho:g} adaptive)" if m == "sat" else LABELS[m]

    if tuning:
        chips = sorted({r["chip"] for r in tuning})
        seeds = sorted({r["seed"] for r in tuning})
        grid = sorted({r["rho"] for r in tuning})
        body = [[f"{rho:g}" + (" (chosen)" if rho == settings.rho else "")]
                + [common.fmt([r["accuracy"] for r in tuning if r["rho"] == rho and r["drift_k"] == dk])
                   for dk in settings.drifts] for rho in grid]
        lines.append(f"**Tuning SAT's ρ (adaptive) for ΔT {min(settings.drifts):g} K on the tuning chips {chips} only "
                     f"(seeds {seeds}, offsets σ {tuning[0]['offset_sigma']:g} nm), {data}, {settings.epochs} epochs** "
                     f"(% on the chip; these chips report nothing below)\n\n"
                     + common.md_table(["ρ"] + [f"ΔT {dk:g} K" for dk in settings.drifts], body))
    for o in dict.fromkeys(r["offset_sigma"] for r in rows):
        sub = [r for r in rows if r["offset_sigma"] == o]
        header = ["method"] + [f"ΔT {dk:g} K: paper / ours" for dk in settings.drifts]
        body = []
        for m in dict.fromkeys(r["method"] for r in sub):
            cells = [label(m)]
            for i, dk in enumerate(settings.drifts):
                acc = [r["accuracy"] for r in sub if r["method"] == m and r["drift_k"] == dk]
                paper = PAPER[m][i] if i < 3 and dk == (0.0, -1.0, -2.0)[i] else "–"
                cells.append(f"{paper} / {common.fmt(acc)}")
            body.append(cells)
        lines.append(f"**Microring bank, chip offsets N(0, {o:g} nm), {data}, {settings.epochs} epochs** "
                     f"(% test accuracy on the chip, mean ± std (n runs = chips × seeds))\n\n" + common.md_table(header, body))
        if all("accuracy_bn_batch" in r for r in sub):
            body = [[label(m)] + [common.fmt([r["accuracy_bn_batch"] for r in sub if r["method"] == m and r["drift_k"] == dk])
                                   for dk in settings.drifts] for m in dict.fromkeys(r["method"] for r in sub)]
            lines.append(f"Same runs, batch norm normalising each 100-image test batch by its own statistics "
                         f"(a network evaluated in training mode):\n\n"
                         + common.md_table(["method"] + [f"ΔT {dk:g} K" for dk in settings.drifts], body))
    n_panels = max(1, len(dict.fromkeys(r["offset_sigma"] for r in rows)))
    fig, axes = common.plt().subplots(1, n_panels, figsize=(5 * n_panels, 3.6), squeeze=False)
    for ax, o in zip(axes[0], dict.fromkeys(r["offset_sigma"] for r in rows)):
        for m in dict.fromkeys(r["method"] for r in rows):
            ms = [common.mean_std([r["accuracy"] for r in rows if r["method"] == m and r["offset_sigma"] == o
                                   and r["drift_k"] == dk]) for dk in settings.drifts]
            ax.errorbar(settings.drifts, [100 * a[0] for a in ms], [100 * a[1] for a in ms], marker="o", capsize=3,
                        label=label(m))
        ax.set(xlabel="ΔT (K)", ylabel="accuracy on chip (%)", title=f"microring, offsets σ {o:g} nm", ylim=(0, 100))
        ax.legend(fontsize=7)
    return "\n".join(lines), fig
