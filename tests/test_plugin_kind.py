"""A lab adds its own network kind without editing labsat: coupled pendula (tests/pendula_kind.py), named
in the station file as ``kind: "pendula_kind:KIND"``, calibrated (learned twin) and trained online with
physics-aware SAT through the same CLI and workflows as the built-in kinds."""
from __future__ import annotations

import pytest
import torch
from typer.testing import CliRunner

from conftest import write_yaml
from labsat import runs
from labsat.config import parse_config

runner = CliRunner()


def pendula_station(tmp_path, **layer) -> dict:
    return {"station": {"backend": "sim", "calibration_dir": str(tmp_path / "cal"), "runs_dir": str(tmp_path / "runs"),
                        "sim": {"chip_seed": 1}},
            "instruments": {},
            "layers": {"pendula": {"kind": "pendula_kind:KIND", "n_inputs": 6, "n_controls": 11, "n_outputs": 6,
                                   "hidden": 64, **layer}}}


@pytest.fixture(autouse=True)
def wide_console(monkeypatch):
    from labsat import cli

    monkeypatch.setattr(cli.console, "_width", 250)


@pytest.fixture(autouse=True)
def kinds_restored():
    """A kind these tests register (from a station file or an entry point) does not outlive the test: later
    tests (the CLI's help lists every registered kind) see only the built-in ones, in any test order."""
    from labsat.kinds import KINDS

    before = dict(KINDS)
    yield
    KINDS.clear()
    KINDS.update(before)


def test_the_station_file_names_a_kind_from_outside(tmp_path):
    from labsat.kinds import kind_of, layer_for_kind

    cfg = parse_config(pendula_station(tmp_path))
    kind = kind_of(cfg, "pendula")
    assert kind.name == "pendula" and kind.config_kind == "pendula_kind:KIND"
    assert layer_for_kind(cfg, "pendula") == "pendula"
    twin = kind.make_twin(cfg, "pendula")
    assert (twin.n_inputs, twin.n_controls, twin.n_outputs) == (6, 11, 6)


def test_bad_kind_settings_and_names_are_one_clear_line(tmp_path):
    from labsat.kinds import KindError
    from labsat.station import Station

    with pytest.raises(KindError, match=r"layers.pendula.n_inputs: Input should be greater than or equal to 1"):
        Station(parse_config(pendula_station(tmp_path, n_inputs=0)))
    with pytest.raises(KindError, match=r"layers.pendula.kind: cannot load kind 'no_such_module:KIND'"):
        Station(parse_config(pendula_station(tmp_path, kind="no_such_module:KIND")))
    path = write_yaml(tmp_path / "bad.yaml", pendula_station(tmp_path, kind="pendula_kind:system"))
    result = runner.invoke(__import__("labsat.cli", fromlist=["app"]).app, ["calibrate", "-s", str(path)])
    assert result.exit_code == 2 and "is a function, not a labsat.kinds.Kind" in result.output


def test_calibrate_and_train_online_with_sat_through_the_cli(tmp_path):
    from labsat.cli import app

    path = write_yaml(tmp_path / "pendula.yaml", pendula_station(tmp_path))
    result = runner.invoke(app, ["calibrate", "-s", str(path), "--settings", "48", "--inputs", "32"])
    assert result.exit_code == 0, result.output
    with runs.RunDB(tmp_path / "runs" / runs.DB_NAME) as db:
        (cal,) = db.runs("calibrate")
    res = cal["result"]["residuals"]
    # the learned twin explains the pendula far better than the untrained one
    assert res["fitted_holdout"]["rmse"] < 0.5 * res["nominal_holdout"]["rmse"], res

    out = tmp_path / "pendula-sat.pt"
    result = runner.invoke(app, ["train", "-s", str(path), "--mode", "online", "--optimizer", "sam", "--epochs", "3",
                                 "--out", str(out)])
    assert result.exit_code == 0, result.output
    blob = torch.load(out, weights_only=False)
    meta = blob["meta"]
    assert meta["kind"] == "pendula_kind:KIND" and meta["calibration"] == cal["calibration"]
    epochs = meta["history"]["epochs"]
    assert epochs[-1]["loss"] < epochs[0]["loss"]
    assert meta["hardware_batches"] == sum(e["hardware_batches"] for e in epochs) > 0
    with runs.RunDB(tmp_path / "runs" / runs.DB_NAME) as db:
        (train,) = db.runs("train")
        assert train["status"] == "completed" and train["config"]["kind"] == "pendula"
        steps = db.epochs(train["id"])[0]
    # online SAT does one hardware forward per step by default (the perturbed pass runs on the twin)
    from labsat.kinds import kind_of
    from labsat.workflows.training import dataset_for

    cfg = parse_config(pendula_station(tmp_path))
    n_train = len(dataset_for(kind_of(cfg, "pendula").make_twin(cfg, "pendula")).x_train)
    assert steps["hardware_batches"] == -(-n_train // 64)

    result = runner.invoke(app, ["evaluate", str(out), "-s", str(path)])
    assert result.exit_code == 0, result.output
    assert "vchip-1" in result.output and "vchip-2" in result.output


def test_a_kind_from_an_installed_entry_point(tmp_path, monkeypatch):
    """A package that declares ``[project.entry-points."labsat.kinds"] pendula = "pendula_kind:KIND"``."""
    import importlib.metadata as md

    from labsat.kinds import KINDS, kind_of

    real = md.entry_points
    ep = md.EntryPoint(name="pendula-ep", value="pendula_kind:KIND", group="labsat.kinds")

    def entry_points(**select):
        if select.get("group") == "labsat.kinds":
            return md.EntryPoints([ep])
        return real(**select)

    monkeypatch.setattr(md, "entry_points", entry_points)
    monkeypatch.delitem(KINDS, "pendula-ep", raising=False)
    cfg = parse_config(pendula_station(tmp_path, kind="pendula-ep"))
    assert kind_of(cfg, "pendula").name == "pendula"
    KINDS.pop("pendula-ep", None)
    with pytest.raises(Exception, match="does not match any of the expected tags"):
        parse_config(pendula_station(tmp_path, kind="pendula-typo"))
