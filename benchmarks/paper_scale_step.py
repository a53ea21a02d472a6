"""Per-step wall time vs modelled instrument time, and Python's share, at N = 8, 16, 32, 64 (issue 12, item 6).

    .venv/bin/python benchmarks/paper_scale_step.py [--modes 8 16 32 64] [--forwards 10] [--batch 64 6000]

Station: stations/paper-mzi.yaml resized to N modes (N(N-1) heaters on the LAN block DAC, N-channel
modulator and DAQ, the paper's error model), its timing model (LAN round trip 0.2 ms per answered
message, every byte of a message and its reply at 100 Mbit/s, 1 ms thermal settling after a heater
change, 10 µs per sample), the virtual lab in a child process. Batch 6000 is the SAT paper's MZI batch
(the bench adapter sends it as chunks of at most 1024 inputs). Cases, as in benchmarks/throughput.py (whose ``run_case`` this reuses):
- ``update``: a hardware forward at new controls (every heater changes; what one training step costs
  the bench);
- ``layer``: an online training step through ``PhysicalLayer``: hardware forward, twin backward at N
  modes, optimizer step.
Columns: wall per step in the realtime run (the simulator sleeps the modelled instrument time), the
modelled instrument time, the client's Python CPU time (labsat, drivers, pyvisa, torch: everything that
is not waiting for an instrument), Python / wall, and messages (round trips + writes) per step.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from throughput import ChildClock, run_case  # noqa: E402

from labsat.config import parse_config  # noqa: E402
from labsat.lab_process import LabProcess  # noqa: E402
from labsat.station import Station  # noqa: E402


def config_for(modes: int, realtime: bool):
    data = yaml.safe_load((ROOT / "stations" / "paper-mzi.yaml").read_text())
    h = modes * (modes - 1)
    data["instruments"]["heaters"]["channels"] = max(h, 1)
    data["instruments"]["modulator"]["channels"] = modes
    data["instruments"]["detectors"]["channels"] = modes
    mesh = data["layers"]["mesh"]
    mesh.update(modes=modes, heaters={"instrument": "heaters", "channels": f"0-{h - 1}"},
                inputs={"instrument": "modulator", "channels": f"0-{modes - 1}"},
                outputs={"instrument": "detectors", "channels": f"0-{modes - 1}"})
    data["station"]["sim"]["timing"]["realtime"] = realtime
    data["station"]["runs_dir"] = "/tmp/labsat-bench-runs"
    return parse_config(data, f"stations/paper-mzi.yaml at {modes} modes")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--modes", type=int, nargs="+", default=[8, 16, 32, 64])
    ap.add_argument("--forwards", type=int, default=10)
    ap.add_argument("--batch", type=int, nargs="+", default=[64])
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "paper_scale_step.json")
    args = ap.parse_args()
    rows = []
    for n in args.modes:
        for realtime in (True, False):
            with LabProcess(config_for(n, realtime)) as lab, Station(lab.config) as st:
                for case, batch in ((c, b) for b in args.batch for c in ("update", "layer")):
                    r = run_case(st, ChildClock(lab), case, batch, args.forwards)
                    r.update(modes=n, realtime=realtime)
                    r.pop("per_instrument", None)
                    rows.append(r)
                    print({k: r[k] for k in ("modes", "case", "batch", "realtime", "wall_s", "modelled_s",
                                             "python_s", "messages")}, flush=True)
                    args.out.parent.mkdir(parents=True, exist_ok=True)
                    args.out.write_text(json.dumps(rows, indent=1, default=float))  # as it goes
    print(f"\n{args.forwards} steps per case\n")
    print("| N | heaters | batch | case | wall ms/step (realtime) | modelled instrument ms/step | Python CPU ms/step "
          "| Python / wall | Python / (Python + modelled) | messages/step |")
    print("|---|---:|---:|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        if not r["realtime"]:
            continue
        fast = next(x for x in rows if x["modes"] == r["modes"] and x["case"] == r["case"]
                    and x["batch"] == r["batch"] and not x["realtime"])
        f = r["forwards"]
        print(f"| {r['modes']} | {r['modes'] * (r['modes'] - 1)} | {r['batch']} | {r['case']} | "
              f"{1e3 * r['wall_s'] / f:.1f} | {1e3 * fast['modelled_s'] / f:.1f} | {1e3 * fast['python_s'] / f:.1f} | "
              f"{100 * r['python_share']:.0f} % | {100 * fast['python_share_model']:.0f} % | "
              f"{fast['messages'] / f:.1f} |")


if __name__ == "__main__":
    main()
