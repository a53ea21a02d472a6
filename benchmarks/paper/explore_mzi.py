"""Exploratory single-chip MZI runs (not in the tables): one model per method on evaluation chip 201,
seed 0, then 3 new chips at each of sigma 0.15, 0.3, 0.5, 1.0.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/paper/explore_mzi.py 40 bp,sat               # Haar init
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/paper/explore_mzi.py 40 bp,sat init=uniform  # one factor changed
"""
import sys
import time

import torch

from labsat.paper import common, mzi

torch.set_num_threads(1)
epochs, methods = int(sys.argv[1]), sys.argv[2].split(",")
extra = dict(a.split("=") for a in sys.argv[3:])
s = mzi.Settings(epochs=epochs, transfer_sigmas=(0.15, 0.3, 0.5, 1.0), transfer_chips=3,
                 **{k: type(getattr(mzi.Settings, k))(v) for k, v in extra.items()})
for task in mzi.tasks(common.Protocol(eval_chips=(201,), seeds=(0,)), s, None, methods=methods):
    t0 = time.time()
    rows = mzi.run_task(task)
    new = {}
    for r in rows[1:]:
        new.setdefault(r["sigma"], []).append(round(r["accuracy"], 2))
    print(task["method"], extra, "own chip", round(rows[0]["accuracy"], 3), "ideal", round(rows[0]["twin_accuracy"], 3),
          "new chips", new, f"{time.time() - t0:.0f} s", flush=True)
