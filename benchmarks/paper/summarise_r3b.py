"""Table of round 3b's ablation re-run (benchmarks/README.md "Why BP does not collapse"), n = 15 target:
evaluation chips 201-205 x seeds 0-2, BP vs SAT in situ on their own chip per θ initialisation, paired by
(chip, seed); the same for θ = 0, the linear front end and uniform θ
with 40 epochs where they ran. Reads every finished task from the sweep store (so a cut-off run is summarised as far as it got),
and round 2's n = 6 csv beside it.

    .venv/bin/python benchmarks/paper/summarise_r3b.py
"""
from __future__ import annotations

import csv
import pickle
import sqlite3
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent / "results"
STORE = ROOT / "ablation-n15" / "paper-sweeps.sqlite"


def ms(values) -> str:
    a = np.asarray(values, dtype=float) * 100
    return f"{a.mean():.1f} ± {a.std(ddof=1) if len(a) > 1 else 0.0:.1f} ({len(a)})" if len(a) else "–"


def stored() -> list[dict]:
    """Own-chip rows of every finished task in the store (task rows: list of dicts per task)."""
    con = sqlite3.connect(f"file:{STORE}?mode=ro", uri=True)
    rows = []
    for blob, in con.execute("SELECT result FROM sweep_results WHERE status='done'"):
        rows.extend(r for r in pickle.loads(blob) if r["deploy"] == "own chip")
    return rows


def table(rows: list[dict], label: str, chips=None, seeds=None) -> str:
    own = {(r["method"], int(r["train_chip"]), int(r["seed"])): float(r["accuracy"]) for r in rows
           if (chips is None or int(r["train_chip"]) in chips) and (seeds is None or int(r["seed"]) in seeds)}
    pairs = {(c, s): own[("sat_insitu", c, s)] - own[("bp", c, s)] for (m, c, s) in own
             if m == "bp" and ("sat_insitu", c, s) in own}
    ideal = [float(r["twin_accuracy"]) for r in rows if r["method"] == "bp"
             and (chips is None or int(r["train_chip"]) in chips) and (seeds is None or int(r["seed"]) in seeds)]
    better = sum(d > 0 for d in pairs.values())
    return (f"| {label} | {ms([v for (m, _, _), v in own.items() if m == 'bp'])} | {ms(ideal)} | "
            f"{ms([v for (m, _, _), v in own.items() if m == 'sat_insitu'])} | {ms(list(pairs.values()))} | "
            f"{better} of {len(pairs)} |")


def main() -> None:
    rows = stored()
    print("| row (σ 0.15, 10 epochs unless named; chips × seeds) | BP on its chip | BP on the ideal mesh | SAT in situ on its chip "
          "| SAT in situ − BP, paired | SAT in situ better |")
    print("|---|---|---|---|---|---|")
    for init, front, epochs in [("haar", "lenet", 10), ("uniform", "lenet", 10), ("zero", "lenet", 10),
                                ("haar", "linear", 10), ("uniform", "lenet", 40)]:
        sub = [r for r in rows if r["init"] == init and r["front"] == front and int(r["epochs"]) == epochs]
        label = f"θ {init}" + (f", front {front}" if front != "lenet" else "") + (f", {epochs} epochs" if epochs != 10 else "")
        print(table(sub, f"{label}, 201-205 × 0-2 (round 3b)"))
        print(table(sub, f"{label}, round 3b's runs on round 2's 201-203 × 0-1", chips={201, 202, 203}, seeds={0, 1}))
    old = ROOT / "paper-mzi+epochs=10+methods=bp,sat_insitu+init=uniform" / "results.csv"
    with open(old) as f:
        print(table(list(csv.DictReader(f)), "θ uniform, 201-203 × 0-1 (round 2, stored csv)"))
    acc = {(r["init"], r["front"], r["method"], int(r["train_chip"]), int(r["seed"])): float(r["accuracy"])
           for r in rows if int(r["epochs"]) == 10}
    for m in ("bp", "sat_insitu"):
        d = [v - acc[("haar", "lenet", m, c, s)] for (i, f, mm, c, s), v in acc.items()
             if (i, f, mm) == ("uniform", "lenet", m) and ("haar", "lenet", m, c, s) in acc]
        print(f"\nuniform θ − Haar θ, {m}, paired by (chip, seed): {ms(d)}")
    print()
    print("every run (own chip): epochs init front method chip seed accuracy final_loss train_s")
    for r in sorted(rows, key=lambda r: (int(r["epochs"]), r["init"], r["front"], int(r["seed"]), int(r["train_chip"]),
                                         r["method"])):
        print(r["epochs"], r["init"], r["front"], r["method"], r["train_chip"], r["seed"], f"{100 * r['accuracy']:.1f}",
              f"{r['final_loss']:.4f}", f"{r['train_s']:.1f}")


if __name__ == "__main__":
    main()
