"""The training learning rate follows the mesh size (issue 12): one rule (labsat.defaults.lr_for), resolved by
the train workflow for every front door; an explicit --lr wins; 8 modes and the other kinds keep 0.03."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from labsat import defaults
from labsat.cli import app
from labsat.config import load_config
from labsat.train import TrainConfig, load_model_file
from labsat.workflows import default_lr

ROOT = Path(__file__).resolve().parents[1]


def test_the_rule_keeps_8_modes_and_falls_with_the_mesh():
    assert defaults.lr_for(8) == defaults.LR == 0.03
    assert defaults.lr_for(4) == defaults.lr_for(None) == defaults.LR
    rates = [defaults.lr_for(n) for n in (8, 16, 32, 64)]
    assert all(a > b for a, b in zip(rates, rates[1:]))
    # the tuned optimum at 64 modes was 0.001 (benchmarks/README.md "Learning rate by mesh size")
    assert rates[-1] == pytest.approx(0.00108, rel=0.01)


def test_default_lr_by_station():
    assert default_lr(load_config(ROOT / "instruments.yaml"), "mesh") == defaults.LR  # 8-mode mesh: unchanged
    assert default_lr(load_config(ROOT / "stations" / "paper-mzi.yaml"), "mesh") == defaults.lr_for(64)
    micro = load_config(ROOT / "stations" / "microring.yaml")
    assert default_lr(micro, next(iter(micro.layers))) == defaults.LR  # not a mesh: not tuned by size


def test_train_loop_refuses_an_unresolved_rate():
    from labsat.train import train

    with pytest.raises(ValueError, match="lr is None"):
        train(None, None, TrainConfig(lr=None))


@pytest.fixture
def station16(tmp_path) -> Path:
    data = yaml.safe_load((ROOT / "stations" / "paper-mzi-16.yaml").read_text())
    data["station"]["calibration_dir"] = str(tmp_path / "calibration")
    data["station"]["runs_dir"] = str(tmp_path / "runs")
    path = tmp_path / "mzi16.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def trained_lr(station: Path, *extra) -> float:
    result = CliRunner().invoke(app, ["train", "--station", str(station), "--nominal", "--mode", "offline",
                                      "--epochs", "0", "--json", *extra])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    model = Path(out["model"]) if Path(out["model"]).is_absolute() else Path.cwd() / out["model"]
    return load_model_file(model)["meta"]["history"]["config"]["lr"]


def test_train_cli_default_follows_the_mesh_and_lr_overrides(station16):
    assert trained_lr(station16) == pytest.approx(defaults.lr_for(16))  # 0.0099, not 0.03
    assert trained_lr(station16, "--lr", "0.02") == 0.02
