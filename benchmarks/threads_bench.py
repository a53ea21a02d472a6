"""CPU cost of torch's intra-op threads on the CLI's tensor sizes: `labsat train` with --threads 1 vs 2.

Runs whole `labsat train --mode offline --optimizer sam --nominal` processes, alternating the thread
count (A/B pairs), and reports each process's CPU time (user + system, from the kernel's accounting of
the finished child) and wall time. CPU time is what a shared machine pays; it is far less sensitive to
the machine's load than wall time.

    .venv/bin/python benchmarks/threads_bench.py --pairs 3 --epochs 3
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def one_run(station: Path, threads: int, epochs: int, out: Path) -> tuple[float, float]:
    before = os.times()
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", "from labsat.cli import app; app()", "train", "-s", str(station),
                    "--mode", "offline", "--optimizer", "sam", "--nominal", "--epochs", str(epochs),
                    "--threads", str(threads), "--out", str(out)],
                   check=True, capture_output=True, env={**os.environ, "OMP_NUM_THREADS": str(threads)})
    wall = time.perf_counter() - t0
    after = os.times()
    cpu = (after.children_user - before.children_user) + (after.children_system - before.children_system)
    return cpu, wall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        station = Path(tmp) / "instruments.yaml"
        text = (ROOT / "instruments.yaml").read_text()
        station.write_text(text)
        results = {1: [], 2: []}
        for k in range(args.pairs):
            for threads in ((1, 2) if k % 2 == 0 else (2, 1)):
                results[threads].append(one_run(station, threads, args.epochs, Path(tmp) / f"m{threads}.pt"))
        print(f"load average at the end: {os.getloadavg()[0]:.1f} (cpus: {os.cpu_count()})")
        print("| threads | runs | CPU s (mean ± std) | wall s (mean ± std) |")
        print("|---:|---:|---:|---:|")
        for threads, rows in results.items():
            cpu = [r[0] for r in rows]
            wall = [r[1] for r in rows]
            print(f"| {threads} | {len(rows)} | {statistics.mean(cpu):.1f} ± {statistics.pstdev(cpu):.1f} | "
                  f"{statistics.mean(wall):.1f} ± {statistics.pstdev(wall):.1f} |")
        ratio = statistics.mean(r[0] for r in results[1]) / statistics.mean(r[0] for r in results[2])
        print(f"CPU ratio 1 thread / 2 threads: {ratio:.2f}")
        for threads, rows in results.items():
            print(f"threads {threads}: every run (CPU s, wall s): {[(round(c, 1), round(w, 1)) for c, w in rows]}")


if __name__ == "__main__":
    main()
