"""Per-element parameters before the φ stage's loop phases (issue 12 item 4, round 6; labsat's error model).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/paper_scale_calibration_elements.py --modes 24 --chips 1 2 3
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/paper_scale_calibration_elements.py --modes 48 --chips 1
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/paper_scale_calibration_elements.py --modes 24 --chips 1 \
        --kinds elements-noiseless elements-shrink-0.3 elements-shrink-0.5 elements+bottom-exact      # diagnoses
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/paper_scale_calibration_elements.py --modes 24 --chips 1 2 3 \
        --kinds elements links links-oracle links+eff                                                # round 6b
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/paper_scale_calibration_elements.py --modes 24 --chips 1 \
        --kinds links-noiseless links+eff-oracle
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/paper_scale_calibration_elements.py --summary

The virtual chip driven directly (noisy; detector range as in ``paper_scale_calibration.py``), the datasheet twin,
the self-configuring start (``selfconfig.self_configure``, 2 θ passes, four-step φ stage, 4 sweeps) in four kinds:
- ``round5b``: as on main (the twin keeps the datasheet's couplers, efficiencies and no crosstalk);
- ``couplers``: each MZI's two coupler errors read from the θ stage's fringes put in the twin before the φ stage
  (``couplers=True``);
- ``elements-links``: then the φ heaters' offsets, efficiencies and crosstalk links fitted over the φ stage's
  stored readings (``elements=True, kappa_links=True``: ``identify_elements``, block Gauss–Newton, 4 sweeps);
- ``elements``: the same fit, then every link given the fitted links' mean and the φ offsets read again from
  zero with that twin (``elements=True``: ``correct_phases``, 4 sweeps);
- ``links`` (round 6b): the same, with each crosstalk link read directly before the φ offsets are read again
  (``links=True``: ``read_links`` / ``fit_links``, 36 N² readings more).
Except ``links``, no kind takes a reading more than ``round5b``. Scored against the hidden truth (a diagnosis, never a calibration):
loop phases at u = 0 (median / p90 / max, rad), the φ offsets at u = 0 themselves (the loop phases summed along
each row: what the bands' multi-port inputs see; round 6) and the identified parameters' mean absolute errors (the φ heaters'
efficiencies, the crosstalk links θ_m–φ_m and φ_m–θ_m+1, the couplers), the datasheet's beside them.
One JSON line per (N, chip, kind) to benchmarks/results/paper_scale_calibration_elements/labsat.jsonl.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from labsat.calibration.selfconfig import (_clear_of_bottom, _fitted_links, bar_controls, correct_phases,  # noqa: E402
                                          external_phases, identify_elements, loop_phases, read_link_mask,
                                          self_configure)
from labsat.calibration.simchip import DirectHardware  # noqa: E402
from labsat.twins.mzi import MZIMeshTwin  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "paper_scale_calibration_elements"
KINDS = {"round5b": {}, "couplers": dict(couplers=True), "elements-links": dict(elements=True, kappa_links=True),
         "elements": dict(elements=True), "links": dict(links=True)}
# diagnoses (``--kinds``): the elements start on the noiseless chip; each link's own crosstalk shrunk toward the
# links' mean by 0.3 / 0.5 (then the φ offsets read again); oracle: the bottom row's θ bar points and the couplers
# of the MZIs near the bottom made the chip's before the φ stage
DIAGNOSES = ("elements-noiseless", "elements-shrink-0.3", "elements-shrink-0.5", "elements+bottom-exact",
             "links-noiseless", "links-oracle", "links+eff", "links+eff-oracle")
# round 6b diagnoses: the links start on the noiseless chip; ``links-oracle``: the links it reads given the chip's
# values instead (the others at the fitted mean), then the φ offsets read again; ``links+eff``: after the links,
# the φ offsets and efficiencies fitted again over the stored φ readings (identify_elements), then read again;
# ``links+eff-oracle``: after the links, the φ heaters' efficiencies made the chip's, then the φ offsets read again


class Noiseless:
    def __init__(self, hw):
        self.hw = hw

    def forward(self, x, u):
        return self.hw.forward(x, u, noisy=False)


def scores(hw, twin) -> dict:
    """Loop phases at u = 0 and the twin's per-element parameters against the chip's (truth: a report)."""
    t = hw.truth()
    d = np.angle(np.exp(1j * (twin.offset.numpy() - t["offset"])))
    loop = np.abs(np.angle(np.exp(1j * loop_phases(twin.layout, d[1::2]))))
    phi = np.abs(d[1::2])  # the φ offsets themselves: the loop phases summed along the rows (what the bands see)
    eff, k = np.exp(twin.log_eff.numpy()), twin.crosstalk.numpy()
    c = twin.coupler_error.numpy().reshape(-1, 2)
    clear = read_link_mask(twin.layout) & _fitted_links(twin.layout)   # round 6b: the links read, clear of the bottom
    return {"links_corr": float(np.corrcoef(k[clear], t["crosstalk"][clear])[0, 1]) if np.ptp(k[clear]) > 0 else 0.0,
            "links_err": float(np.mean(np.abs(k[clear] - t["crosstalk"][clear]))),
            "loop_median": float(np.median(loop)), "loop_p90": float(np.quantile(loop, 0.9)), "loop_max": float(loop.max()),
            "phi_median": float(np.median(phi)), "phi_p90": float(np.quantile(phi, 0.9)),
            "eff_phi_err": float(np.mean(np.abs(eff[1::2] - t["eff"][1::2]))),
            "kappa_theta_err": float(np.mean(np.abs(k[0::2] - t["crosstalk"][0::2]))),
            "kappa_next_err": float(np.mean(np.abs(k[1::2] - t["crosstalk"][1::2]))),
            "coupler_err": [float(e) for e in np.mean(np.abs(c - t["coupler_error"].reshape(-1, 2)), 0)]}


def diagnose(hw, twin, kind: str):
    """The :data:`DIAGNOSES` (read the truth where they say so; never a calibration)."""
    if kind == "elements-noiseless":
        return self_configure(Noiseless(hw), twin, elements=True)
    if kind == "links-noiseless":
        return self_configure(Noiseless(hw), twin, links=True)
    if kind in ("links-oracle", "links+eff", "links+eff-oracle"):
        r = self_configure(hw, twin, links=True)
        with torch.no_grad():
            if kind == "links-oracle":
                read = read_link_mask(twin.layout)
                twin.crosstalk[:] = torch.as_tensor(np.where(read, hw.truth()["crosstalk"], twin.crosstalk.numpy()))
            elif kind == "links+eff-oracle":
                twin.log_eff[1::2] = torch.as_tensor(np.log(hw.truth()["eff"][1::2]))
            else:
                identify_elements(twin, r.phase_readings, elements=("offset", "log_eff"))
            twin.offset[1::2] = 0.0
        correct_phases(twin, r.phase_readings)
        return r
    if kind.startswith("elements-shrink"):
        r = self_configure(hw, twin, elements=True, kappa_links=True)
        k, fitted = twin.crosstalk.numpy().copy(), _fitted_links(twin.layout)
        mean, a = k[fitted].mean(), float(kind.split("-")[-1])
        with torch.no_grad():
            twin.crosstalk[:] = torch.as_tensor(np.where(fitted, mean + a * (k - mean), mean))
            twin.offset[1::2] = 0.0
        correct_phases(twin, r.phase_readings)
        return r
    t = hw.truth()  # elements+bottom-exact
    r = self_configure(hw, twin, couplers=True, phases=False)
    near = ~_clear_of_bottom(np.concatenate(twin.layout.columns), n := twin.modes)
    bottom = np.nonzero(np.concatenate(twin.layout.columns) == n - 2)[0]
    with torch.no_grad():
        twin.coupler_error[near] = torch.as_tensor(t["coupler_error"].reshape(-1, 2)[near])
        for _ in range(3):  # θ at the twin's bar controls made the chip's (the twin's efficiency is the datasheet's)
            u = bar_controls(twin)[2 * bottom]
            twin.offset[2 * bottom] = torch.as_tensor(t["offset"][2 * bottom] + hw.phase_per_u * (t["eff"][2 * bottom] - 1) * u)
    external_phases(hw, twin, result=r)
    r.elements = identify_elements(twin, r.phase_readings)
    fitted = _fitted_links(twin.layout)
    with torch.no_grad():
        twin.crosstalk[:] = float(twin.crosstalk.numpy()[fitted].mean())
        twin.offset[1::2] = 0.0
    correct_phases(twin, r.phase_readings)
    return r


def run(n: int, chip: int, kind: str) -> dict:
    hw = DirectHardware(seed=chip, modes=n, detector_range_w=1e-4 if n >= 64 else 5e-4)
    twin = MZIMeshTwin(n, hw.phase_per_u)
    t0 = time.process_time()
    r = self_configure(hw, twin, **KINDS[kind]) if kind in KINDS else diagnose(hw, twin, kind)
    return {"modes": n, "chip": chip, "kind": kind, "readings": r.readings, "readings_per_n2": r.readings / n**2,
            "cpu_s": time.process_time() - t0, **scores(hw, twin)}


def summary() -> str:
    out = ["| N | chip | start | readings | loop phase at u = 0: median / p90 / max (rad) | φ at u = 0: median / p90 | "
           "φ efficiency err | κ θ–φ / φ–θ err | links read: corr / err | couplers err (1st / 2nd) | CPU s |",
           "|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in map(json.loads, (RESULTS / "labsat.jsonl").read_text().splitlines()):
        phi = f"{r['phi_median']:.3f} / {r['phi_p90']:.3f}" if "phi_median" in r else "–"
        links = f"{r['links_corr']:.2f} / {r['links_err']:.4f}" if "links_corr" in r else "–"
        out.append(f"| {r['modes']} | {r['chip']} | {r['kind']} | {r['readings_per_n2']:.0f} N² | {r['loop_median']:.3f} / "
                   f"**{r['loop_p90']:.3f}** / {r['loop_max']:.2f} | {phi} | {r['eff_phi_err']:.4f} | {r['kappa_theta_err']:.4f} / "
                   f"{r['kappa_next_err']:.4f} | {links} | {r['coupler_err'][0]:.4f} / {r['coupler_err'][1]:.4f} | {r['cpu_s']:.0f} |")
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--modes", type=int, nargs="+", default=[24])
    ap.add_argument("--chips", type=int, nargs="+", default=[1])
    ap.add_argument("--kinds", nargs="+", default=list(KINDS), choices=list(KINDS) + list(DIAGNOSES))
    ap.add_argument("--summary", action="store_true")
    args = ap.parse_args()
    if args.summary:
        print(summary())
        return
    torch.set_num_threads(1)
    RESULTS.mkdir(parents=True, exist_ok=True)
    for n in args.modes:
        for chip in args.chips:
            for kind in args.kinds:
                row = run(n, chip, kind)
                print(json.dumps(row), flush=True)
                with (RESULTS / "labsat.jsonl").open("a") as f:
                    f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
