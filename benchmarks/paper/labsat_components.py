"""Which part of labsat's error model breaks the MZI-protocol models at spread x0.5 (benchmarks/README.md).

Loads the models `run_r2.sh` section 5 trained (spread 0.5, chips 201-203 x seed 0, BP and SAT in situ,
from results/labsat-model/cache) and evaluates each, unchanged, on the same 5 new chips with ONE
component of the error model kept and the others ideal (offsets, efficiency, crosstalk, couplers, port
loss), and with all of them. Evaluation only (no training): about a minute.

    .venv/bin/python benchmarks/paper/labsat_components.py
"""
from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from labsat.paper import common, mzi

OUT = Path(__file__).resolve().parent / "results" / "labsat-model"
SPREAD = 0.5
IDEAL = {"offset": 0.0, "eta": 1.0, "kappa": 0.0, "split": 0.0, "gain": 1.0}
PARTS = {"offsets": ("offset",), "efficiency": ("eta",), "crosstalk": ("kappa",), "couplers": ("split",),
         "port loss": ("gain",), "all": tuple(IDEAL)}


def only(errors: dict, keep: tuple) -> dict:
    return {k: (v if k in keep else torch.full_like(v, IDEAL[k])) for k, v in errors.items()}


def main() -> None:
    torch.set_num_threads(1)
    s = mzi.Settings(epochs=10, error_model="labsat", sigma=SPREAD, transfer_sigmas=(SPREAD,))
    protocol = common.Protocol(eval_chips=(201, 202, 203), seeds=(0,))
    xtr, ytr, xte, yte, name = mzi._data("digits", None, None)
    tasks = mzi.tasks(protocol, s, OUT, methods=("bp", "sat_insitu"))
    results: dict = {}
    for task in tasks:
        model = mzi.MeshNet(mzi.Settings(**task["settings"]), task["seed"])
        model.load_state_dict(torch.load(OUT / "cache" / f"mzi-{mzi._key(task)}.pt", weights_only=False)["state"])
        for k in range(5):
            errors = mzi.chip_errors(model.mesh.layout, common.transfer_chip(0, k), SPREAD, model="labsat")
            for part, keep in PARTS.items():
                results.setdefault((task["method"], part), []).append(mzi.accuracy(model, xte, yte, only(errors, keep)))
    print(f"Models trained at spread x{SPREAD} (chips 201-203 x seed 0, 10 epochs, {name}) on 5 new chips each, "
          "one component of labsat's error model at a time (% accuracy, mean ± std (n))\n")
    print("| method | " + " | ".join(PARTS) + " |")
    print("|---" * (len(PARTS) + 1) + "|")
    for m in ("bp", "sat_insitu"):
        print(f"| {mzi.LABELS[m]} | " + " | ".join(common.fmt(results[(m, p)]) for p in PARTS) + " |")


if __name__ == "__main__":
    main()
