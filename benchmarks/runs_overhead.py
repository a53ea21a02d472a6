"""What recording a run costs: checkpoint file (torch.save, fsync, rename) + one sqlite transaction
(WAL, synchronous=FULL) per epoch, against the epoch itself, on the repo's 8-mode station.

    .venv/bin/python benchmarks/runs_overhead.py [--epochs 5] [--optimizer sam]
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from labsat import runs
from labsat.config import load_config
from labsat.data import load_digits
from labsat.train import TrainConfig, build_model, train

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--optimizer", default="sam")
    args = ap.parse_args()
    cfg = load_config(REPO / "instruments.yaml")
    layer = cfg.layers["mesh"]
    data = load_digits(layer.modes, seed=0)
    tcfg = TrainConfig(optimizer=args.optimizer, epochs=args.epochs)
    resistance = cfg.instruments[layer.heaters.instrument].limits.resistance_ohm

    model = build_model(layer, resistance, data.n_classes)
    t0 = time.perf_counter()
    train(model, data, tcfg)
    plain = (time.perf_counter() - t0) / args.epochs

    with tempfile.TemporaryDirectory() as tmp:
        db = runs.RunDB(Path(tmp) / runs.DB_NAME)
        run = db.start_run("train", {"train": vars(tcfg)}, git=None)
        rec = runs.TrainRecorder(db, run, Path(tmp) / "checkpoints")
        costs = []

        def timed(record, state):
            t = time.perf_counter()
            rec.checkpoint(record, state)
            costs.append(time.perf_counter() - t)

        model = build_model(layer, resistance, data.n_classes)
        t0 = time.perf_counter()
        train(model, data, tcfg, checkpoint=timed)
        recorded = (time.perf_counter() - t0) / args.epochs
        size = (Path(tmp) / "checkpoints" / f"run-{run:05d}" / f"epoch-{args.epochs:05d}.pt").stat().st_size
        db.close()

    print(f"offline {args.optimizer}, {layer.modes}-mode mesh, {len(data.x_train)} samples, {args.epochs} epochs")
    print(f"epoch, not recorded:      {1e3 * plain:8.1f} ms")
    print(f"epoch, recorded:          {1e3 * recorded:8.1f} ms")
    print(f"checkpoint + transaction: {1e3 * statistics.median(costs):8.1f} ms median "
          f"(max {1e3 * max(costs):.1f} ms), checkpoint file {size / 1024:.1f} KiB")


if __name__ == "__main__":
    main()
