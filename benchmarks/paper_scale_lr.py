"""Learning rate of `labsat train` by mesh size (issue 12): offline SAT on the chip's own twin, digits.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/paper_scale_lr.py --modes 8 16 32 64 --chips 1 2 --seeds 0 \
        --lrs 0.0003 0.001 0.003 0.01 0.03 0.1 --tag tuning            # tuning chips: choose the rule
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/paper_scale_lr.py --modes 32 64 --chips 3 4 5 6 7 \
        --seeds 0 1 2 --lrs rule 0.0003 0.001 0.003 0.01 --tag evaluation   # evaluation chips: check it
    .venv/bin/python benchmarks/paper_scale_lr.py --summary                  # the tables of benchmarks/README.md

What `labsat train --station stations/paper-mzi.yaml --mode offline` does (the SAT the benchmarks recommend:
SAM on the physical controls, Adam, rho 0.05, batch 64, ``--epochs`` default 20, digits PCA'd to N inputs,
1348 train / 449 test), with the twin of a perfectly calibrated chip: the virtual chip's hidden parameters
(paper error model, σ = 0.15 on phases and couplers; ``calibration.simchip.DirectHardware.truth``) loaded
into ``MZIMeshTwin`` (checked: the twin equals the noiseless chip to 1e-9 before training). Accuracy: test
split, on that twin. One JSON line per run, appended as it ends (``--out``); the summary reads them all.
``rule`` in ``--lrs`` is :func:`labsat.defaults.lr_for` at that N.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from labsat import defaults  # noqa: E402
from labsat.calibration.simchip import DirectHardware  # noqa: E402
from labsat.data import load_dataset  # noqa: E402
from labsat.physical import HybridClassifier, PhysicalLayer  # noqa: E402
from labsat.train import TrainConfig, accuracy, train  # noqa: E402
from labsat.twins.mzi import MZIMeshTwin  # noqa: E402

OUT = ROOT / "benchmarks" / "results" / "paper_scale_lr.jsonl"
V_MAX, V2PI = 5.5, 5.0  # stations/paper-mzi.yaml


def chip_twin(modes: int, chip: int) -> tuple[MZIMeshTwin, DirectHardware]:
    """The twin of virtual chip ``chip`` (paper error model) with the chip's hidden parameters loaded, and
    the chip."""
    hw = DirectHardware(seed=chip, modes=modes, v_max=V_MAX, v2pi=V2PI, error_model="paper",
                        phase_error_sigma=0.15, bs_error_sigma=0.15)
    t = hw.truth()
    twin = MZIMeshTwin(modes, hw.phase_per_u)
    with torch.no_grad():
        twin.offset.copy_(torch.as_tensor(np.array(t["offset"])))
        twin.log_eff.copy_(torch.as_tensor(np.log(t["eff"])))
        twin.crosstalk.copy_(torch.as_tensor(np.array(t["crosstalk"])))
        twin.coupler_error.copy_(torch.as_tensor(np.array(t["coupler_error"])).reshape(twin.coupler_error.shape))
        twin.log_gain.copy_(torch.as_tensor(np.log(t["gain"])))
    rng = np.random.default_rng(0)
    x, u = rng.uniform(0, 1, (4, modes)), rng.uniform(0, 1, twin.n_controls)
    with torch.no_grad():
        err = np.max(np.abs(twin(torch.as_tensor(x), torch.as_tensor(u)).numpy() - hw.forward(x, u, noisy=False)))
    if err > 1e-9:
        raise RuntimeError(f"chip {chip}, {modes} modes: the twin differs from the chip by {err:.3g}")
    return twin, hw


class ChipBench:
    """The chip as the bench of online training: its noisy readings (detector noise, ADC), counted."""

    def __init__(self, chip: DirectHardware):
        self.chip, self.batches = chip, 0

    def forward(self, x, u):
        self.batches += 1
        return self.chip.forward(x, u)


def run(modes: int, chip: int, seed: int, lr: float, epochs: int, data, mode: str = "offline",
        backward_dtype: str = "float32") -> dict:
    twin, hw = chip_twin(modes, chip)
    physical = PhysicalLayer(twin, ChipBench(hw) if mode == "online" else None, seed=seed)
    physical.backward_dtype = getattr(torch, backward_dtype)  # online only: the twin pass behind the chip's
    model = HybridClassifier(physical, data.n_classes, seed=seed)
    cfg = TrainConfig(mode=mode, optimizer=defaults.OPTIMIZER, lr=lr, epochs=epochs, seed=seed)
    t0, c0 = time.perf_counter(), time.process_time()
    hist = train(model, data, cfg)
    extra = {}
    if mode == "online":
        extra = dict(backward_dtype=backward_dtype,
                     chip_accuracy=accuracy(model, data.x_test, data.y_test, on_hardware=True))
    return dict(modes=modes, chip=chip, seed=seed, lr=lr, epochs=epochs, mode=mode, **extra,
                test_accuracy=accuracy(model, data.x_test, data.y_test, on_hardware=False),
                train_accuracy=hist.epochs[-1].train_accuracy if hist.epochs else None,
                loss=hist.epochs[-1].loss if hist.epochs else None,
                wall_s=time.perf_counter() - t0, cpu_s=time.process_time() - c0)


def summary(path: Path) -> None:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    for tag in dict.fromkeys(r["tag"] for r in rows):
        sel = [r for r in rows if r["tag"] == tag]
        if sel[0].get("mode") == "online":
            online_summary(tag, sel)
            continue
        groups = defaultdict(list)
        for r in sel:
            groups[(r["modes"], r["lr"])].append(r)
        chips = sorted({r["chip"] for r in sel})
        seeds = sorted({r["seed"] for r in sel})
        print(f"\n{tag}: chips {chips}, seeds {seeds}, {len(sel)} runs; test accuracy % (mean ± std, n); "
              "* = the rule's lr, best in bold")
        for n in sorted({m for m, _ in groups}):
            lrs = sorted(lr for m, lr in groups if m == n)
            means = {lr: 100 * np.mean([r["test_accuracy"] for r in groups[(n, lr)]]) for lr in lrs}
            best = max(means, key=means.get)
            cells = []
            for lr in lrs:
                acc = [100 * r["test_accuracy"] for r in groups[(n, lr)]]
                sd = np.std(acc, ddof=1) if len(acc) > 1 else 0.0
                cell = f"{lr:g}{'*' if np.isclose(lr, defaults.lr_for(n)) else ''}: {np.mean(acc):.1f} ± {sd:.1f} ({len(acc)})"
                cells.append(f"**{cell}**" if lr == best else cell)
            rule = defaults.lr_for(n)
            ran = [lr for lr in lrs if np.isclose(rule, lr)]
            gap = (f"{means[best] - means[ran[0]]:.1f} points below the best" if ran else "not run here")
            print(f"| {n} | {' | '.join(cells)} | rule {rule:.2g}: {gap} |")
        print("every run:")
        for r in sorted(sel, key=lambda r: (r["modes"], r["lr"], r["chip"], r["seed"])):
            print(f"  N={r['modes']} lr={r['lr']:g} chip={r['chip']} seed={r['seed']}: "
                  f"{100 * r['test_accuracy']:.1f} % (cpu {r['cpu_s']:.0f} s)")


def online_summary(tag: str, sel: list[dict]) -> None:
    """Online SAT with the twin's pass in each precision: accuracy on the chip and on its twin."""
    groups = defaultdict(list)
    for r in sel:
        groups[(r["modes"], r["lr"], r["backward_dtype"])].append(r)
    print(f"\n{tag}: online SAT, the chip as the bench; chips {sorted({r['chip'] for r in sel})}, seeds "
          f"{sorted({r['seed'] for r in sel})}, {len(sel)} runs")
    print("| N | lr | backward | test accuracy on the chip % | on its twin % | runs |")
    print("|---:|---:|---|---:|---:|---:|")
    for (n, lr, dt), rs in sorted(groups.items()):
        chip = [100 * r["chip_accuracy"] for r in rs]
        twin = [100 * r["test_accuracy"] for r in rs]
        sd = (lambda a: np.std(a, ddof=1) if len(a) > 1 else 0.0)
        print(f"| {n} | {lr:g} | {dt} | {np.mean(chip):.1f} ± {sd(chip):.1f} | {np.mean(twin):.1f} ± {sd(twin):.1f} "
              f"| {len(rs)} |")
    pairs = defaultdict(dict)
    for r in sel:
        pairs[(r["modes"], r["lr"], r["chip"], r["seed"])][r["backward_dtype"]] = 100 * r["chip_accuracy"]
    diffs = [p["float32"] - p["float64"] for p in pairs.values() if len(p) == 2]
    if diffs:
        print(f"paired float32 - float64 on the chip: {np.mean(diffs):+.2f} ± {np.std(diffs, ddof=1) if len(diffs) > 1 else 0:.2f}"
              f" points over {len(diffs)} pairs; every pair: {', '.join(f'{d:+.1f}' for d in diffs)}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--modes", type=int, nargs="+", default=[8, 16, 32, 64])
    ap.add_argument("--chips", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--lrs", nargs="+", default=["0.0003", "0.001", "0.003", "0.01", "0.03", "0.1"])
    ap.add_argument("--epochs", type=int, default=defaults.EPOCHS)
    ap.add_argument("--tag", default="tuning")
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--summary", action="store_true")
    ap.add_argument("--mode", choices=["offline", "online"], default="offline",
                    help="online: the chip itself is the bench (noisy readings), the twin supplies the gradient")
    ap.add_argument("--backward-dtypes", nargs="+", default=["float32"],
                    help="online: the twin pass's precision(s), run as pairs (same chip, seed, lr)")
    args = ap.parse_args()
    if args.summary:
        summary(args.out)
        return
    torch.set_num_threads(1)
    done = set()
    if args.out.exists():  # resumable: a cut-off run keeps what it wrote
        for line in args.out.read_text().splitlines():
            if line.strip():
                r = json.loads(line)
                done.add((r["tag"], r["modes"], r["chip"], r["seed"], r["lr"], r["epochs"],
                          r.get("backward_dtype")))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    for n in args.modes:
        data = load_dataset("digits", n, seed=0)
        lrs = sorted({defaults.lr_for(n) if s == "rule" else float(s) for s in args.lrs})
        for lr in lrs:
            for chip in args.chips:
                for seed in args.seeds:
                    for dt in (args.backward_dtypes if args.mode == "online" else [None]):
                        if (args.tag, n, chip, seed, lr, args.epochs, dt) in done:
                            continue
                        r = run(n, chip, seed, lr, args.epochs, data, args.mode, dt or "float32")
                        r["tag"] = args.tag
                        print(f"N={n} lr={lr:g} chip={chip} seed={seed} {args.mode} {dt or ''}: test "
                              f"{100 * r['test_accuracy']:.1f} % (chip {100 * r.get('chip_accuracy', np.nan):.1f} %), "
                              f"train {100 * r['train_accuracy']:.1f} %, {r['cpu_s']:.1f} cpu s", flush=True)
                        with args.out.open("a") as f:
                            f.write(json.dumps(r) + "\n")


if __name__ == "__main__":
    main()
