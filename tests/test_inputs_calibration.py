"""Issue 14, item 3: calibration files are validated on load, never trusted blindly.

Finite values, shapes for this layer, known parameters only, device identity and network kind (another
chip's or kind's calibration refused unless --force, saying whose it is), "latest" never picks another
kind's file, kinds never share a folder, the file named in every message; a NaN loss stops training at
once and resume is suggested only where it can succeed.
"""
from __future__ import annotations

import json
import math

import pytest
import torch
from typer.testing import CliRunner

from conftest import minimal_config, write_yaml
from labsat.calibration import (CalibrationError, check_calibration, latest_calibration, load_calibration,
                                save_calibration)
from labsat.kinds import calibration_for
from labsat.config import parse_config
from labsat.guards import NonFiniteLossError, check_finite_loss, resumable
from labsat.kinds import kind_of


@pytest.fixture
def cfg(tmp_path):
    d = minimal_config()
    d["station"]["calibration_dir"] = str(tmp_path / "cal")
    d["station"]["runs_dir"] = str(tmp_path / "runs")
    return parse_config(d)


def _twin(cfg):
    return kind_of(cfg, "mesh").make_twin(cfg, "mesh")


def _save(tmp_path, state, device="vchip-1", kind="mesh", **extra):
    return save_calibration(tmp_path / "cal", device, state, {"note": "test", **extra}, kind=kind)


def _nominal(cfg):
    return _twin(cfg).fitted_state()


def test_good_calibration_loads_into_the_twin(tmp_path, cfg):
    state = _nominal(cfg)
    state["offset"] = [0.1] * 12
    path = _save(tmp_path, state)
    record, name = calibration_for(cfg, "mesh", "vchip-1")
    assert name == str(path) and record["kind"] == "mesh"
    twin = _twin(cfg)
    check_calibration(record, twin, device="vchip-1", kind="mesh")
    assert torch.allclose(twin.offset, torch.full((12,), 0.1, dtype=twin.offset.dtype))


@pytest.mark.parametrize("label, change, message", [
    ("all NaN", lambda s: s.update(offset=[math.nan] * 12), "twin.offset: 12 of 12 values are not finite"),
    ("one inf", lambda s: s["coupler_error"][2].__setitem__(1, math.inf), "twin.coupler_error: 1 of 12 values"),
    ("unknown parameter", lambda s: s.update(phase_bias=[0.0]), "twin.phase_bias is not a parameter of this twin"),
    ("missing parameter", lambda s: s.pop("log_eff"), "calibration is missing twin parameter 'log_eff'"),
    ("wrong shape", lambda s: s.update(offset=[0.0] * 3), "twin.offset has shape (3,), this layer's twin needs (12,)"),
    ("string value", lambda s: s.update(log_gain="abc"), "twin.log_gain must be numbers of shape (4,)"),
    ("ragged", lambda s: s.update(coupler_error=[[0, 0], [0]]), "twin.coupler_error must be numbers"),
    ("not a mapping", lambda s: s.clear() or s.update(x=1), "twin.x is not a parameter"),
])
def test_bad_twin_values_refused_naming_the_file(tmp_path, cfg, label, change, message):
    state = _nominal(cfg)
    change(state)
    path = _save(tmp_path, json.loads(json.dumps(state, allow_nan=True)))
    with pytest.raises(CalibrationError) as info:
        calibration_for(cfg, "mesh", "vchip-1")
    assert str(info.value).startswith(f"{path}: ") and message in str(info.value), str(info.value)


def test_another_chips_calibration_is_refused_unless_forced(tmp_path, cfg):
    path = _save(tmp_path, _nominal(cfg), device="vchip-2")
    with pytest.raises(CalibrationError) as info:
        calibration_for(cfg, "mesh", "vchip-1", calibration=path)
    msg = str(info.value)
    assert str(path) in msg and "another device (device 'vchip-2', mesh, made " in msg and "--force" in msg
    record, _ = calibration_for(cfg, "mesh", "vchip-1", calibration=path, force=True)
    assert record["device"] == "vchip-2"


def test_another_kinds_calibration_is_refused_saying_whose(tmp_path, cfg):
    path = _save(tmp_path, {"rotation": 0.0}, kind="freespace")
    with pytest.raises(CalibrationError) as info:
        calibration_for(cfg, "mesh", "vchip-1", calibration=path)
    assert str(info.value).startswith(f"{path}: a freespace calibration (device 'vchip-1', freespace")
    with pytest.raises(CalibrationError, match="is not a parameter of this twin"):  # --force cannot make it fit
        calibration_for(cfg, "mesh", "vchip-1", calibration=path, force=True)


def test_kinds_never_share_a_folder_and_latest_never_picks_another_kind(tmp_path, cfg):
    mesh = _save(tmp_path, _nominal(cfg), kind="mesh")
    fs = _save(tmp_path, {"rotation": 0.0}, kind="freespace")  # newer, same device name
    assert mesh.parent != fs.parent and mesh.parent.name == fs.parent.name == "vchip-1"
    assert latest_calibration(tmp_path / "cal", "vchip-1", "mesh") == mesh
    assert latest_calibration(tmp_path / "cal", "vchip-1", "freespace") == fs
    with pytest.raises(CalibrationError, match=r"no calibration for device 'vchip-1' \(kind microring\)"):
        latest_calibration(tmp_path / "cal", "vchip-1", "microring")


def test_old_layout_files_are_picked_only_when_they_record_this_kind(tmp_path, cfg):
    legacy_mesh = save_calibration(tmp_path / "cal", "vchip-1", _nominal(cfg), {"kind": "mesh"})
    save_calibration(tmp_path / "cal", "vchip-1", {"rotation": 0.0}, {"kind": "freespace"})  # newer
    save_calibration(tmp_path / "cal", "vchip-1", {"rotation": 0.0}, {})  # newest, no kind recorded
    assert latest_calibration(tmp_path / "cal", "vchip-1", "mesh") == legacy_mesh
    with pytest.raises(CalibrationError) as info:
        latest_calibration(tmp_path / "cal", "vchip-1", "pulse")
    assert "holds 3 calibration(s) of another or an unrecorded kind: not used" in str(info.value)


@pytest.mark.parametrize("version, message", [
    ("1", "schema_version must be an integer (this labsat reads 1), got the string '1'"),
    (1.5, "got the number 1.5"), (True, "got the boolean true"), (None, "got the null null"),
    (2, "schema_version 2 is not supported (this labsat reads 1)"),
])
def test_schema_version_errors_read_sensibly(tmp_path, version, message):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"schema_version": version, "device": "vchip-1", "twin": {}}))
    with pytest.raises(CalibrationError) as info:
        load_calibration(path)
    assert str(info.value) == f"{path}: {message}" or message in str(info.value)
    assert str(info.value).startswith(str(path))


def test_device_of_wrong_type_is_named(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"schema_version": 1, "device": 7, "twin": {}}))
    with pytest.raises(CalibrationError, match=r"c\.json: 'device' must be a string, got the integer 7"):
        load_calibration(path)


def test_non_finite_loss_stops_at_once_and_is_not_resumable():
    check_finite_loss(torch.tensor(0.7), 1, 1, 10)
    with pytest.raises(NonFiniteLossError, match="the loss is nan at epoch 2, step 3 of 10"):
        check_finite_loss(torch.tensor(float("nan")), 2, 3, 10)
    assert not resumable(NonFiniteLossError("x")) and not resumable(CalibrationError("x"))
    from labsat.drivers.base import InstrumentError

    assert resumable(InstrumentError("detectors: no reply (timeout)")) and resumable(OSError(28, "full"))


def test_training_stops_on_the_first_nan_loss(cfg):
    """A twin that yields NaN (here: all-NaN parameters forced past the check) stops within the first step."""
    from labsat.data import load_digits
    from labsat.train import TrainConfig, model_for, train

    state = _nominal(cfg)
    state["offset"] = [math.nan] * 12
    data = load_digits(4, seed=0)
    model = model_for(cfg, "mesh", data.n_classes, seed=0, twin_state=state)
    steps = []
    with pytest.raises(NonFiniteLossError, match="epoch 1, step 1 of"):
        train(model, data, TrainConfig(mode="offline", optimizer="adam", epochs=3), on_step=lambda s, n: steps.append(s),
              checkpoint=lambda rec, st: pytest.fail("a NaN epoch was checkpointed"))
    assert steps == []


def test_cli_train_refuses_nan_calibration_naming_the_file_before_any_run(tmp_path, cfg, monkeypatch):
    """The issue's case: all-NaN twin parameters used to train with `loss nan`, then crash (IntegrityError)."""
    from labsat import cli

    monkeypatch.setattr(cli.console, "width", 10_000)
    d = minimal_config()
    d["station"]["calibration_dir"] = str(tmp_path / "cal")
    d["station"]["runs_dir"] = str(tmp_path / "runs")
    station = write_yaml(tmp_path / "station.yaml", d)
    state = _nominal(cfg)
    state["offset"] = [math.nan] * 12
    path = _save(tmp_path, state)
    result = CliRunner().invoke(cli.app, ["train", "--station", str(station), "--epochs", "1"])
    out = " ".join(result.output.split())
    assert result.exit_code == 2, result.output
    assert f"error: {path}: twin.offset: 12 of 12 values are not finite" in out
    assert "--resume" not in out and "Traceback" not in result.output
    from labsat.runs import RunDB

    db_file = tmp_path / "runs" / "labsat.sqlite"
    if db_file.exists():
        with RunDB.open(db_file) as db:
            assert [r for r in db.runs("train")] == []


def test_failed_run_suggests_resume_only_when_it_can_succeed(tmp_path):
    from labsat import runs
    from labsat.drivers.base import InstrumentError

    notes = []
    with runs.RunDB.open(tmp_path / "r.sqlite") as db:
        for exc in (NonFiniteLossError("training stopped: the loss is nan"), InstrumentError("detectors: timeout")):
            run = db.start_run("train", {"train": {}})
            with pytest.raises(type(exc)):
                with runs.recording(db, run, note=notes.append):
                    raise exc
    assert "resuming would fail the same way" in notes[0] and "--resume" not in notes[0]
    assert f"continue with `labsat train --resume {run}`" in notes[1]


def test_cli_train_force_uses_another_chips_calibration(tmp_path, cfg, monkeypatch):
    from labsat import cli

    monkeypatch.setattr(cli.console, "width", 10_000)
    d = minimal_config()
    d["station"]["calibration_dir"] = str(tmp_path / "cal")
    d["station"]["runs_dir"] = str(tmp_path / "runs")
    station = write_yaml(tmp_path / "station.yaml", d)
    other = _save(tmp_path, _nominal(cfg), device="vchip-2")
    args = ["train", "--station", str(station), "--epochs", "1", "--calibration", str(other)]
    refused = CliRunner().invoke(cli.app, args)
    assert refused.exit_code == 2 and "a calibration of another device (device 'vchip-2'" in refused.output
    forced = CliRunner().invoke(cli.app, args + ["--force", "--out", str(tmp_path / "m.pt")])
    assert forced.exit_code == 0, forced.output
    assert (tmp_path / "m.pt").is_file()
    from labsat import workflows
    from labsat.runs import RunDB

    with RunDB.open(tmp_path / "runs" / "labsat.sqlite") as db:
        (run,) = db.runs("train")  # the refused attempt recorded no run
    assert run["status"] == "completed" and run["config"]["force"] is True
    assert workflows.resume_request(run["config"])[0].force  # `--resume` keeps --force
