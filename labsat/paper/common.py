"""The discipline shared by the paper-protocol experiments: declared chips, seeds, tasks, tables.

- :class:`Protocol`: which chips may be used to tune hyper-parameters (``tuning_chips``) and which report
  results (``eval_chips``, disjoint, declared before any run), the training seeds, and the sizes. Every
  experiment is a list of independent task dicts and one top-level task function, so a sweep engine
  can map them (:func:`map_tasks` on ``labsat.sweeps.run_sweep``: serial, a Dask LocalCluster or a
  lab's cluster; each result stored as its task ends).
- :func:`summarise` / :func:`write_results`: mean ± std (n) per group, every run kept in
  ``results.csv`` / ``results.json``, the table in ``table.md`` and a plot in ``plot.png``.
"""
from __future__ import annotations

import csv
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Optional

import numpy as np
import torch

# Chip seeds are disjoint ranges, declared here once: a chip's seed says which set it belongs to.
TUNING_CHIPS = (101, 102)  # the only chips a hyper-parameter may be chosen on
EVAL_CHIPS = (201, 202, 203, 204, 205, 206, 207, 208, 209, 210)  # reported; never used for tuning
TRANSFER_BASE = 10_000  # transfer chips: TRANSFER_BASE + 100 * grid point + k, never a tuning/eval chip


@dataclass
class Protocol:
    """Declared chips, seeds and data sizes of one experiment run."""

    eval_chips: tuple = EVAL_CHIPS[:2]
    seeds: tuple = (0,)
    tuning_chips: tuple = TUNING_CHIPS
    data: str = "digits"  # digits | mnist:PATH
    n_train: Optional[int] = None  # None = the whole training split
    n_test: Optional[int] = None  # None = the whole test set
    full: bool = False
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        self.eval_chips, self.seeds, self.tuning_chips = tuple(self.eval_chips), tuple(self.seeds), tuple(self.tuning_chips)
        overlap = set(self.eval_chips) & set(self.tuning_chips)
        if overlap:
            raise ValueError(f"evaluation chips {sorted(overlap)} are also tuning chips: the sets must be disjoint")
        if not self.eval_chips or not self.seeds:
            raise ValueError("at least one evaluation chip and one seed")
        if self.full and (len(self.eval_chips) < 5 or len(self.seeds) < 3):
            raise ValueError("--full reports on at least 5 evaluation chips x 3 seeds")

    def describe(self) -> str:
        return (f"evaluation chips {list(self.eval_chips)} (tuning chips {list(self.tuning_chips)}, disjoint, "
                f"not used for these numbers), training seeds {list(self.seeds)}")


def transfer_chip(point: int, k: int) -> int:
    """The seed of the k-th new chip of a transfer grid point (disjoint from tuning and eval chips)."""
    return TRANSFER_BASE + 100 * point + k


def map_tasks(fn: Callable[[dict], dict | list[dict]], tasks: list[dict], *, name: str, store: Path | str,
              scheduler: Optional[str] = "serial", n_workers: Optional[int] = None,
              log: Callable[[str], None] = print) -> list[dict]:
    """Run ``fn`` on each task dict on the project's sweep engine (:func:`labsat.sweeps.run_sweep`: each
    result stored in ``store`` as its task ends, a re-run computes only what is missing, a progress bar);
    flatten the returned row lists."""
    from labsat.sweeps import run_sweep

    results = run_sweep(fn, tasks, name=name, store=store, scheduler=scheduler, n_workers=n_workers,
                        progress=True, log=log)
    rows: list[dict] = []
    for out in results:
        rows.extend(out if isinstance(out, list) else [out])
    return rows


def _short(task: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in task.items() if isinstance(v, (int, float, str)) and k != "data")


def mean_std(values: Iterable[float]) -> tuple[float, float, int]:
    a = np.asarray([v for v in values if v is not None and np.isfinite(v)], dtype=float)
    if len(a) == 0:
        return float("nan"), float("nan"), 0
    return float(a.mean()), float(a.std(ddof=1)) if len(a) > 1 else 0.0, len(a)


def fmt(values: Iterable[float], pct: bool = True) -> str:
    m, s, n = mean_std(values)
    k = 100.0 if pct else 1.0
    return f"{k * m:.1f} ± {k * s:.1f} ({n})"


def summarise(rows: list[dict], by: tuple[str, ...], value: str) -> dict[tuple, tuple[float, float, int]]:
    """{group key tuple: (mean, std, n)} of ``value`` over the rows, groups in first-seen order."""
    groups: dict[tuple, list] = {}
    for r in rows:
        groups.setdefault(tuple(r[k] for k in by), []).append(r[value])
    return {k: mean_std(v) for k, v in groups.items()}


def md_table(header: list[str], body: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in body]
    return "\n".join(lines) + "\n"


def plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as _plt

    return _plt


def write_results(directory: Path, rows: list[dict], table: str, meta: dict, figure=None) -> Path:
    """results.csv (every run), results.json (meta + every run), table.md and plot.png."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    if rows:
        keys = list(dict.fromkeys(k for r in rows for k in r))
        with open(directory / "results.csv", "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=keys)
            w.writeheader()
            w.writerows(rows)
    (directory / "table.md").write_text(table)
    (directory / "results.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1, default=str))
    if figure is not None:
        figure.savefig(directory / "plot.png", dpi=110, bbox_inches="tight")
        plt().close(figure)
    return directory


def protocol_meta(protocol: Protocol, **settings) -> dict:
    return {"protocol": asdict(protocol), "settings": settings, "torch": torch.__version__}


# --- data: 28x28 images (MNIST IDX when given, else the 8x8 digits upsampled) ---
def load_images(spec: str = "digits", seed: int = 0, n_train: Optional[int] = None, n_test: Optional[int] = None):
    """(x_train, y_train, x_test, y_test, name) with x as float32 (N, 1, 28, 28) in [0, 1].

    ``digits``: scikit-learn's 1797 8x8 digits, nearest-upsampled to 24x24 and centred on 28x28, split
    75/25 with ``seed``; ``mnist:PATH``: the four MNIST IDX files in PATH (never downloaded)."""
    from labsat import data as D

    if spec == "digits":
        ds = D.load_digits_images(28, 24, seed=seed)
        xtr, ytr, xte, yte, name = ds.x_train, ds.y_train, ds.x_test, ds.y_test, "digits 8x8 -> 28x28"
    elif spec.startswith("mnist:"):
        path = spec.split(":", 1)[1]
        if not path:
            raise ValueError("--data mnist:PATH needs the directory of the MNIST IDX files")
        f = {k: D._find_idx(path, v) for k, v in D.MNIST_FILES.items()}
        xtr = torch.as_tensor(D.read_idx(f["train_images"]).astype(np.float32) / 255.0)
        xte = torch.as_tensor(D.read_idx(f["test_images"]).astype(np.float32) / 255.0)
        ytr = torch.as_tensor(D.read_idx(f["train_labels"]).astype(np.int64))
        yte = torch.as_tensor(D.read_idx(f["test_labels"]).astype(np.int64))
        name = "MNIST"
    else:
        raise ValueError(f"unknown data set {spec!r}: use 'digits' or 'mnist:PATH'")
    g = torch.Generator().manual_seed(seed)
    if n_train is not None and n_train < len(xtr):
        keep = torch.randperm(len(xtr), generator=g)[:n_train]
        xtr, ytr = xtr[keep], ytr[keep]
    if n_test is not None and n_test < len(xte):
        keep = torch.randperm(len(xte), generator=g)[:n_test]
        xte, yte = xte[keep], yte[keep]
    shape = (-1, 1, 28, 28)
    return (xtr.reshape(shape).float(), ytr.long(), xte.reshape(shape).float(), yte.long(),
            f"{name}, {len(xtr)} train / {len(xte)} test")
