"""Hardware forwards per training step for every training mode, counted by the hardware (issue 12, item 4).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/paper_scale_forwards.py [--steps 3] [--json PATH]

Each row trains ``labsat.train.train`` (the loop `labsat train`, the GUI and the demo run through
``labsat.workflows.training``) for two epochs of ``--steps`` steps of batch 8 on 8-feature digits, on a 4-mode
station of the virtual lab (the repo's test station: serial heater DAC, modulator, DAQ), and reads the
hardware's own batch counter (``HeaterBankHardware.batches``, one per ``forward``) before and after
every step (``History.step_hardware_batches``). Nothing is asserted by hand: ``DOCUMENTED`` holds the
counts benchmarks/README.md states, and ``tests/test_paper_scale_forwards.py`` checks them against the
counters.
"""
from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# (mode, optimizer, perturbed pass) -> hardware forwards per step, as benchmarks/README.md documents them.
# Offline training never touches the hardware; online, every pass whose outputs feed the loss runs on
# the hardware unless the optimizer moves it to the twin.
DOCUMENTED = {
    ("offline", "adam", "-"): 0,
    ("offline", "sam", "-"): 0,
    ("offline", "asam", "-"): 0,
    ("offline", "saf", "-"): 0,
    ("offline", "mesa", "-"): 0,
    ("online", "adam", "-"): 1,
    ("online", "sgd", "-"): 1,
    ("online", "noise", "-"): 1,
    ("online", "sam", "twin"): 1,
    ("online", "sam", "hardware"): 2,
    ("online", "asam", "twin"): 1,
    ("online", "asam", "hardware"): 2,
    ("online", "saf", "-"): 1,
    ("online", "mesa", "-"): 1,
}


def station_config(tmp: Path) -> dict:
    """The 4-mode test station (tests/conftest.py's minimal config), runs under ``tmp``."""
    sys.path.insert(0, str(ROOT / "tests"))
    from conftest import minimal_config

    cfg = copy.deepcopy(minimal_config())
    cfg["station"]["calibration_dir"] = str(tmp / "cal")
    cfg["station"]["runs_dir"] = str(tmp / "runs")
    return cfg


_DIGITS: dict = {}  # features -> digits data set, loaded once per process


def count(station, mode: str, optimizer: str, perturbed: str, steps: int = 3, batch: int = 8) -> list[int]:
    """Hardware forwards of each step of two epochs of ``steps`` steps (the hardware's counter, per step).

    Two epochs with ``lag=1, warmup=0``: SAF's and MESA's trajectory terms are active in the second."""
    import torch

    from labsat.data import Dataset, load_digits
    from labsat.train import TrainConfig, model_for, train

    features = station.config.layers["mesh"].modes
    full = _DIGITS.get(features) or _DIGITS.setdefault(features, load_digits(features, seed=0))
    n = steps * batch
    data = Dataset(full.x_train[:n], full.y_train[:n], full.x_test[:n], full.y_test[:n], full.encoder,
                   full.n_classes, full.name)
    hw = station.layer("mesh")
    model = model_for(station.config, "mesh", data.n_classes, seed=0, hardware=hw)
    cfg = TrainConfig(mode=mode, optimizer=optimizer, epochs=2, batch_size=batch, lr=0.01,
                      twin_perturbed=perturbed != "hardware", warmup=0, lag=1)
    torch.manual_seed(0)
    history = train(model, data, cfg)  # the loop reads hw.batches before and after every step
    return list(history.step_hardware_batches)


def measure_all(steps: int = 3) -> list[dict]:
    import tempfile

    from labsat.config import parse_config
    from labsat.station import Station

    rows = []
    with tempfile.TemporaryDirectory() as tmp, Station(parse_config(station_config(Path(tmp)))) as st:
        for (mode, optimizer, perturbed), documented in DOCUMENTED.items():
            per_step = count(st, mode, optimizer, perturbed, steps)
            rows.append({"mode": mode, "optimizer": optimizer, "perturbed_pass": perturbed,
                         "per_step": per_step, "documented": documented})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "paper_scale_forwards.json")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    rows = measure_all(args.steps)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(rows, indent=1))
    print("| mode | optimizer | perturbed pass | hardware forwards per step (counted) | documented |")
    print("|---|---|---|---|---:|")
    for r in rows:
        print(f"| {r['mode']} | {r['optimizer']} | {r['perturbed_pass']} | "
              f"{', '.join(map(str, r['per_step'])) or '0'} | {r['documented']} |")


if __name__ == "__main__":
    main()
