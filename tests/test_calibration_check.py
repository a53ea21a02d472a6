"""Drift detection: `labsat calibrate --check` passes a fresh chip and flags a drifted one (extra_kelvin=2)."""
import numpy as np
import pytest
import torch
import yaml
from typer.testing import CliRunner

from _calibration_hw import DirectHardware
from labsat.calibration.check import check_twin
from labsat.calibration.fit import fit_twin, residual_summary
from labsat.calibration.measure import measure
from labsat.twins.mzi import MZIMeshTwin


@pytest.fixture(scope="module")
def fitted():
    torch.set_num_threads(1)
    hw = DirectHardware(seed=2, modes=4)
    train, held = measure(hw, 40, 16, seed=0).split(0.25)
    twin = MZIMeshTwin(4, hw.phase_per_u)
    fit_twin(twin, train, adam_steps=150, lbfgs_steps=60)
    return hw, twin, residual_summary(twin, held)["rmse"]


def test_check_passes_an_undrifted_chip(fitted):
    hw, twin, stored = fitted
    result = check_twin(hw, twin, stored, settings=6, inputs=16, seed=5)
    assert result.valid, result.summary()
    assert result.threshold == pytest.approx(2 * stored)


def test_check_flags_a_drifted_chip(fitted):
    hw, twin, stored = fitted
    hw.chip.extra_kelvin = 2.0
    try:
        result = check_twin(hw, twin, stored, settings=6, inputs=16, seed=5)
    finally:
        hw.chip.extra_kelvin = 0.0
    assert not result.valid
    assert result.rmse > 2 * stored
    assert "STALE" in result.summary()


def test_check_refuses_a_meaningless_factor(fitted):
    hw, twin, stored = fitted
    with pytest.raises(ValueError, match="factor"):
        check_twin(hw, twin, stored, factor=0.5)


def _small_station(tmp_path):
    """instruments.yaml shrunk to a 4-mode mesh, calibrations under tmp_path."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    cfg = yaml.safe_load((root / "instruments.yaml").read_text())
    cfg["station"]["calibration_dir"] = str(tmp_path / "cal")
    cfg["station"]["runs_dir"] = str(tmp_path / "runs")
    mesh = cfg["layers"]["mesh"]
    mesh.update(modes=4)
    mesh["heaters"]["channels"] = "0-11"
    mesh["inputs"]["channels"] = "0-3"
    mesh["outputs"]["channels"] = "0-3"
    path = tmp_path / "instruments.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_cli_check_exit_codes(tmp_path, monkeypatch):
    from labsat.cli import app
    from labsat.drivers.sim import chip as chipmod

    station = _small_station(tmp_path)
    runner = CliRunner()
    res = runner.invoke(app, ["calibrate", "-s", str(station), "--settings", "24", "--inputs", "16"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["calibrate", "-s", str(station), "--check"])
    assert res.exit_code == 0, res.output
    assert "VALID" in res.output

    original = chipmod.VirtualChip.__post_init__

    def drifted(self):
        original(self)
        self.extra_kelvin = 2.0

    monkeypatch.setattr(chipmod.VirtualChip, "__post_init__", drifted)
    res = runner.invoke(app, ["calibrate", "-s", str(station), "--check"])
    assert res.exit_code == 1, res.output
    assert "STALE" in res.output


def test_cli_check_without_calibration_is_a_clear_error(tmp_path):
    from labsat.cli import app

    res = CliRunner().invoke(app, ["calibrate", "-s", str(_small_station(tmp_path)), "--check"])
    assert res.exit_code == 2
    assert "no calibration" in res.output
