"""Hardware forwards per second through the physical layer on the virtual lab, and where the time goes.

Runs ``MeshHardware.forward`` (set the heaters, play a batch through the modulator, fetch the DAQ
block) and ``PhysicalLayer`` forward + backward (hardware forward, twin backward) on the repo's
instruments.yaml (8-mode mesh, 56 heaters on a Qontrol-style serial DAC, SCPI modulator and DAQ), with
the virtual lab's timing model switched on in *realtime* mode: every modelled instrument delay
(per-message latency, serial bytes at the baud rate, thermal settling after a heater change,
integration per sample) is slept in the simulator's server thread, so the wall clock is what a bench
with those instruments would show.

Where the time goes:

- **instrument**: modelled instrument time (``LabClock.modelled_s``), and what the simulator actually
  slept for it (``slept_s``, a little more: sleep overshoot);
- **simulator**: the simulator computing replies (physics, parsing), absent on a real bench;
- **Python**: the CPU time of the client thread (``time.thread_time``): labsat, the drivers,
  PyMeasure/pyvisa/pyserial, socket calls, torch. The client is one thread, so its CPU time is
  exactly the time it was not waiting for an instrument; the simulator runs in other threads and
  competes for the GIL and the cores, which shows in the wall time but not here.

Two shares are reported: ``Python / wall`` in the realtime run, and ``Python / (Python + modelled)``
from a run without sleeping (what a bench whose instruments take exactly the modelled time would
see; independent of sleep accuracy and of the simulator's own load).

    .venv/bin/python benchmarks/throughput.py            # the table in benchmarks/README.md
    .venv/bin/python benchmarks/throughput.py --profile  # plus the top of a cProfile of the client
"""
from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from labsat.config import load_config  # noqa: E402
from labsat.station import Station  # noqa: E402

TIMING = {  # stated in benchmarks/README.md
    "query_latency_s": 2e-4,  # round trip of an answered message (LAN / USB-TMC instrument)
    "command_latency_s": 0.0,  # writes are buffered
    "serial_baud": 115200,  # Qontrol-style heater driver
    "settling_s": 1e-3,  # thermo-optic settling after a heater change
    "sample_s": 1e-5,  # 100 kS/s per acquired sample vector
}


def bench_config(realtime: bool, timing: dict):
    cfg = load_config(REPO / "instruments.yaml").model_copy(deep=True)
    t = cfg.station.sim.timing
    for key, value in timing.items():
        setattr(t, key, value)
    t.realtime = realtime
    return cfg


class InProcessClock:
    def __init__(self, st):
        self.lab = st.lab

    def reset(self):
        self.lab.clock.reset()

    def read(self) -> dict:
        c = self.lab.clock
        return dict(modelled_s=c.modelled_s, slept_s=c.slept_s, compute_s=c.compute_s, messages=c.messages,
                    per_instrument=dict(c.per_instrument))


class ChildClock:
    def __init__(self, lab):
        self.lab = lab

    def reset(self):
        self.lab.reset_clock()

    def read(self) -> dict:
        return self.lab.clock()


def run_case(st: Station, clock, case: str, batch: int, forwards: int, seed: int = 0, profile: bool = False,
             configure=None):
    """Time ``forwards`` hardware forwards; return the row of the table. ``configure(layer)``, if given,
    sets up the ``layer`` case's :class:`PhysicalLayer` (e.g. its twin overlap or backward precision)."""
    import torch

    from labsat.kinds.mesh import twin_for
    from labsat.physical import PhysicalLayer

    rng = np.random.default_rng(seed)
    mesh = st.mesh()
    cfg = st.config.layers["mesh"]
    x = rng.uniform(0.1, 1.0, (batch, mesh.modes))
    u0 = rng.uniform(0.2, 0.8, mesh.n_controls)
    layer = None
    if case in ("layer", "sam"):
        heater = st.config.instruments[cfg.heaters.instrument]
        layer = PhysicalLayer(twin_for(cfg, heater.limits.resistance_ohm), mesh)
        layer.use_hardware = True
        if configure is not None:
            configure(layer)
        xt = torch.as_tensor(x)
        opt = torch.optim.SGD(layer.parameters(), lr=1e-3)
    if case == "sam":  # the step of `labsat train --mode online --optimizer sam`: digital readout, 10 classes
        from labsat.physical import HybridClassifier
        from labsat.sat.step import Batch
        from labsat.train import ClassLoss, TrainConfig, make_optimizer

        model = HybridClassifier(layer, 10, seed=seed)
        opt = make_optimizer(model.parameters(), TrainConfig(mode="online", optimizer="sam", lr=1e-3), model=model)
        sam_batch = Batch(model, xt, torch.as_tensor(rng.integers(0, 10, batch)), torch.arange(batch),
                          ClassLoss())  # train()'s loss
    mesh.forward(x, u0)  # first ramp from 0 V is not part of the steady state
    clock.reset()
    prof = cProfile.Profile(time.thread_time) if profile else None  # CPU, not waiting
    t0, c0, p0 = time.perf_counter(), time.thread_time(), time.process_time()
    if prof:
        prof.enable()
    for k in range(forwards):
        if case == "fixed":  # inference: controls unchanged, only the batch runs
            mesh.forward(x, u0)
        elif case == "update":  # every forward at new controls (small steps, as in training)
            mesh.forward(x, np.clip(u0 + 0.01 * rng.standard_normal(mesh.n_controls), 0, 1))
        elif case == "sam":  # clean pass on the hardware, perturbed pass on the twin, SAM step
            from labsat.sat.step import step_batch

            step_batch(opt, sam_batch)
            layer.project_()
        else:  # PhysicalLayer: hardware forward, twin backward, optimizer step
            opt.zero_grad()
            loss = layer(xt).square().sum()
            loss.backward()
            opt.step()
            layer.project_()
    if prof:
        prof.disable()
    wall, cpu, proc = time.perf_counter() - t0, time.thread_time() - c0, time.process_time() - p0
    c = clock.read()
    row = dict(case=case, batch=batch, forwards=forwards, wall_s=wall, fwd_per_s=forwards / wall,
               samples_per_s=forwards * batch / wall, modelled_s=c["modelled_s"], slept_s=c["slept_s"],
               sim_s=c["compute_s"], messages=c["messages"], per_instrument=c["per_instrument"])
    row["python_s"] = cpu  # CPU time of this (the client's only) thread: not waiting, not the simulator
    row["process_s"] = proc  # every thread of the client process (a twin worker thread too)
    row["python_share"] = cpu / wall
    row["python_share_model"] = cpu / (cpu + c["modelled_s"]) if cpu + c["modelled_s"] > 0 else 0.0
    if prof:
        s = io.StringIO()
        pstats.Stats(prof, stream=s).sort_stats("tottime").print_stats(12)
        row["profile"] = s.getvalue()
    return row


CASES = [("update", 32), ("layer", 32), ("fixed", 32), ("fixed", 256), ("fixed", 1024)]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--forwards", type=int, default=20, help="forwards per case")
    ap.add_argument("--profile", action="store_true", help="print a cProfile of the client per case")
    ap.add_argument("--in-process", action="store_true",
                    help="run the virtual lab in this process (threads) instead of a child process")
    ap.add_argument("--fast-instruments", action="store_true",
                    help="zero latency, infinitely fast serial, settling and integration kept")
    args = ap.parse_args(argv)
    timing = dict(TIMING)
    if args.fast_instruments:
        timing.update(query_latency_s=0.0, serial_baud=0)
    rows = {}
    for realtime in (True, False):
        cfg = bench_config(realtime, timing)
        if args.in_process:
            with Station(cfg) as st:
                for case, batch in CASES:
                    rows[(realtime, case, batch)] = run_case(st, InProcessClock(st), case, batch, args.forwards,
                                                             profile=args.profile and realtime)
        else:
            from labsat.lab_process import LabProcess

            with LabProcess(cfg) as lab, Station(lab.config) as st:
                for case, batch in CASES:
                    rows[(realtime, case, batch)] = run_case(st, ChildClock(lab), case, batch, args.forwards,
                                                             profile=args.profile and realtime)
    where = "in this process (threads)" if args.in_process else "in a child process"
    print(f"virtual lab {where}; timing model: {timing}; {args.forwards} forwards per case; "
          f"8-mode mesh, 56 heaters")
    print()
    print("| case | batch | forwards/s | samples/s | wall ms/fwd | instrument ms/fwd (slept) | simulator ms/fwd "
          "| Python CPU ms/fwd | Python share of wall (realtime) | Python / (Python + modelled) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for case, batch in CASES:
        r, n = rows[(True, case, batch)], rows[(False, case, batch)]
        f = r["forwards"]
        share0 = n["python_share_model"]
        print(f"| {case} | {batch} | {r['fwd_per_s']:.1f} | {r['samples_per_s']:.0f} | {1e3 * r['wall_s'] / f:.2f} | "
              f"{1e3 * r['slept_s'] / f:.2f} (model {1e3 * r['modelled_s'] / f:.2f}) | {1e3 * r['sim_s'] / f:.2f} | "
              f"{1e3 * r['python_s'] / f:.2f} | {100 * r['python_share']:.1f} % | {100 * share0:.1f} % |")
    print()
    for case, batch in CASES:
        r = rows[(True, case, batch)]
        per = ", ".join(f"{k} {1e3 * v / r['forwards']:.2f}" for k, v in sorted(r["per_instrument"].items()))
        print(f"- {case}/{batch}: modelled ms per forward by instrument: {per}; messages per forward "
              f"{r['messages'] / r['forwards']:.1f}")
        if "profile" in r:
            print(r["profile"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
