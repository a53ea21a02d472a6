"""The SAT paper's free-space protocols (``research/sat-paper.md`` §1, platform 3).

- ``d2nn``: the diffractive network (two phase masks, the virtual bench's optics: :class:`FreeSpaceTwin`
  from ``stations/freespace.yaml``), BP (Adam 0.005) vs SAT (SAM rho 0.1 adaptive over Adam 0.005 plus
  the finite-difference rotation ascent: probe U[0, 1] deg, step 0.03), evaluated with the masks rotated
  0 -> 1 deg. Paper: BP 98.0 -> 6.5 %, SAT 96.5 -> 96.5 % (one 200-image batch).
- ``fsnn``: the free-space PNN, a 784-144-10 sigmoid network whose first-layer weights are displayed as
  images; the image lands on them misaligned by rotation / y shift / scale (``affine_grid`` on the
  input, bilinear). BP (Adam 1e-3) vs SAT (SAM rho 0.1 over Adam 1e-3 plus the round-robin
  finite-difference ascent of :mod:`labsat.sat.alignment`: angle probe U[0, 2] deg step 50, shift
  U[0, 2] px step 50, scale U[0, 0.1] step 0.001 within [1, 1.1]). Evaluated at angle ±3 deg, shift
  ±3 px, scale 0.9 / 1.1 and on the angle x shift grid 0..2.

Both reuse :class:`labsat.sat.alignment.AdversarialAlignment` (one mechanism for the adversarial
misalignment). There is no fabrication draw here: a run's spread is over training seeds.
"""
from __future__ import annotations

import contextlib
import functools
import math
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
import torch.nn.functional as F

from . import common

D2NN_ROT = (0.0, 0.25, 0.5, 0.75, 1.0)
FSNN_POINTS = ([("angle", a) for a in (-3.0, 0.0, 3.0)] + [("shift", s) for s in (-3.0, 3.0)]
               + [("scale", c) for c in (0.9, 1.1)] + [("grid", (a, s)) for a in (0.0, 1.0, 2.0) for s in (0.0, 1.0, 2.0)])
PAPER_D2NN = {"bp": {0.0: 98.0, 1.0: 6.5}, "sat": {0.0: 96.5, 1.0: 96.5}}
PAPER_FSNN = {"bp": {("angle", -3.0): 52.9, ("angle", 3.0): 53.7, ("shift", -3.0): 43.1, ("shift", 3.0): 46.5,
                     ("scale", 0.9): 9.7, ("scale", 1.1): 10.1, ("grid", (0.0, 0.0)): 96.3, ("grid", (2.0, 2.0)): 59.6},
              "sat": {("angle", -3.0): 91.5, ("angle", 3.0): 90.0, ("shift", -3.0): 86.3, ("shift", 3.0): 83.5,
                      ("scale", 0.9): 95.0, ("scale", 1.1): 94.6, ("grid", (0.0, 0.0)): 96.7, ("grid", (2.0, 2.0)): 90.1}}


class FreeSpaceMLP(nn.Module):
    """784-144-10 sigmoid network; the input image meets the displayed weights with a misalignment
    (``rotation_deg``, ``shift_x_px``, ``shift_y_px``, ``scale``), the interface of
    :class:`~labsat.sat.alignment.AdversarialAlignment`."""

    def __init__(self, seed: int, side: int = 28, hidden: int = 144):
        super().__init__()
        torch.manual_seed(seed)
        self.side = side
        self.fc1 = nn.Linear(side * side, hidden)
        self.fc2 = nn.Linear(hidden, 10)
        self.rotation_deg, self.shift_x_px, self.shift_y_px, self.scale = 0.0, 0.0, 0.0, 1.0

    @contextlib.contextmanager
    def misaligned(self, **values: float):
        old = {k: getattr(self, k) for k in values}
        for k, v in values.items():
            setattr(self, k, float(v))
        try:
            yield self
        finally:
            for k, v in old.items():
                setattr(self, k, v)

    def _warp(self, img: torch.Tensor) -> torch.Tensor:
        if (self.rotation_deg, self.shift_x_px, self.shift_y_px, self.scale) == (0.0, 0.0, 0.0, 1.0):
            return img
        th = math.radians(self.rotation_deg)
        c, s = math.cos(th) / self.scale, math.sin(th) / self.scale
        half = (self.side - 1) / 2
        theta = torch.tensor([[c, s, -self.shift_x_px / half], [-s, c, -self.shift_y_px / half]], dtype=img.dtype)
        grid = F.affine_grid(theta[None].expand(len(img), 2, 3), list(img.shape), align_corners=True)
        return F.grid_sample(img, grid, mode="bilinear", padding_mode="zeros", align_corners=True)

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        h = torch.sigmoid(self.fc1(self._warp(img).flatten(1)))
        return self.fc2(h)


def _probes(kind: str):
    from labsat.sat.alignment import AlignmentProbe

    if kind == "d2nn":
        return [AlignmentProbe("rotation_deg", 1.0, 0.03, -1.0, 1.0, symmetric=False)]
    return [AlignmentProbe("rotation_deg", 2.0, 50.0, -2.0, 2.0, symmetric=False),
            AlignmentProbe("shift_y_px", 2.0, 50.0, -2.0, 2.0, symmetric=False),
            AlignmentProbe("scale", 0.1, 0.001, 0.0, 0.1, symmetric=False)]


def train(model: nn.Module, align, params, x, y, method: str, epochs: int, lr: float, rho: float, adaptive: bool,
          batch_size: int, seed: int, kind: str) -> float:
    """BP (Adam) or SAT (SAM over Adam + the finite-difference misalignment ascent) on ``params``."""
    from labsat.sat import SAM
    from labsat.sat.alignment import AdversarialAlignment

    sat = method == "sat"
    opt = SAM(params, torch.optim.Adam, rho=rho, adaptive=adaptive, lr=lr) if sat else torch.optim.Adam(params, lr=lr)
    adv = AdversarialAlignment(align, _probes(kind), seed=seed + 1) if sat else None
    g = torch.Generator().manual_seed(seed)
    loss = torch.tensor(0.0)
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=g)
        for i in range(0, len(x), batch_size):
            idx = order[i:i + batch_size]
            xb, yb = x[idx], y[idx]

            def closure():
                opt.zero_grad()
                out = F.cross_entropy(model(xb), yb)
                out.backward()
                return out

            def update():
                if sat:
                    return opt.step(closure)
                out = closure()
                opt.step()
                return out

            loss = adv.step(lambda: F.cross_entropy(model(xb), yb), update) if adv else update()
            if hasattr(model, "physical"):
                model.physical.project_()
    return float(loss.detach())


@torch.no_grad()
def accuracy(model, x, y) -> float:
    return sum(int((model(x[i:i + 500]).argmax(1) == y[i:i + 500]).sum()) for i in range(0, len(x), 500)) / len(x)


@functools.lru_cache(maxsize=2)
def _images(spec: str, n_train, n_test):
    return common.load_images(spec, seed=0, n_train=n_train, n_test=n_test)


def _d2nn(station: str, seed: int):
    from labsat.config import load_config
    from labsat.kinds import kind_of, layer_for_kind
    from labsat.physical import HybridClassifier, PhysicalLayer

    cfg = load_config(Path(station))
    lname = layer_for_kind(cfg, "freespace")
    twin = kind_of(cfg, lname).make_twin(cfg, lname)
    data = twin.load_data(seed=0)
    model = HybridClassifier(PhysicalLayer(twin, seed=seed), data.n_classes, seed=seed)
    return model, data


def run_task(task: dict) -> list[dict]:
    torch.set_num_threads(1)
    s = task["settings"]
    seed, method = task["seed"], task["method"]
    rows = []
    t0 = time.perf_counter()
    if task["network"] == "d2nn":
        model, data = _d2nn(task["station"], seed)
        g = np.random.default_rng(0)
        tr = torch.as_tensor(g.permutation(len(data.x_train))[:task["n_train"]] if task["n_train"] else
                             np.arange(len(data.x_train)))
        te = torch.as_tensor(g.permutation(len(data.x_test))[:task["n_test"]] if task["n_test"] else
                             np.arange(len(data.x_test)))
        x, y, xt, yt = data.x_train[tr], data.y_train[tr], data.x_test[te], data.y_test[te]
        twin = model.physical.twin
        loss = train(model, twin, [p for p in model.parameters() if p.requires_grad], x, y, method, s["epochs"],
                     s["d2nn_lr"], s["d2nn_rho"], True, s["batch_size"], seed, "d2nn")
        seconds = time.perf_counter() - t0
        model.eval()
        for r in D2NN_ROT:
            with twin.misaligned(rotation_deg=r):
                rows.append({"network": "d2nn", "method": method, "seed": seed, "kind": "rotation", "value": r,
                             "accuracy": accuracy(model, xt, yt), "final_loss": loss, "train_s": seconds,
                             "epochs": s["epochs"], "data": f"digits 8x8 -> 16x16 on a 32x32 grid, {len(x)} train / {len(xt)} test"})
        return rows
    xtr, ytr, xte, yte, name = _images(task["data"], task["n_train"], task["n_test"])
    model = FreeSpaceMLP(seed)
    loss = train(model, model, list(model.parameters()), xtr, ytr, method, s["epochs"], s["fsnn_lr"], s["fsnn_rho"],
                 False, s["batch_size"], seed, "fsnn")
    seconds = time.perf_counter() - t0
    for kind, v in FSNN_POINTS:
        if kind == "angle":
            ctx = dict(rotation_deg=v)
        elif kind == "shift":
            ctx = dict(shift_y_px=v)
        elif kind == "scale":
            ctx = dict(scale=v)
        else:
            ctx = dict(rotation_deg=v[0], shift_y_px=v[1])
        with model.misaligned(**ctx):
            rows.append({"network": "fsnn", "method": method, "seed": seed, "kind": kind, "value": str(v),
                         "accuracy": accuracy(model, xte, yte), "final_loss": loss, "train_s": seconds,
                         "epochs": s["epochs"], "data": name})
    return rows


DEFAULTS = dict(epochs=20, batch_size=64, d2nn_lr=0.005, d2nn_rho=0.1, fsnn_lr=1e-3, fsnn_rho=0.1)


def tasks(protocol: common.Protocol, settings: dict, station: str = "stations/freespace.yaml",
          networks=("d2nn", "fsnn"), d2nn_sizes=(500, 200)) -> list[dict]:
    out = []
    for net in networks:
        for seed in protocol.seeds:
            for m in ("bp", "sat"):
                n_train, n_test = (d2nn_sizes if net == "d2nn" else (protocol.n_train, protocol.n_test))
                out.append({"network": net, "method": m, "seed": seed, "data": protocol.data, "station": station,
                            "n_train": n_train, "n_test": n_test, "settings": {**DEFAULTS, **settings}})
    return out


def report(rows: list[dict]) -> tuple[str, object]:
    parts = []
    d = [r for r in rows if r["network"] == "d2nn"]
    if d:
        body = []
        for m in ("bp", "sat"):
            cells = [m.upper()]
            for r in D2NN_ROT:
                paper = PAPER_D2NN[m].get(r, "–")
                cells.append(f"{paper} / {common.fmt([x['accuracy'] for x in d if x['method'] == m and x['value'] == r])}")
            body.append(cells)
        parts.append(f"**Diffractive network (D2NN), masks rotated; {d[0]['data']}; {d[0]['epochs']} epochs** "
                     "(% accuracy, paper / ours mean ± std (n seeds))\n\n"
                     + common.md_table(["method"] + [f"{r:g}°" for r in D2NN_ROT], body))
    f = [r for r in rows if r["network"] == "fsnn"]
    if f:
        body = []
        for kind, v in FSNN_POINTS:
            cells = [f"{kind} {v}"]
            for m in ("bp", "sat"):
                paper = PAPER_FSNN[m].get((kind, v), "–")
                acc = [x["accuracy"] for x in f if x["method"] == m and x["kind"] == kind and x["value"] == str(v)]
                cells.append(f"{paper} / {common.fmt(acc)}")
            body.append(cells)
        parts.append(f"**Free-space PNN 784-144-10, input misaligned on the weight display; {f[0]['data']}; "
                     f"{f[0]['epochs']} epochs** (% accuracy, paper / ours mean ± std (n seeds); grid = (angle °, y shift px))\n\n"
                     + common.md_table(["misalignment", "BP: paper / ours", "SAT: paper / ours"], body))
    fig, axes = common.plt().subplots(1, 2, figsize=(10, 3.6))
    for m in ("bp", "sat"):
        ms = [common.mean_std([x["accuracy"] for x in d if x["method"] == m and x["value"] == r]) for r in D2NN_ROT]
        axes[0].errorbar(D2NN_ROT, [100 * a[0] for a in ms], [100 * a[1] for a in ms], marker="o", capsize=3, label=m.upper())
        pts = [("angle", a) for a in (-3.0, 0.0, 3.0)]
        ms = [common.mean_std([x["accuracy"] for x in f if x["method"] == m and x["kind"] == k and x["value"] == str(v)])
              for k, v in pts]
        axes[1].errorbar([v for _, v in pts], [100 * a[0] for a in ms], [100 * a[1] for a in ms], marker="o", capsize=3,
                         label=m.upper())
    axes[0].set(xlabel="mask rotation (°)", ylabel="accuracy (%)", title="D2NN", ylim=(0, 100))
    axes[1].set(xlabel="input rotation (°)", ylabel="accuracy (%)", title="free-space PNN", ylim=(0, 100))
    for ax in axes:
        ax.legend()
    return "\n".join(parts), fig
