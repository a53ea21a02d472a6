"""What the progressive fit's first band needs from a start, labsat's error model at N = 48 / 64 (issue 12, round 5).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/paper_scale_calibration_start.py --modes 48 \
        --runs selfconfig:centred exact-bar:centred oracle:centred oracle:standard \
               selfconfig:standard exact-theta:standard exact-phi:standard phi-eff:standard \
               selfconfig4:standard selfconfig4:centred
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/paper_scale_calibration_start.py --modes 48 --runs selfconfig5b:standard   # round 5b
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/paper_scale_calibration_start.py --modes 48 \
        --runs selfconfig6e:standard selfconfig6c:standard                                          # round 6
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/paper_scale_calibration_start.py --modes 48 --runs selfconfig6b:standard  # 6b
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/paper_scale_calibration_start.py --modes 48 \
        --runs datasheet:standard selfconfig6b-phi0:standard anchored:standard anchored:standard-long  # round 7
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/paper_scale_calibration_start.py --summary

Tuning chip 1 (``--chip``), the virtual chip driven directly (detector range as in ``paper_scale_calibration.py``).
A run is START:BAND. START:
- ``selfconfig``: ``selfconfig.self_configure`` with round 4's φ stage (three ψ steps);
- ``selfconfig4``: the same with round 5's four-step φ stage (``external_phases(extrapolate=True, sweeps=1)``);
- ``selfconfig5b``: the four-step φ stage with round 5b's 4 correction sweeps over the same readings (the default);
- oracles (diagnoses that read the hidden truth; never a calibration), all from the ``selfconfig`` start:
  ``exact-bar``: every θ and φ phase at the twin's bar controls set to the chip's; ``exact-theta`` /
  ``exact-phi``: the θ / φ offsets at u = 0 set to the chip's; ``phi-eff``: the φ heaters' efficiencies set to
  the chip's before the φ stage (kept consistent at the bar state), then the φ stage run again;
  ``oracle``: the datasheet twin with the chip's offsets plus N(0, 0.03) on θ and N(0, 0.1) on φ (round 4's
  oracle start); ``oracle-loops`` (round 6): the same θ, and the loop phases drawn with the same spread but each
  on its own (N(0, 0.1·√2) per loop phase, as a φ stage reads them), the φ offsets rebuilt from them;
  ``oracle-loops-S``: the same with spread S (rad) per loop phase.
Round 6: ``selfconfig6c`` the θ stage's coupler errors in the twin before the φ stage (``couplers=True``);
``selfconfig6l`` then the φ heaters' elements fitted over the stored φ readings (``elements=True, kappa_links=True``);
``selfconfig6e`` the same fit, the links' mean crosstalk in every link, the φ offsets read again (``elements=True``);
``selfconfig6e+bottom-exact`` (oracle) that start with the loop phases of the 4 bottom rows' MZIs made the chip's;
``selfconfig6e+clear-exact`` (oracle) with those of every other MZI made the chip's; ``selfconfig6e+tail-exact``
(oracle) with the loop phases more than 0.3 rad off made the chip's; ``selfconfig6e-bottom-oracle`` (oracle) the
bottom row's θ bar points and the couplers near the bottom made the chip's before the φ stage, then as ``selfconfig6e``.
Round 6b: ``selfconfig6b`` as ``selfconfig6e`` with each crosstalk link read directly (``links=True``: 36 N² readings more).
Round 7: ``anchored`` the production start (``selfconfig6b``, then ``selfconfig.anchor_phases``: the φ offsets the
least-squares compromise of the loop phases read and the datasheet's prior), ``selfconfig6b-phi0`` (diagnosis) the
φ offsets left at 0 after ``selfconfig6b``, ``datasheet`` no start; BAND ``standard-long``: the standard band fitted
with the self-configured plan's first fit (Adam 500 steps at lr 0.01, L-BFGS 300; ``ProgressivePlan.after_start``).
Round 5b: START:BAND:K refits K times: the φ stage's stored readings read again with the fitted twin
(``selfconfig.correct_phases``, 4 sweeps, no reading more), then the band fitted again (same data).
BAND: the plan's first band, 32 settings × N²/8 random inputs, fitted as ``calibrate_progressive`` fits it
(every twin parameter, Adam 150 steps at lr 0.02, then L-BFGS 150, the mesh in float32): ``standard`` draws
u uniform in [0, 0.12] (``measure``'s default bands); ``centred`` closes the band in on the start twin's bar
state (``measure(centre=bar_controls(twin))``, what ``ProgressivePlan(self_configure=True)`` does).
Reported: train RMSE / noise floor before and after, and the start's errors against the truth: the θ offset
and the loop phase (φ minus the previous column's φ on row i+1) at u = 0, median / p90 (rad).
One JSON line per run to benchmarks/results/paper_scale_calibration_start/labsat_<N>_chip<c>.jsonl.
Round 9 changed ``self_configure``'s θ stage (the bottom row read, ``nearer_branch``; on by default): the rows of
rounds 4–7 ran without them (``prior_window=None, bottom_row=False``), and rerunning them now gives round 9's θ.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from labsat.calibration.fit import fit_twin  # noqa: E402
from labsat.calibration.measure import measure  # noqa: E402
from labsat.calibration.selfconfig import (anchor_phases, bar_controls, correct_phases, external_phases,  # noqa: E402
                                          loop_phases, self_configure)
from labsat.calibration.simchip import DirectHardware  # noqa: E402
from labsat.twins.mzi import MZIMeshTwin  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "paper_scale_calibration_start"
# round 6's starts (benchmarks/paper_scale_calibration_elements.py has the same kinds)
ROUND7 = ("anchored", "selfconfig6b-phi0")
ROUND6 = {"selfconfig6c": dict(couplers=True), "selfconfig6l": dict(elements=True, kappa_links=True),
          "selfconfig6e": dict(elements=True), "selfconfig6b": dict(links=True)}


def u0_errors(hw, twin) -> dict:
    """The twin's offsets (phases at u = 0) against the chip's: θ and loop phase, median / p90 (truth: a report)."""
    d = np.angle(np.exp(1j * (twin.offset.detach().numpy() - hw.truth()["offset"])))
    theta = np.abs(d[0::2])
    loop = np.abs(np.angle(np.exp(1j * loop_phases(twin.layout, d[1::2]))))
    phi = np.abs(d[1::2])  # round 6: the φ offsets themselves (the loop phases summed along each row)
    return {"u0_phi_median": float(np.median(phi)), "u0_phi_p90": float(np.quantile(phi, 0.9)),
            "u0_theta_median": float(np.median(theta)), "u0_theta_p90": float(np.quantile(theta, 0.9)),
            "u0_loop_median": float(np.median(loop)), "u0_loop_p90": float(np.quantile(loop, 0.9))}


def keep_bar_phases(twin, change) -> None:
    """Apply ``change(twin)`` (efficiencies, crosstalk) with the offsets moved so that the phases at the twin's
    bar controls stay as they were."""
    ub = torch.as_tensor(bar_controls(twin))
    with torch.no_grad():
        before = twin.heater_phases(ub)
        change(twin)
        twin.offset.zero_()
        twin.offset[:] = before - twin.heater_phases(ub)


def exact_loop_phases(twin, offset: np.ndarray, which) -> None:
    """Oracle (round 6): the loop phases at u = 0 of the MZIs ``which(tops)`` picks made the chip's (``offset``), the
    others' kept: the φ offsets rebuilt column by column from the target loop phases (φ = loop + the previous
    column's φ on row i+1, where there is one)."""
    layout = twin.layout
    with torch.no_grad():
        phi = twin.offset[1::2].numpy().copy()
        target = loop_phases(layout, phi)
        pick = np.concatenate([which(tops) for tops in layout.columns])
        target[pick] = loop_phases(layout, offset[1::2])[pick]
        for c in range(layout.modes):  # loop_phases subtracts the previous column's φ: add it back in order
            sl = layout.column_slices[c]
            phi[sl] = target[sl] + (phi[sl] - loop_phases(layout, phi)[sl])
        twin.offset[1::2] = torch.as_tensor(phi)


def start(hw, twin, name: str) -> dict:
    t0 = time.process_time()
    hidden = hw.truth()
    if name == "datasheet":
        return {"start_readings": 0}
    if name in ROUND7:  # round 7: the production start (anchored φ) and the θ-only diagnosis
        sc = self_configure(hw, twin, links=True)
        if name == "anchored":
            anchor_phases(twin)
        else:  # selfconfig6b-phi0: the φ offsets left at the datasheet's 0
            with torch.no_grad():
                twin.offset[1::2] = 0.0
        return {"start_readings": sc.readings, "start_cpu_s": time.process_time() - t0}
    if name == "oracle" or name.startswith("oracle-loops"):
        rng = np.random.default_rng(99)
        off = hidden["offset"]
        with torch.no_grad():
            twin.offset[0::2] = torch.as_tensor(off[0::2] + rng.normal(0, 0.03, len(off) // 2))
            twin.offset[1::2] = torch.as_tensor(off[1::2] + rng.normal(0, 0.1, len(off) // 2))
            if name.startswith("oracle-loops"):  # round 6: loop phases drawn per loop (as a φ stage reads them)
                spread = float(name.split("-")[2]) if name.count("-") == 2 else 0.1 * np.sqrt(2)
                loops = loop_phases(twin.layout, off[1::2]) + rng.normal(0, spread, len(off) // 2)
                phi = twin.offset[1::2].numpy().copy()
                for c in range(twin.modes):
                    sl = twin.layout.column_slices[c]
                    phi[sl] = loops[sl] + (phi[sl] - loop_phases(twin.layout, phi)[sl])
                twin.offset[1::2] = torch.as_tensor(phi)
        return {"start_readings": 0}
    if name == "selfconfig6e-bottom-oracle":  # round 6 oracle: the bottom row's θ and the near couplers made the chip's
        sys.path.insert(0, str(ROOT / "benchmarks"))  # before the φ stage (paper_scale_calibration_elements.diagnose)
        from paper_scale_calibration_elements import diagnose
        sc = diagnose(hw, twin, "elements+bottom-exact")
        hw.phase_readings = sc.phase_readings
        return {"start_readings": sc.readings, "start_cpu_s": time.process_time() - t0}
    if name.split("+")[0] in ROUND6:  # round 6: per-element parameters before / within the φ stage (no reading more)
        sc = self_configure(hw, twin, **ROUND6[name.split("+")[0]])
        hw.phase_readings = sc.phase_readings
        if name.endswith("+bottom-exact"):  # oracle: the loop phases of the 4 bottom rows' MZIs made the chip's
            exact_loop_phases(twin, hidden["offset"], lambda tops: tops + 5 > twin.modes)
        if name.endswith("+clear-exact"):  # oracle: those of every other MZI made the chip's
            exact_loop_phases(twin, hidden["offset"], lambda tops: tops + 5 <= twin.modes)
        if name.endswith("+tail-exact"):  # oracle: the loop phases more than 0.3 rad off made the chip's
            err = np.abs(np.angle(np.exp(1j * loop_phases(twin.layout, twin.offset.numpy()[1::2] - hidden["offset"][1::2]))))
            big = iter(np.split(err > 0.3, np.cumsum([len(t) for t in twin.layout.columns])[:-1]))
            exact_loop_phases(twin, hidden["offset"], lambda tops: next(big))
        return {"start_readings": sc.readings, "start_cpu_s": time.process_time() - t0}
    sc = self_configure(hw, twin, phases=False)
    readings = sc.readings
    if name == "phi-eff":
        keep_bar_phases(twin, lambda t: t.log_eff[1::2].copy_(torch.as_tensor(np.log(hidden["eff"][1::2]))))
    phi = external_phases(hw, twin, extrapolate=name in ("selfconfig4", "selfconfig5b"),
                          sweeps=4 if name == "selfconfig5b" else 1)
    readings += phi.readings
    hw.phase_readings = phi.phase_readings
    with torch.no_grad():
        if name == "exact-bar":
            u = bar_controls(twin)
            hw.chip.set_heaters(hw.v_max * np.sqrt(u))
            twin.offset += torch.as_tensor(np.angle(np.exp(1j * (hw.chip.heater_phases()
                                                                 - twin.heater_phases(torch.as_tensor(u)).numpy()))))
        elif name == "exact-theta":
            twin.offset[0::2] = torch.as_tensor(hidden["offset"][0::2])
        elif name == "exact-phi":
            twin.offset[1::2] = torch.as_tensor(hidden["offset"][1::2])
    return {"start_readings": readings, "start_cpu_s": time.process_time() - t0}


def run(n: int, chip: int, spec: str) -> dict:
    name, band = spec.split(":")[:2]
    refits = int(spec.split(":")[2]) if spec.count(":") == 2 else 0   # START:BAND:REFITS (round 5b)
    hw = DirectHardware(seed=chip, modes=n, detector_range_w=1e-4 if n >= 64 else 5e-4)
    twin = MZIMeshTwin(n, hw.phase_per_u)
    row = {"modes": n, "chip": chip, "spec": spec, "start": name if not refits else f"{name}+{refits} refits", "band": band,
           **start(hw, twin, name), **u0_errors(hw, twin)}
    data = measure(hw, 32, n * n // 8, seed=0, schedule=(0.12,),
                   centre=bar_controls(twin) if band == "centred" else None)
    floor = hw.noise_floor(data)
    t0 = time.process_time()
    steps = dict(adam_steps=500, lbfgs_steps=300, lr=0.01) if band == "standard-long" else \
        dict(adam_steps=150, lbfgs_steps=150, lr=0.02)  # round 7: the self-configured plan's first fit (after_start)
    history = fit_twin(twin, data, dtype=torch.float32, **steps)
    row.update(ratio_start=math.sqrt(history[0]) / floor, ratio_after=math.sqrt(history[-1]) / floor,
               fit_cpu_s=time.process_time() - t0)
    for r in range(refits):  # round 5b: the φ stage's readings read again with the fitted twin, the band fitted again
        row.setdefault("refits", []).append({f"fitted_{k}": v for k, v in u0_errors(hw, twin).items()})
        correct_phases(twin, hw.phase_readings, sweeps=4)
        row["refits"][-1].update(u0_errors(hw, twin))
        history = fit_twin(twin, data, adam_steps=150, lbfgs_steps=150, lr=0.02, dtype=torch.float32)
        row["refits"][-1].update(ratio_after=math.sqrt(history[-1]) / floor, cpu_s=time.process_time() - t0)
        print(json.dumps(row["refits"][-1]), flush=True)
    return row


def summary() -> str:
    out = ["| N | start | band | θ at u = 0: median / p90 (rad) | loop phase at u = 0: median / p90 (rad) | "
           "φ at u = 0: median / p90 (rad) | first band: train RMSE / floor, start → after |", "|---:|---|---|---:|---:|---:|---:|"]
    for path in sorted(RESULTS.glob("*.jsonl")):
        for r in map(json.loads, path.read_text().splitlines()):
            phi = f"{r['u0_phi_median']:.3f} / {r['u0_phi_p90']:.3f}" if "u0_phi_median" in r else "–"
            out.append(f"| {r['modes']} | {r['start']} | {r['band']} | {r['u0_theta_median']:.3f} / {r['u0_theta_p90']:.3f} | "
                       f"{r['u0_loop_median']:.3f} / {r['u0_loop_p90']:.3f} | {phi} | {r['ratio_start']:.2f} → **{r['ratio_after']:.2f}** |")
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--modes", type=int, nargs="+", default=[48])
    ap.add_argument("--chip", type=int, default=1, help="1: the tuning chip")
    ap.add_argument("--runs", nargs="+", default=["selfconfig:centred", "oracle:standard"])
    ap.add_argument("--summary", action="store_true")
    args = ap.parse_args()
    if args.summary:
        print(summary())
        return
    torch.set_num_threads(1)
    RESULTS.mkdir(parents=True, exist_ok=True)
    for n in args.modes:
        path = RESULTS / f"labsat_{n}_chip{args.chip}.jsonl"
        done = {r.get("spec", f"{r['start']}:{r['band']}") for r in map(json.loads, path.read_text().splitlines())} \
            if path.exists() else set()
        for spec in args.runs:
            if spec in done:
                continue
            row = run(n, args.chip, spec)
            print(json.dumps(row), flush=True)
            with path.open("a") as f:
                f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
