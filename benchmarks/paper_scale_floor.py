"""What an online step at N = 64 costs in torch besides the instruments: the parts of the floor (issue 12, round 5).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/paper_scale_floor.py [--rounds 5]

One thread, thread CPU time, interleaved rounds (median), glibc's malloc as labsat sets it
(labsat/hardware/memory.py), the twin's pass in float32 (``labsat.defaults.BACKWARD_DTYPE``):
- ``twin pass``: ``MZIMeshTwin`` at N = 64, forward + backward w.r.t. the controls (what an online step's
  backward costs): the transfer-matrix build + its backward, whatever the batch, and ``|U x|²``;
- ``build``: the transfer matrix alone, forward + backward (``clements.mesh_matrix``);
- ``powers fused`` / ``powers plain``: ``|U x|²`` forward + backward with ``clements.powers``' hand-written
  backward / through plain autograd (round 4's);
- ``fields``: the alternative to the build when the batch is small: the columns applied to the batch's
  fields directly (an (N, B) state, 64 sequential column steps, plain autograd), forward + backward;
- ``readout``: the SAM step's digital part per pass (float64 ``Linear(64, 10)`` + cross-entropy, forward +
  backward w.r.t. its input and weights), twice per online SAM step (round 5);
- ``readout ClassLoss``: the same with train()'s ``ClassLoss`` (round 5b: the clean pass's), ``readout32``: and
  in float32 from float32 outputs (round 5b: the perturbed pass's, ``backward_dtype``);
- ``clean readout`` / ``clean readout32``: PartialSAM's clean pass (dL/dy only, the readout's gradient skipped)
  from the float64 readings, in float64 (round 5b) / with the readings cast to float32 (round 5c, ``Batch.ascent``).
Writes benchmarks/results/paper_scale_floor.json and prints a markdown table.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from labsat.hardware.memory import reuse_freed_memory  # noqa: E402
from labsat.twins import clements  # noqa: E402
from labsat.train import ClassLoss  # noqa: E402
from labsat.twins.mzi import MZIMeshTwin  # noqa: E402

N = 64


def cpu_ms(fn, reps: int) -> float:
    fn()
    t = time.thread_time()
    for _ in range(reps):
        fn()
    return 1e3 * (time.thread_time() - t) / reps


def plain_powers(u, x):  # round 4's |U x|^2 for real x: autograd through the slices and squares
    y = torch.matmul(x, torch.cat([u.real, u.imag], -2).transpose(-1, -2))
    return y[..., :N] ** 2 + y[..., N:] ** 2


def cases_for(batch: int, twin: MZIMeshTwin, rng) -> dict:
    u0 = torch.as_tensor(rng.uniform(0.1, 0.9, twin.n_controls))
    x = torch.as_tensor(rng.uniform(0.1, 1.0, (batch, N)))
    g = torch.as_tensor(rng.standard_normal((batch, N)))
    f32 = torch.float32
    phases = twin.heater_phases(u0).to(f32)
    couplers = twin.coupler_error.to(f32)
    u_mat = clements.mesh_matrix(phases[0::2], phases[1::2], twin.layout, split_error=couplers).detach()
    g_mat = torch.randn(N, N, dtype=torch.complex64)
    x32, g32 = x.to(f32), g.to(f32)
    pos, partner = clements._column_index(twin.layout)
    readout = torch.nn.Linear(N, 10, dtype=torch.float64)
    labels = torch.as_tensor(rng.integers(0, 10, batch))

    def twin_pass():
        u = u0.clone().requires_grad_()
        torch.autograd.grad(twin(x, u, dtype=f32), u, g)

    def build():
        p = phases.clone().requires_grad_()
        m = clements.mesh_matrix(p[0::2], p[1::2], twin.layout, split_error=couplers)
        torch.autograd.grad(m, p, g_mat)

    def powers(fn):
        def run():
            m = u_mat.clone().requires_grad_()
            torch.autograd.grad(fn(m, x32), m, g32)
        return run

    def fields():
        u = u0.clone().requires_grad_()
        ph = twin.heater_phases(u).to(f32)
        t = clements.mzi_matrices(ph[0::2], ph[1::2], split_error=couplers)
        flat = pos.reshape(-1)
        a = t.new_ones(N * N).index_copy(-1, flat, torch.stack([t[:, 0, 0], t[:, 1, 1]], -1).reshape(-1))
        b = t.new_zeros(N * N).index_copy(-1, flat, torch.stack([t[:, 0, 1], t[:, 1, 0]], -1).reshape(-1))
        a, b = a.reshape(N, N, 1), b.reshape(N, N, 1)
        f = x32.to(torch.complex64).T                 # (N, B) fields
        for c in range(N):
            f = a[c] * f + b[c] * f.index_select(-2, partner[c])
        torch.autograd.grad((f.abs() ** 2).T.to(torch.float64), u, g)

    def readout_pass():
        y = x.clone().requires_grad_()
        readout.zero_grad()
        torch.nn.functional.cross_entropy(readout(y), labels).backward()

    class_loss = ClassLoss()
    x32r = x32.clone()

    def readout_class_loss(dtype):
        def run():
            y = (x if dtype == torch.float64 else x32r).clone().requires_grad_()
            readout.zero_grad()
            z = torch.nn.functional.linear(y, readout.weight.to(dtype), readout.bias.to(dtype))
            class_loss(z, labels).backward()
        return run

    def clean_readout(dtype):  # PartialSAM's clean pass: dL/dy only (the readout's gradient skipped), from
        def run():              # the float64 readings; dL/dy in float32 for the twin's backward either way
            y = x.to(dtype).requires_grad_()   # round 5c: the readings cast (float32); round 5b: float64
            z = torch.nn.functional.linear(y, readout.weight.to(dtype), readout.bias.to(dtype))
            torch.autograd.grad(class_loss(z, labels), y)[0].to(f32)
        return run

    cases = {"twin pass": twin_pass, "build": build, "powers fused": powers(clements.powers),
             "powers plain": powers(plain_powers), "readout": readout_pass,
             "readout ClassLoss": readout_class_loss(torch.float64), "readout32": readout_class_loss(f32),
             "clean readout": clean_readout(torch.float64), "clean readout32": clean_readout(f32)}
    if batch <= N:
        cases["fields"] = fields
    return cases


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, nargs="+", default=[8, 16, 64, 1024, 6000])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "paper_scale_floor.json")
    args = ap.parse_args()
    torch.set_num_threads(1)
    reuse_freed_memory()
    twin = MZIMeshTwin(N, 2.0)
    rows = []
    for batch in args.batch:
        cases = cases_for(batch, twin, np.random.default_rng(batch))
        reps = 3 if batch > 1024 else 10
        times = {k: [] for k in cases}
        for _ in range(args.rounds):
            for k, fn in cases.items():
                times[k].append(cpu_ms(fn, reps))
        row = {"batch": batch, **{k: statistics.median(v) for k, v in times.items()}}
        rows.append(row)
        print(row, flush=True)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(rows, indent=1))
    keys = ["twin pass", "build", "powers fused", "powers plain", "fields", "readout", "readout ClassLoss", "readout32",
            "clean readout", "clean readout32"]
    print("\n| batch | " + " | ".join(f"{k} (ms)" for k in keys) + " |")
    print("|---:|" + "---:|" * len(keys))
    for r in rows:
        print(f"| {r['batch']} | " + " | ".join(f"{r[k]:.2f}" if k in r else "–" for k in keys) + " |")


if __name__ == "__main__":
    main()
