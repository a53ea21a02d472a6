"""Twin forward+backward vs the dense-matmul lower bound, and vs the pre-issue-12 twin (issue 12, item 3).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/paper_scale_twin.py [--modes 8 16 32 64] [--batch 64 256 1024 1024]

For each N, in one process, one thread, interleaved rounds (the median over rounds is reported, thread CPU
time so other processes on the machine count less):
- **twin**: ``MZIMeshTwin`` (labsat/twins/clements.py core) forward + backward w.r.t. the controls,
  float64, batch B of real input amplitudes;
- **dense bound**: a dense complex128 N×N matrix that requires grad, ``|x U^T|²``, summed, backward
  (what any twin has to do at least: apply an N×N transfer matrix to the batch);
- **old twin** (only at N ≤ 32, it is slow): the per-column clone + index_put loop this issue replaced,
  kept below verbatim as the reference.
Writes benchmarks/results/paper_scale_twin.json and prints a markdown table.
"""
from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from labsat.twins.mzi import MZIMeshTwin  # noqa: E402

sys.path.insert(0, str(ROOT / "tests"))
# the twin before issue 12, for the speed comparison: the same reference tests/test_clements.py checks equal to 1e-12
from test_clements import old_twin_forward as old_forward  # noqa: E402


def cpu_ms(fn, reps: int) -> float:
    fn()
    t = time.thread_time()
    for _ in range(reps):
        fn()
    return (time.thread_time() - t) / reps * 1e3


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--modes", type=int, nargs="+", default=[8, 16, 32, 64])
    ap.add_argument("--batch", type=int, nargs="+", default=[64, 256, 1024, 1024])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--old-max-modes", type=int, default=32)
    args = ap.parse_args()
    torch.set_num_threads(1)
    rows = []
    for n, b in zip(args.modes, args.batch):
        g = torch.Generator().manual_seed(n)
        twin = MZIMeshTwin(n, 2 * math.pi)
        x = torch.rand(b, n, generator=g, dtype=torch.float64)
        u = torch.rand(twin.n_controls, generator=g, dtype=torch.float64, requires_grad=True)
        dense = torch.randn(n, n, generator=g, dtype=torch.complex128, requires_grad=True)
        xc = x.to(torch.complex128)
        cases = {
            "twin": lambda: twin(x, u).sum().backward(),
            "dense": lambda: (xc @ dense.T).abs().pow(2).sum().backward(),
        }
        if n <= args.old_max_modes:
            cases["old"] = lambda: old_forward(twin, x, u).sum().backward()
        reps = max(3, int(200 / n))
        times = {k: [] for k in cases}
        for _ in range(args.rounds):
            for k, fn in cases.items():
                times[k].append(cpu_ms(fn, reps if k != "old" else max(2, reps // 8)))
        med = {k: statistics.median(v) for k, v in times.items()}
        row = {"modes": n, "batch": b, "twin_ms": med["twin"], "dense_ms": med["dense"],
               "twin_over_dense": med["twin"] / med["dense"]}
        if "old" in med:
            row.update(old_ms=med["old"], old_over_twin=med["old"] / med["twin"])
        rows.append(row)
        print(row, flush=True)
    out = ROOT / "benchmarks" / "results" / "paper_scale_twin.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(rows, indent=1))
    print("\n| N | batch | twin fwd+bwd (ms) | dense bound (ms) | twin / dense | old twin (ms) | old / twin |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        old = f"{r['old_ms']:.2f} | {r['old_over_twin']:.1f}×" if "old_ms" in r else "– | –"
        print(f"| {r['modes']} | {r['batch']} | {r['twin_ms']:.2f} | {r['dense_ms']:.2f} | "
              f"{r['twin_over_dense']:.2f}× | {old} |")


if __name__ == "__main__":
    main()
