"""labsat experiment takes the learning rate every other front door defaults to (by mesh size); --lr wins."""
import json
from pathlib import Path

import pytest

from labsat import defaults
from labsat.experiments import Lab, Setup, run_experiment

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("station, modes", [(ROOT / "instruments.yaml", 8), (ROOT / "stations/paper-mzi-16.yaml", 16)])
def test_experiment_lr_defaults_to_the_layers_rate(station, modes, tmp_path):
    lab = Lab(Setup(station=station, n_train=100, n_test=50, out=tmp_path), sweeps=None, name="rho")
    assert lab.setup.lr == pytest.approx(defaults.lr_for(modes))
    explicit = Lab(Setup(station=station, lr=0.002, n_train=100, n_test=50, out=tmp_path), sweeps=None, name="rho")
    assert explicit.setup.lr == 0.002


def test_experiment_records_the_rate_it_trained_with(tmp_path):
    setup = Setup(station=ROOT / "stations/paper-mzi-16.yaml", seeds=1, offline_epochs=1, cal_settings=4,
                  cal_inputs=4, rho_grid=(0.0,), methods=("plain",), n_train=100, n_test=50, out=tmp_path / "out",
                  scheduler="serial", store=tmp_path / "runs.sqlite")
    run_experiment("rho", setup, log=lambda msg: None)
    meta = json.loads((tmp_path / "out/rho/results.json").read_text())["meta"]
    assert meta["setup"]["lr"] == pytest.approx(defaults.lr_for(16)) and meta["setup"]["lr"] != defaults.LR
