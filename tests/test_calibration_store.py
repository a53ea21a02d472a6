"""Calibration on the virtual lab: measure, fit, save, reload; the fit against the hidden truth; bad files."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from conftest import minimal_config
from labsat.calibration import (CalibrationError, fit_twin, latest_calibration, load_calibration, measure,
                                rmse, save_calibration)
from labsat.calibration.store import SCHEMA_VERSION, load_measurements
from labsat.config import parse_config
from labsat.kinds.mesh import twin_for
from labsat.twins.mzi import FIT_PARAMETERS
from test_physical import twin_from_truth


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory):
    """One small calibration of a 4-mode virtual chip (24 heater settings x 16 inputs), saved."""
    from labsat.station import Station

    cfg = parse_config(minimal_config())
    folder = tmp_path_factory.mktemp("calibration")
    with Station(cfg) as st:
        hw = st.mesh()
        data = measure(hw, settings=24, inputs_per_setting=16, seed=0)
        layer = cfg.layers["mesh"]
        train_set, held = data.split(0.25, seed=0)
        twin = twin_for(layer, 600.0)
        history = fit_twin(twin, train_set, adam_steps=120, lbfgs_steps=40)
        truth = twin_from_truth(st.lab.chip, layer.v_max)
        meta = {"instruments": st.identities(), "fit_final_mse": history[-1]}
        path = save_calibration(folder, st.device_id(), twin.fitted_state(), meta, data)
        return dict(folder=folder, device=st.device_id(), path=path, twin=twin, truth=truth, data=data,
                    held=held, layer=layer, history=history)


def test_save_reload_predicts_the_same(calibrated):
    record = load_calibration(calibrated["path"])
    assert record["schema_version"] == SCHEMA_VERSION and record["device"] == "vchip-1"
    assert "Q16iv-SIM0001" in record["instruments"]["heaters"]
    reloaded = twin_for(calibrated["layer"], 600.0)
    reloaded.load_fitted_state(record["twin"])
    held = calibrated["held"]
    x, u = torch.as_tensor(held.x), torch.as_tensor(held.u)
    torch.testing.assert_close(reloaded(x, u), calibrated["twin"](x, u), rtol=0, atol=0)
    # the measurements travel with the fit
    data = load_measurements(record)
    for key in ("u", "x", "p"):
        np.testing.assert_array_equal(getattr(data, key), getattr(calibrated["data"], key))


def test_fit_is_closer_to_truth_than_nominal(calibrated):
    nominal = twin_for(calibrated["layer"], 600.0)
    fitted, truth = calibrated["twin"], calibrated["truth"]
    for name in FIT_PARAMETERS:
        t = getattr(truth, name)
        err_nominal = float((getattr(nominal, name) - t).norm())
        err_fitted = float((getattr(fitted, name) - t).norm())
        assert err_fitted < 0.5 * err_nominal, (name, err_fitted, err_nominal)
    held = calibrated["held"]
    assert rmse(fitted, held) < 0.2 * rmse(nominal, held)
    # the fit is about as good as the truth itself can be (noise and modulator errors remain)
    assert rmse(fitted, held) < 2.0 * rmse(truth, held)
    assert calibrated["history"][-1] < 0.1 * calibrated["history"][0]


def test_latest_calibration_picks_the_newest(calibrated, tmp_path):
    assert latest_calibration(calibrated["folder"], calibrated["device"]) == calibrated["path"]
    first = save_calibration(tmp_path, "dev", {"a": [1.0]}, {})
    second = save_calibration(tmp_path, "dev", {"a": [2.0]}, {})
    assert first != second
    assert latest_calibration(tmp_path, "dev") == second
    assert load_calibration(second)["twin"] == {"a": [2.0]}
    assert not list(tmp_path.glob("dev/*.tmp"))  # written atomically


def test_no_calibration_yet(tmp_path):
    with pytest.raises(CalibrationError, match="no calibration for device 'vchip-9'.*labsat calibrate"):
        latest_calibration(tmp_path, "vchip-9")


@pytest.mark.parametrize("name", ["../escape", "a b", "", "x/y"])
def test_unsafe_device_name(tmp_path, name):
    with pytest.raises(CalibrationError, match="device name"):
        save_calibration(tmp_path, name, {}, {})


def _good_record() -> dict:
    return {"schema_version": SCHEMA_VERSION, "device": "vchip-1", "created_utc": "x",
            "twin": {k: [0.0] for k in FIT_PARAMETERS}}


@pytest.mark.parametrize("content, pattern", [
    ('{"schema_version": 1, "device": "x",', r"not valid JSON \(line 1\)"),
    ("\x00\x01garbage", "not valid JSON"),
    ("[1, 2, 3]", "expected a JSON object"),
    (json.dumps({**_good_record(), "schema_version": 99}), "schema_version 99 is not supported"),
    (json.dumps({k: v for k, v in _good_record().items() if k != "twin"}), "missing key 'twin'"),
    (json.dumps({k: v for k, v in _good_record().items() if k != "schema_version"}),
     "missing key 'schema_version'"),
    (json.dumps({**_good_record(), "twin": [1, 2]}), "'twin' must be a mapping"),
])
def test_corrupt_or_foreign_file(tmp_path, content, pattern):
    path = tmp_path / "cal.json"
    path.write_text(content)
    with pytest.raises(CalibrationError, match=pattern) as info:
        load_calibration(path)
    assert str(path) in str(info.value)


def test_missing_file(tmp_path):
    with pytest.raises(CalibrationError, match="cannot read"):
        load_calibration(tmp_path / "nope.json")


def test_calibration_of_another_mesh_size_is_refused(calibrated):
    """A 4-mode calibration loaded into an 8-mode twin: a clear error, not silent broadcasting."""
    record = load_calibration(calibrated["path"])
    big = twin_for(parse_config(_eight_mode()).layers["mesh"], 600.0)
    with pytest.raises(ValueError, match="twin parameter 'offset' has shape"):
        big.load_fitted_state(record["twin"])
    partial = {k: v for k, v in record["twin"].items() if k != "crosstalk"}
    with pytest.raises(KeyError, match="missing twin parameter 'crosstalk'"):
        twin_for(calibrated["layer"], 600.0).load_fitted_state(partial)


def _eight_mode() -> dict:
    d = minimal_config()
    d["instruments"]["heaters"]["channels"] = 64
    d["instruments"]["heaters"]["limits"]["total_power_max_w"] = 3.5  # 56 heaters at 6 V: 3.36 W
    d["instruments"]["modulator"]["channels"] = 8
    d["instruments"]["detectors"]["channels"] = 8
    mesh = d["layers"]["mesh"]
    mesh.update(modes=8)
    mesh["heaters"]["channels"] = "0-55"
    mesh["inputs"]["channels"] = "0-7"
    mesh["outputs"]["channels"] = "0-7"
    return d


@pytest.mark.parametrize("fraction, pattern", [(0.0, "between 0 and 1"), (1.0, "between 0 and 1"),
                                               (1.5, "between 0 and 1"), (0.9, "leaves none to fit")])
def test_bad_holdout_refused(fraction, pattern):
    """A hold-out that leaves nothing to fit would save a calibration of NaNs: refused instead."""
    from labsat.calibration import Measurements

    data = Measurements(np.zeros((3, 2)), np.zeros((3, 1, 2)), np.zeros((3, 1, 2)))
    with pytest.raises(ValueError, match=pattern):
        data.split(fraction)
    train, held = data.split(0.3)
    assert len(train) == 2 and len(held) == 1


def test_cli_bad_holdout_exits_2(tmp_path):
    from typer.testing import CliRunner

    from conftest import write_yaml
    from labsat import cli

    d = minimal_config()
    d["station"]["calibration_dir"] = str(tmp_path / "cal")
    d["station"]["runs_dir"] = str(tmp_path / "runs")
    path = write_yaml(tmp_path / "s.yaml", d)
    result = CliRunner().invoke(cli.app, ["calibrate", "--station", str(path), "--settings", "4",
                                          "--inputs", "2", "--holdout", "1.0"])
    assert result.exit_code == 2, result.output
    assert "holdout fraction must be between 0 and 1" in result.output
    assert not list((tmp_path / "cal").glob("*/*.json"))  # nothing saved
