"""`labsat calibrate` on a mesh above 8 modes runs the benchmarks' banded calibration
(``calibration.progressive.calibrate_progressive``): one function for the CLI, the GUI, the benchmarks and the
paper's calibrated chips, with the same plan (step counts, bands), the start when asked, and the held-out check
(issue 12: the two entry points had drifted apart: the CLI fitted with ``fit_twin``'s step counts)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from labsat import runs, workflows
from labsat.calibration.progressive import ProgressivePlan, calibrate_progressive
from labsat.kinds import kind_of
from labsat.station import Station

ROOT = Path(__file__).resolve().parents[1]
BUDGET = dict(settings=12, inputs=16, adam_steps=20, lbfgs_steps=5)  # a CI-sized budget (3 settings a band)


@pytest.fixture
def station16(tmp_path) -> Path:
    """stations/paper-mzi-16.yaml (block DAC, 16 modes) on labsat's error model, writing under tmp_path."""
    d = yaml.safe_load((ROOT / "stations" / "paper-mzi-16.yaml").read_text())
    d["station"].update(calibration_dir=str(tmp_path / "cal"), runs_dir=str(tmp_path / "runs"))
    d["station"]["sim"]["error_model"] = "labsat"
    path = tmp_path / "station.yaml"
    path.write_text(yaml.safe_dump(d))
    return path


def test_the_workflow_fits_what_calibrate_progressive_fits(station16):
    with Station(station16) as st:
        result = workflows.calibrate(st, workflows.CalibrationParams(**BUDGET))
    with Station(station16) as st:  # the same chip and noise stream, measured again
        twin = kind_of(st.config, "mesh").make_twin(st.config, "mesh")
        plan = ProgressivePlan.for_budget(12, 16, adam_steps=20, lbfgs_steps=5)
        direct = calibrate_progressive(st.layer("mesh"), twin, plan, seed=0, holdout=0.2)
    np.testing.assert_array_equal(result.data.p, direct.data.p)
    for key, value in twin.fitted_state().items():
        np.testing.assert_allclose(result.twin_state[key], value, rtol=0, atol=1e-12, err_msg=key)
    assert len(direct.held_out) == 2 and result.holdout_measured.shape == (2, 16, 16)  # 20 % of 12 settings
    meta = result.meta
    assert meta["plan"]["u_max"] == [0.12, 0.25, 0.5, 1.0] and meta["plan"]["refine_adam_steps"] == 20
    assert [b["u_max"] for b in meta["bands"]] == meta["plan"]["u_max"]  # the held-out RMSE after every band
    assert meta["bands"][-1]["heldout_rmse"] == pytest.approx(meta["residuals"]["fitted_holdout"]["rmse"])
    assert meta["residuals"]["fitted_holdout"]["rmse"] < meta["residuals"]["nominal_holdout"]["rmse"]
    assert "start_readings" not in meta and not meta["plan"]["self_configure"]


def test_the_self_configuring_start_runs_through_the_workflow_when_asked(station16):
    events = []
    with Station(station16) as st:
        result = workflows.calibrate(st, workflows.CalibrationParams(**BUDGET, self_configure=True),
                                     workflows.Hooks(progress=lambda event, payload: events.append((event, payload))))
    starts = [p for e, p in events if e == "start"]
    assert starts and starts[-1][0] == starts[-1][1]  # the start's columns, counted to the end
    assert events.index(("start", starts[-1])) < [e for e, _ in events].index("measure")  # before the bands
    assert result.meta["plan"]["self_configure"] and result.meta["start_readings"] > 200 * 16 * 16
    with runs.RunDB(Path(st.config.resolve(st.config.station.runs_dir)) / runs.DB_NAME) as db:
        assert db.run(result.run)["config"]["self_configure"] is True
