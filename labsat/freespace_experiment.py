"""Free-space robustness experiment (the SAT paper's third platform): accuracy of a diffractive network
of phase masks under misalignment, plain training vs SAT, no retraining.

``labsat freespace-robustness``: for each seed, train on the twin (digits images) with plain Adam and
with SAT (SAM on the mask phases + the adversarial finite-difference alignment step of
:mod:`labsat.sat.alignment`), then evaluate both on the twin misaligned by rotation (0..2 deg), x shift
(0..2 px), scale (1.0..1.1) and a rotation x shift grid. Writes a JSON record, a Markdown table and a
PNG plot (matplotlib, Agg).

Each (seed, method) training and its evaluations is one task of a sweep (:mod:`labsat.sweeps`): on an
embedded LocalCluster, a lab's Dask cluster (``--scheduler tcp://HOST:8786``) or serially, with the same
numbers; each result is stored in the station's run database as it ends, and a re-run computes only
what is missing.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import numpy as np
import torch

if TYPE_CHECKING:
    from rich.progress import Progress

ROTATIONS = (0.0, 0.5, 1.0, 1.5, 2.0)
SHIFTS = (0.0, 0.5, 1.0, 1.5, 2.0)
SCALES = (1.0, 1.025, 1.05, 1.075, 1.1)
GRID_ROT = (0.0, 1.0, 2.0)
GRID_SHIFT = (0.0, 1.0, 2.0)


def sweep_points() -> list[tuple[float, float, float]]:
    """(rotation_deg, shift_x_px, scale) of every evaluation, without repeats."""
    pts = [(r, 0.0, 1.0) for r in ROTATIONS] + [(0.0, s, 1.0) for s in SHIFTS] + [(0.0, 0.0, c) for c in SCALES]
    pts += [(r, s, 1.0) for r in GRID_ROT for s in GRID_SHIFT]
    return list(dict.fromkeys(pts))


@torch.no_grad()
def accuracy_misaligned(model, x, y, rotation_deg=0.0, shift_x_px=0.0, scale=1.0, batch_size=256) -> float:
    twin = model.physical.twin
    base = twin.alignment()
    model.eval()
    with twin.misaligned(rotation_deg=base["rotation_deg"] + rotation_deg,
                         shift_x_px=base["shift_x_px"] + shift_x_px, scale=base["scale"] * scale):
        correct = 0
        for s in range(0, len(x), batch_size):
            correct += int((model(x[s:s + batch_size]).argmax(1) == y[s:s + batch_size]).sum())
    return correct / len(x)


def _subset(data, n_train: int, n_test: int):
    rng = np.random.default_rng(0)
    tr = torch.as_tensor(rng.permutation(len(data.x_train))[:n_train])
    te = torch.as_tensor(rng.permutation(len(data.x_test))[:n_test])
    data.x_train, data.y_train = data.x_train[tr], data.y_train[tr]
    return data, data.x_test[te], data.y_test[te]


def train_and_sweep(task: dict) -> dict:
    """One sweep task: train one (seed, method) on the twin, then its accuracy at every misalignment point.
    {station (config JSON), layer, seed, method, epochs, n_train, n_test, lr, rho, batch_size, bounds, points}."""
    from labsat.config import parse_config
    from labsat.kinds import kind_of
    from labsat.physical import HybridClassifier, PhysicalLayer
    from labsat.sat.alignment import paper_probes, train_alignment_sat

    cfg = parse_config(task["station"], "station (from the sweep task)")
    lname, seed, method = task["layer"], task["seed"], task["method"]
    make_twin = lambda: kind_of(cfg, lname).make_twin(cfg, lname)  # noqa: E731
    data, x_te, y_te = _subset(make_twin().load_data(seed=0), task["n_train"], task["n_test"])
    b = task["bounds"]
    torch.manual_seed(seed)
    model = HybridClassifier(PhysicalLayer(make_twin(), seed=seed), data.n_classes, seed=seed)
    t0 = time.perf_counter()
    hist = train_alignment_sat(model, data, epochs=task["epochs"], lr=task["lr"], rho=task["rho"],
                               batch_size=task["batch_size"], seed=seed, sam=method == "SAT", adversary=method == "SAT",
                               probes=paper_probes(b["rotation_deg"], b["shift_px"], b["scale"]))
    train_s = time.perf_counter() - t0
    acc = [accuracy_misaligned(model, x_te, y_te, *p) for p in task["points"]]
    return {"seed": seed, "method": method, "train_s": train_s, "history": hist, "accuracy": acc}


def run(station: Path, seeds=(0, 1, 2), epochs: int = 6, n_train: int = 500, n_test: int = 200,
        lr: float = 0.1, rho: float = 0.05, batch_size: int = 64, methods=("plain", "SAT"),
        max_rotation_deg: float = 2.0, max_shift_px: float = 2.0, max_scale: float = 0.1, log=print,
        scheduler: Optional[str] = None, workers: Optional[int] = None, store: Optional[Path] = None,
        progress: bool | Progress = False) -> dict:
    """Every (seed, method) as one sweep task (see :func:`train_and_sweep`); ``scheduler``/``workers``/``store``
    as in :func:`labsat.sweeps.run_sweep` (``store`` default: the station's run database)."""
    from labsat.config import load_config
    from labsat.kinds import kind_of, layer_for_kind
    from labsat.runs import db_path_for
    from labsat.sweeps import run_sweep

    cfg = load_config(station)
    lname = layer_for_kind(cfg, "freespace")
    data = kind_of(cfg, lname).make_twin(cfg, lname).load_data(seed=0)
    n_train, n_test = min(n_train, len(data.x_train)), min(n_test, len(data.x_test))
    points = sweep_points()
    bounds = {"rotation_deg": max_rotation_deg, "shift_px": max_shift_px, "scale": max_scale}
    results = {"settings": {"epochs": epochs, "n_train": n_train, "n_test": n_test, "lr": lr, "rho": rho,
                            "batch_size": batch_size, "seeds": list(seeds), "station": str(station),
                            "adversary_bounds": bounds, "layer": cfg.layers[lname].model_dump()},
               "points": [list(p) for p in points], "runs": []}
    common = {"station": cfg.model_dump(mode="json"), "layer": lname, "epochs": epochs, "n_train": n_train,
              "n_test": n_test, "lr": lr, "rho": rho, "batch_size": batch_size, "bounds": bounds,
              "points": [list(p) for p in points]}
    tasks = [dict(common, seed=seed, method=method) for seed in seeds for method in methods]
    runs = run_sweep(train_and_sweep, tasks, name="freespace-robustness", store=store or db_path_for(cfg),
                     scheduler=scheduler, n_workers=workers, progress=progress, log=log)
    for r in runs:
        acc, hist = r["accuracy"], r["history"]
        results["runs"].append(r)
        log(f"seed {r['seed']} {r['method']}: train {r['train_s']:.0f} s, final train acc "
            f"{hist[-1]['train_accuracy']:.3f}, test acc aligned {acc[0]:.3f}, "
            f"rot 1 deg {acc[points.index((1.0, 0.0, 1.0))]:.3f}, shift 1 px {acc[points.index((0.0, 1.0, 1.0))]:.3f}")
    return results


def summary(results: dict) -> dict:
    """{method: {point: (mean, std)}} over seeds, accuracy in %."""
    points = [tuple(p) for p in results["points"]]
    out: dict = {}
    for method in ("plain", "SAT"):
        accs = np.array([r["accuracy"] for r in results["runs"] if r["method"] == method]) * 100
        out[method] = {p: (float(accs[:, i].mean()), float(accs[:, i].std())) for i, p in enumerate(points)}
    return out


def markdown(results: dict) -> str:
    s = summary(results)
    f = lambda m, p: f"{s[m][p][0]:.1f} ± {s[m][p][1]:.1f}"  # noqa: E731
    lines = ["| sweep | value | plain (%) | SAT (%) |", "|---|---|---|---|"]
    for r in ROTATIONS:
        lines.append(f"| rotation | {r:g}° | {f('plain', (r, 0.0, 1.0))} | {f('SAT', (r, 0.0, 1.0))} |")
    for sh in SHIFTS:
        lines.append(f"| x shift | {sh:g} px | {f('plain', (0.0, sh, 1.0))} | {f('SAT', (0.0, sh, 1.0))} |")
    for c in SCALES:
        lines.append(f"| scale | {c:g} | {f('plain', (0.0, 0.0, c))} | {f('SAT', (0.0, 0.0, c))} |")
    lines += ["", "rotation × x shift grid (plain / SAT, %, mean over seeds):", "",
              "| rotation \\ shift | " + " | ".join(f"{sh:g} px" for sh in GRID_SHIFT) + " |",
              "|---|" + "---|" * len(GRID_SHIFT)]
    for r in GRID_ROT:
        cells = [f"{s['plain'][(r, sh, 1.0)][0]:.1f} / {s['SAT'][(r, sh, 1.0)][0]:.1f}" for sh in GRID_SHIFT]
        lines.append(f"| {r:g}° | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(results: dict, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = summary(results)
    fig, axes = plt.subplots(1, 5, figsize=(20, 3.8))
    sweeps = [("rotation (deg)", ROTATIONS, lambda v: (v, 0.0, 1.0)), ("x shift (px)", SHIFTS, lambda v: (0.0, v, 1.0)),
              ("scale", SCALES, lambda v: (0.0, 0.0, v))]
    for ax, (label, values, key) in zip(axes, sweeps):
        for method, color in (("plain", "tab:red"), ("SAT", "tab:blue")):
            m = np.array([s[method][key(v)][0] for v in values])
            e = np.array([s[method][key(v)][1] for v in values])
            ax.errorbar(values, m, yerr=e, label=method, color=color, marker="o", capsize=3)
        ax.set_xlabel(label)
        ax.set_ylabel("test accuracy (%)")
        ax.set_ylim(0, 100)
        ax.grid(alpha=0.3)
        ax.legend()
    for ax, method in zip(axes[3:], ("plain", "SAT")):
        grid = np.array([[s[method][(r, sh, 1.0)][0] for sh in GRID_SHIFT] for r in GRID_ROT])
        im = ax.imshow(grid, vmin=0, vmax=100, cmap="viridis", origin="lower")
        ax.set_xticks(range(len(GRID_SHIFT)), [f"{v:g}" for v in GRID_SHIFT])
        ax.set_yticks(range(len(GRID_ROT)), [f"{v:g}" for v in GRID_ROT])
        ax.set_xlabel("x shift (px)")
        ax.set_ylabel("rotation (deg)")
        ax.set_title(f"{method}: rotation x shift")
        for i in range(len(GRID_ROT)):
            for j in range(len(GRID_SHIFT)):
                ax.text(j, i, f"{grid[i, j]:.0f}", ha="center", va="center", color="w")
    fig.colorbar(im, ax=axes[3:], shrink=0.8, label="accuracy (%)")
    fig.suptitle("free-space diffractive network (2 phase masks, digits): accuracy under misalignment, "
                 "no retraining (mean ± std over seeds)")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def register(app) -> None:
    import typer

    @app.command("freespace-robustness")
    def freespace_robustness(
            station: Path = typer.Option(Path("stations/freespace.yaml"), "--station", "-s"),
            seeds: int = typer.Option(3, help="seeds 0..N-1"), epochs: int = typer.Option(6),
            n_train: int = typer.Option(500, help="training images (of 1347)"),
            n_test: int = typer.Option(200, help="test images (of 450)"),
            lr: float = typer.Option(0.1), rho: float = typer.Option(0.05),
            out: Path = typer.Option(Path("benchmarks/freespace"), help="folder for JSON, table and PNG"),
            plot_only: Optional[Path] = typer.Option(None, help="re-plot a results JSON instead of running"),
            scheduler: Optional[str] = typer.Option(
                None, help="where the trainings run: a Dask scheduler address (tcp://HOST:8786), 'serial', or by "
                "default an embedded LocalCluster (or Dask config labsat.scheduler)"),
            workers: Optional[int] = typer.Option(None, min=1, help="embedded LocalCluster: worker processes"),
            as_json: bool = typer.Option(False, "--json", help="print the results as JSON (progress on stderr)")):
        """Free-space network under misalignment (rotation, shift, scale): plain vs SAT, no retraining."""
        from rich.console import Console

        from labsat.cli_format import emit_json, show_path

        console = Console(stderr=as_json)  # with --json, stdout carries only the JSON
        if plot_only is not None:
            results = json.loads(plot_only.read_text())
        else:
            from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                                       TimeRemainingColumn)

            # the sweep's bar on this console (standard error with --json: stdout carries only the JSON)
            with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                          TimeElapsedColumn(), TimeRemainingColumn(), console=console) as bar:
                results = run(station, seeds=tuple(range(seeds)), epochs=epochs, n_train=n_train, n_test=n_test,
                              lr=lr, rho=rho, log=bar.console.print, scheduler=scheduler, workers=workers,
                              progress=bar)
            out.mkdir(parents=True, exist_ok=True)
            (out / "results.json").write_text(json.dumps(results, indent=1))
        table = markdown(results)
        out.mkdir(parents=True, exist_ok=True)
        (out / "table.md").write_text(table + "\n")
        png = plot(results, out / "robustness.png")
        if as_json:
            emit_json({"results": results, "table": show_path(out / "table.md"), "plot": show_path(png)})
            return
        console.print(table)
        console.print(f"wrote {show_path(out / 'table.md')}, {show_path(png)}", soft_wrap=True)
