"""Tables of round 3's calibrated-twin and DAT runs (benchmarks/README.md "labsat's own method"), from results.csv.

    .venv/bin/python benchmarks/paper/summarise_r3.py

Per experiment under results/calibrated/: each method on its own chip, on the model it was trained on (the
ideal mesh, or the calibrated twin), on 5 new chips at the same spread, its training CPU time; the calibration
(held-out RMSE / noise floor, CPU s); and paired differences (same chip and seed) on the own chip.
"""
from __future__ import annotations

import csv
import glob
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent / "results" / "calibrated"
ORDER = ("bp", "pat", "sat", "sat_insitu", "dat", "bp_twin", "sat_twin", "sat_insitu_twin")
LABELS = {"bp": "BP (ideal mesh, deployed blind)", "pat": "PAT", "sat": "SAT in silico (ideal mesh)",
          "sat_insitu": "SAT in situ", "dat": "DAT (learned error predictor)", "bp_twin": "**BP on calibrated twin**",
          "sat_twin": "**SAT on calibrated twin**", "sat_insitu_twin": "SAT in situ, calibrated twin backward"}
PAIRS = (("bp_twin", "bp"), ("bp_twin", "sat_insitu"), ("sat_twin", "bp_twin"), ("sat_insitu_twin", "bp_twin"),
         ("sat_insitu_twin", "sat_insitu"), ("dat", "sat_insitu"), ("bp_twin", "dat"), ("sat", "bp"), ("sat_insitu", "bp"))


def ms(values, scale=100.0, digits=1) -> str:
    a = np.asarray([v for v in values if v == v], dtype=float) * scale
    if not len(a):
        return "–"
    return f"{a.mean():.{digits}f} ± {a.std(ddof=1) if len(a) > 1 else 0.0:.{digits}f} ({len(a)})"


def table(rows: list[dict]) -> None:
    own = [r for r in rows if r["deploy"] == "own chip"]
    new = [r for r in rows if r["deploy"] == "new chip"]
    r0 = own[0]
    model = ("labsat's error model, spread × " if r0["error_model"] == "labsat" else "the paper's error model, σ ") \
        + r0["train_sigma"]
    print(f"\n**N = {r0['modes']}, {model}; {r0['data']}; {r0['epochs']} epochs; evaluation chips "
          f"{sorted({int(r['train_chip']) for r in own})} × seeds {sorted({int(r['seed']) for r in own})}**\n")
    print("| method | on its chip | on the ideal mesh | on its calibrated twin | on 5 new chips (blind) | train wall s |")
    print("|---|---|---|---|---|---|")
    for m in ORDER:
        mo = [r for r in own if r["method"] == m]
        if not mo:
            continue
        twin = [float(r["calibrated_twin_accuracy"]) for r in mo if r.get("calibrated_twin_accuracy")]
        print(f"| {LABELS[m]} | {ms(float(r['accuracy']) for r in mo)} | {ms(float(r['twin_accuracy']) for r in mo)} | "
              f"{ms(twin)} | {ms(float(r['accuracy']) for r in new if r['method'] == m)} | "
              f"{ms((float(r['train_s']) for r in mo), 1.0, 0)} |")
    cal = {r["train_chip"]: r for r in own if r.get("cal_ratio")}
    if cal:
        print(f"\nCalibration (once per chip, {next(iter(cal.values()))['cal_readings']} readings): held-out RMSE / "
              f"noise floor {ms((float(r['cal_ratio']) for r in cal.values()), 1.0, 3)}, datasheet twin / floor "
              f"{ms((float(r['cal_nominal_rmse']) / float(r['cal_floor']) for r in cal.values()), 1.0, 1)}, "
              f"CPU s {ms((float(r['cal_cpu_s']) for r in cal.values()), 1.0, 0)} (n = chips)")
    acc = {(r["method"], r["train_chip"], r["seed"]): float(r["accuracy"]) for r in own}
    lines = []
    for a, b in PAIRS:
        d = [acc[(a, c, s)] - acc[(b, c, s)] for (m, c, s) in acc if m == a and (b, c, s) in acc]
        if d:
            wins = sum(x > 0 for x in d)
            lines.append(f"{LABELS[a].strip('*')} − {LABELS[b].strip('*')}: {ms(d)}, better on {wins} of {len(d)}")
    if lines:
        print("\nPaired on its chip (same chip, same seed): " + "; ".join(lines) + ".")
    acc = {(r["method"], r["train_chip"], r["seed"], r["chip"]): float(r["accuracy"]) for r in new}
    lines = []
    for a, b in PAIRS:
        d = [acc[(a, *k)] - acc[(b, *k)] for (m, *k) in acc if m == a and (b, *k) in acc]
        if d:
            lines.append(f"{LABELS[a].strip('*')} − {LABELS[b].strip('*')}: {ms(d)}, better on {sum(x > 0 for x in d)} "
                         f"of {len(d)}")
    if lines:
        print("\nPaired on the new chips (same training chip, seed and new chip): " + "; ".join(lines) + ".")


def main() -> None:
    for f in sorted(glob.glob(str(ROOT / "*" / "results.csv"))):
        rows = list(csv.DictReader(open(f)))
        print(f"\n### {Path(f).parent.name}")
        table(rows)


if __name__ == "__main__":
    main()
