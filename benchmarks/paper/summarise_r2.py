"""Tables of round 2's MZI ablation and labsat-error-model runs (benchmarks/README.md), from their results.csv.

    .venv/bin/python benchmarks/paper/summarise_r2.py

Ablation: BP vs SAT in situ on their own chip per factor (and BP on the ideal mesh), and SAT in situ − BP
paired by (chip, seed).
Our error model: own chip and the 5 new chips per spread factor, and the largest spread at which each
method keeps >= 90 % on new chips.
"""
from __future__ import annotations

import csv
import glob
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent / "results"


def ms(values) -> str:
    a = np.asarray(values, dtype=float) * 100
    return f"{a.mean():.1f} ± {a.std(ddof=1) if len(a) > 1 else 0.0:.1f} ({len(a)})" if len(a) else "–"


def rows_of(pattern: str) -> dict[str, list[dict]]:
    return {Path(f).parent.name: list(csv.DictReader(open(f))) for f in sorted(glob.glob(str(ROOT / pattern)))}


def ablation() -> None:
    print("| factor (one at a time) | BP on its chip | BP on the ideal mesh | SAT in situ on its chip | SAT in situ − BP, paired |")
    print("|---|---|---|---|---|")
    found = rows_of("paper-mzi+epochs=10+methods=*/results.csv")
    for name, rows in sorted(found.items(), key=lambda kv: (kv[0].count("+") > 2, kv[0])):  # the baseline first
        factor = name.split("+", 3)[3] if name.count("+") >= 3 else "none (Haar θ, LeNet, 10 epochs)"
        own = {(r["method"], r["train_chip"], r["seed"]): float(r["accuracy"]) for r in rows if r["deploy"] == "own chip"}
        pairs = [own[("sat_insitu", c, s)] - own[("bp", c, s)] for (m, c, s) in own if m == "bp" and ("sat_insitu", c, s) in own]
        ideal = [float(r["twin_accuracy"]) for r in rows if r["method"] == "bp" and r["deploy"] == "own chip"]
        print(f"| {factor} | {ms([v for (m, _, _), v in own.items() if m == 'bp'])} | {ms(ideal)} | "
              f"{ms([v for (m, _, _), v in own.items() if m == 'sat_insitu'])} | {ms(pairs)} |")


def labsat_model() -> None:
    data = {}
    for rows in rows_of("labsat-model/*/results.csv").values():
        for r in rows:
            data.setdefault(float(r["train_sigma"]), []).append(r)
    methods = ("bp", "pat", "sat_insitu")
    labels = {"bp": "BP", "pat": "PAT", "sat_insitu": "SAT in situ"}
    print("| spread × | " + " | ".join(f"{labels[m]} own chip | {labels[m]} new chips" for m in methods) + " |")
    print("|---" * (1 + 2 * len(methods)) + "|")
    keeps = {m: [] for m in methods}
    for sp in sorted(data):
        cells = []
        for m in methods:
            own = [float(r["accuracy"]) for r in data[sp] if r["method"] == m and r["deploy"] == "own chip"]
            new = [float(r["accuracy"]) for r in data[sp] if r["method"] == m and r["deploy"] == "new chip"]
            cells += [ms(own), ms(new)]
            if new and np.mean(new) >= 0.9:
                keeps[m].append(sp)
        print(f"| {sp:g} | " + " | ".join(cells) + " |")
    print()
    for m in methods:
        print(f"{m}: mean >= 90 % on new chips up to spread × {max(keeps[m]) if keeps[m] else 'none of the grid'}")


if __name__ == "__main__":
    ablation()
    print()
    labsat_model()
