"""Where the φ stage's loop-phase error comes from (issue 12, round 5b; labsat's error model, tuning chip 1…).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/paper_scale_calibration_phibias.py bias --modes 12 24 --chips 1 2 3
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/paper_scale_calibration_phibias.py bias --modes 48 --chips 1
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/paper_scale_calibration_phibias.py given --modes 24 --chips 1
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/paper_scale_calibration_phibias.py sources --modes 24 --chips 1 2
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/paper_scale_calibration_phibias.py given6 --modes 24 --chips 1   # round 6

- ``bias``: the method's own bias. Noiseless chip; a twin with every one of the chip's parameters but the φ
  offsets (set to 0); the φ stage (``selfconfig.external_phases``, four ψ steps) with 1, 2, 4, 8 correction
  sweeps over the same readings.
- ``given``: the practical start (datasheet twin, θ stage), then the twin given some of the chip's true
  parameters (bar-state phases kept), then the φ stage with 1 and 4 sweeps (noisy chip).
- ``given6`` (round 6): as ``given`` (4 sweeps), the θ and φ heaters' efficiencies apart, the crosstalk's mean.
- ``sources``: the practical start (θ stage + φ stage, 4 sweeps) on chips with one error source switched off.
Scored against the hidden truth (a diagnosis): loop phases (φ minus the previous column's φ on row i+1) at
u = 0, median / p90 / max (rad). One JSON line per case to benchmarks/results/paper_scale_calibration_phibias/.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from paper_scale_calibration_start import keep_bar_phases  # noqa: E402

from labsat.calibration.selfconfig import external_phases, loop_phases, self_configure  # noqa: E402
from labsat.calibration.simchip import DirectHardware  # noqa: E402
from labsat.twins.mzi import MZIMeshTwin  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "paper_scale_calibration_phibias"
SOURCES = {"all": {}, "no coupler error": dict(coupler_sigma=0.0),
           "no crosstalk": dict(crosstalk_mean=0.0, crosstalk_sigma=0.0), "no efficiency spread": dict(efficiency_sigma=0.0),
           "no port loss": dict(port_loss_sigma=0.0),
           "offsets only": dict(coupler_sigma=0.0, crosstalk_mean=0.0, crosstalk_sigma=0.0, efficiency_sigma=0.0,
                                port_loss_sigma=0.0)}
GIVEN = (("none",), ("crosstalk",), ("eff",), ("coupler",), ("gain",), ("eff", "crosstalk"),
         ("eff", "crosstalk", "coupler", "gain"), ("theta", "eff", "crosstalk", "coupler", "gain"))


class Noiseless:
    def __init__(self, hw):
        self.hw = hw

    def forward(self, x, u):
        return self.hw.forward(x, u, noisy=False)


GIVEN6 = (("none",), ("eff", "crosstalk"), ("eff-phi", "crosstalk"), ("eff-theta", "crosstalk"),
          ("eff", "crosstalk-mean"), ("eff", "crosstalk", "coupler"), ("eff-phi", "crosstalk", "coupler"),
          ("eff-phi", "crosstalk-mean", "coupler"), ("eff-phi", "coupler"), ("crosstalk", "coupler"), ("coupler",))


def give(twin, truth, names) -> None:
    with torch.no_grad():
        if "eff-phi" in names:  # round 6: the θ or the φ heaters' efficiencies only, the crosstalk's mean only
            twin.log_eff[1::2] = torch.as_tensor(np.log(truth["eff"][1::2]))
        if "eff-theta" in names:
            twin.log_eff[0::2] = torch.as_tensor(np.log(truth["eff"][0::2]))
        if "crosstalk-mean" in names:
            twin.crosstalk[:] = float(np.mean(truth["crosstalk"]))
        if "eff" in names:
            twin.log_eff.copy_(torch.as_tensor(np.log(truth["eff"])))
        if "crosstalk" in names:
            twin.crosstalk.copy_(torch.as_tensor(truth["crosstalk"].copy()))
        if "coupler" in names:
            twin.coupler_error.copy_(torch.as_tensor(truth["coupler_error"].copy()).reshape(twin.coupler_error.shape))
        if "gain" in names:
            twin.log_gain.copy_(torch.as_tensor(np.log(truth["gain"])))


def loop_error(hw, twin) -> dict:
    d = np.angle(np.exp(1j * (twin.offset.detach().numpy() - hw.truth()["offset"])))
    e = np.abs(np.angle(np.exp(1j * loop_phases(twin.layout, d[1::2]))))
    return {"loop_median": float(np.median(e)), "loop_p90": float(np.quantile(e, 0.9)), "loop_max": float(e.max())}


def cases(kind: str, n: int, chip: int):
    if kind == "bias":
        hw = DirectHardware(seed=chip, modes=n)
        for sweeps in (1, 2, 4, 8):
            twin = MZIMeshTwin(n, hw.phase_per_u)
            give(twin, hw.truth(), ("eff", "crosstalk", "coupler", "gain"))
            with torch.no_grad():
                twin.offset[0::2] = torch.as_tensor(hw.truth()["offset"][0::2])
            r = external_phases(Noiseless(hw), twin, sweeps=sweeps)
            yield {"sweeps": sweeps, "readings_per_n2": r.readings / n**2, **loop_error(hw, twin)}
    elif kind in ("given", "given6"):
        hw = DirectHardware(seed=chip, modes=n, detector_range_w=1e-4 if n >= 64 else 5e-4)
        start = MZIMeshTwin(n, hw.phase_per_u)
        self_configure(hw, start, phases=False)
        for names in GIVEN if kind == "given" else GIVEN6:
            for sweeps in (1, 4) if kind == "given" else (4,):
                twin = MZIMeshTwin(n, hw.phase_per_u)
                twin.load_state_dict(start.state_dict())
                keep_bar_phases(twin, lambda t: give(t, hw.truth(), names))
                if "theta" in names:
                    with torch.no_grad():
                        twin.offset[0::2] = torch.as_tensor(hw.truth()["offset"][0::2])
                external_phases(hw, twin, sweeps=sweeps)
                yield {"given": "+".join(names), "sweeps": sweeps, **loop_error(hw, twin)}
    else:
        for name, spec in SOURCES.items():
            hw = DirectHardware(seed=chip, modes=n, detector_range_w=1e-4 if n >= 64 else 5e-4, **spec)
            twin = MZIMeshTwin(n, hw.phase_per_u)
            self_configure(hw, twin)
            d = np.abs(np.angle(np.exp(1j * (twin.offset.detach().numpy() - hw.truth()["offset"]))))[0::2]
            yield {"chip_errors": name, "theta_median": float(np.median(d)), "theta_p90": float(np.quantile(d, 0.9)),
                   **loop_error(hw, twin)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("kind", choices=("bias", "given", "given6", "sources"))
    ap.add_argument("--modes", type=int, nargs="+", default=[12])
    ap.add_argument("--chips", type=int, nargs="+", default=[1])
    args = ap.parse_args()
    torch.set_num_threads(1)
    RESULTS.mkdir(parents=True, exist_ok=True)
    for n in args.modes:
        for chip in args.chips:
            for row in cases(args.kind, n, chip):
                row = {"kind": args.kind, "modes": n, "chip": chip, **row}
                print(json.dumps(row), flush=True)
                with (RESULTS / f"{args.kind}.jsonl").open("a") as f:
                    f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
