"""The microring weight-bank kind: hidden-truth scene vs twin, balanced weights, calibration, CLI training.

Small banks (4 x 4) keep these fast; stations are written under tmp_path.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
import yaml
from typer.testing import CliRunner

from conftest import REPO, write_yaml
from labsat import cli
from labsat.calibration import measure
from labsat.calibration.fit import residual_summary
from labsat.config import ConfigError, load_config, parse_config
from labsat.drivers.sim.microring import MicroringBank, MicroringSpec, balanced_weight
from labsat.kinds import KINDS
from labsat.station import Station
from labsat.calibration.microring import fit_microring

runner = CliRunner()


def ring_station(tmp_path, n: int = 4) -> dict:
    d = yaml.safe_load((REPO / "stations" / "microring.yaml").read_text())
    d["station"]["calibration_dir"] = str(tmp_path / "cal")
    d["station"]["runs_dir"] = str(tmp_path / "runs")
    for name in ("ring1", "ring2"):
        layer = d["layers"][name]
        layer.update(n_inputs=n, n_outputs=n)
        layer["heaters"]["channels"] = f"0-{n * n - 1}"
        layer["inputs"]["channels"] = f"0-{n - 1}"
        layer["outputs"]["channels"] = f"0-{n - 1}"
    return d


def truth_twin(config, layer: str, scene: MicroringBank):
    """The twin with the scene's hidden values (tests only: the product never reads the truth)."""
    twin = KINDS["microring_bank"].make_twin(config, layer)
    t, s = scene.truth, scene.spec
    rows, cols = twin._rows.numpy(), twin._cols.numpy()
    with torch.no_grad():
        twin.offset.copy_(torch.as_tensor(t.offset_pm / s.hwhm_pm))
        twin.log_eff.copy_(torch.as_tensor(np.log(t.eff)))
        twin.crosstalk.copy_(torch.as_tensor(t.crosstalk[rows, cols]))
        twin.contrast.copy_(torch.as_tensor(t.contrast))
        twin.log_gain_out.copy_(torch.as_tensor(np.log(t.out_gain)))
        twin.log_gain_in.copy_(torch.as_tensor(np.log(t.line_gain)))
    return twin


def test_twin_with_hidden_truth_matches_the_noiseless_scene(tmp_path):
    config = parse_config(ring_station(tmp_path, n=8))
    scene = KINDS["microring_bank"].make_scene(config, "ring1", 3)
    twin = truth_twin(config, "ring1", scene)
    # every thermal coupling of the truth lies inside the twin's crosstalk pattern
    inside = np.zeros_like(scene.truth.crosstalk, dtype=bool)
    inside[twin._rows.numpy(), twin._cols.numpy()] = True
    assert np.all((scene.truth.crosstalk - np.eye(64))[~inside] == 0)
    rng = np.random.default_rng(0)
    for _ in range(3):
        u = rng.uniform(0, 1, 64)
        x = rng.uniform(0, 1, (16, 8))
        scene.set_heaters(config.layers["ring1"].v_max * np.sqrt(u))
        mv = 2 * 2.0 / np.pi * np.arcsin(np.sqrt(x))
        scene.virtual_time_s = 0.0  # no slow drift between the measurements (the twin has none)
        y = scene.output_powers(mv, noisy=False) / scene.spec.line_power_w
        x_true = np.sin(0.5 * np.pi * mv / scene.truth.modulator_vpi) ** 2  # the modulators' own error
        y_twin = twin(torch.as_tensor(x_true), torch.as_tensor(u)).numpy()
        np.testing.assert_allclose(y_twin, y, atol=1e-12)
    # and a nominal twin does not (the scene really has fabrication errors)
    nominal = KINDS["microring_bank"].make_twin(config, "ring1")
    assert np.abs(nominal(torch.as_tensor(x_true), torch.as_tensor(u)).numpy() - y).max() > 0.1


def test_balanced_photodetector_weight_in_minus_one_to_one(tmp_path):
    d = np.linspace(-50, 50, 2001)
    for c in (1.5, 1.85, 2.0):
        w = balanced_weight(d, np.full_like(d, c))
        assert w.min() >= -1 and w.max() <= 1
        assert w.max() == pytest.approx(c - 1)  # on resonance: drop peak minus through dip
        assert w[0] == pytest.approx(-1, abs=1e-3)  # far off resonance: everything goes through
    bank = MicroringBank(MicroringSpec(n_inputs=4, n_outputs=4), seed=5)
    rng = np.random.default_rng(1)
    for _ in range(20):
        bank.set_heaters(rng.uniform(0, 3.0, 16))
        w = bank.weights()
        assert w.shape == (4, 4) and w.min() >= -1 and w.max() <= 1
    # one wavelength at full power: each balanced output is its ring's weight (times detector gains)
    config = parse_config(ring_station(tmp_path))
    twin = KINDS["microring_bank"].make_twin(config, "ring1")
    u = torch.rand(50, 16, dtype=torch.float64)
    w = twin.weights(u)
    assert w.min() >= -1 and w.max() <= 1
    y = twin(torch.eye(4, dtype=torch.float64).expand(50, 4, 4), u)
    torch.testing.assert_close(y, w.transpose(-1, -2))


def test_calibration_fits_the_bank_through_the_station(tmp_path):
    config = parse_config(ring_station(tmp_path))
    with Station(config, layers=["ring1"]) as st:
        hw = st.layer()
        assert hw.n_controls == 16 and hw.modes == 4
        data = measure(hw, settings=48, inputs_per_setting=12, seed=0)
    train, held = data.split(0.25, seed=0)
    twin = KINDS["microring_bank"].make_twin(config, "ring1")
    nominal = residual_summary(twin, held)["rmse"]
    fit_microring(twin, train, adam_steps=250, lbfgs_steps=80)
    fitted = residual_summary(twin, held)["rmse"]
    assert fitted < 0.2 * nominal
    assert fitted < 0.05  # a few times the detector noise (about 0.004 of a line power here)


def test_config_errors_name_the_key(tmp_path):
    d = ring_station(tmp_path)
    d["layers"]["ring1"]["heaters"]["channels"] = "0-9"
    with pytest.raises(ConfigError, match=r"layers.ring1.heaters.channels: a 4x4 bank has 16 rings"):
        parse_config(d)
    d = ring_station(tmp_path)
    d["layers"]["ring1"]["v_max"] = 5.0
    with pytest.raises(ConfigError, match=r"layers.ring1.v_max"):
        parse_config(d)


def test_cli_train_microring_one_epoch_online_through_the_station(tmp_path, monkeypatch):
    monkeypatch.setattr(cli.console, "_width", 250)
    path = write_yaml(tmp_path / "ring.yaml", ring_station(tmp_path))
    out = tmp_path / "m.pt"
    result = runner.invoke(cli.app, ["train", "--kind", "microring", "--station", str(path), "--mode", "online",
                                     "--optimizer", "sam", "--perturbed-pass", "hardware", "--epochs", "1", "--batch-size", "256", "--nominal",
                                     "--out", str(out)])
    assert result.exit_code == 0, result.output
    blob = torch.load(out, weights_only=False)
    assert blob["meta"]["kind"] == "microring_bank" and blob["meta"]["layer_name"] == "ring1"
    assert blob["meta"]["hardware_batches"] >= 2 * 6  # SAM: two hardware forwards per step
    assert blob["state_dict"]["physical.u"].shape == (16,)
    result = runner.invoke(cli.app, ["evaluate", str(out), "--kind", "microring", "--station", str(path)])
    assert result.exit_code == 0, result.output
    assert "vchip-1" in result.output and "vchip-2" in result.output


def test_cli_unknown_kind_is_a_clear_error(tmp_path):
    path = write_yaml(tmp_path / "ring.yaml", ring_station(tmp_path))
    result = runner.invoke(cli.app, ["train", "--kind", "mesh", "--station", str(path), "--epochs", "0", "--nominal"])
    assert result.exit_code == 2
    assert "--kind mesh: the station has no such layer" in result.output


def test_the_repository_station_file_loads():
    config = load_config(REPO / "stations" / "microring.yaml")
    assert [KINDS[layer.kind].name for layer in config.layers.values()] == ["microring", "microring"]
