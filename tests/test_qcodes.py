"""QCoDeS interface: drivers as QCoDeS instruments on the virtual lab, a dond sweep into a QCoDeS
database read back, calibration sweeps and runs exported as datasets and netCDF."""
from __future__ import annotations

import json
import re

import numpy as np
import pytest
import yaml

qcodes = pytest.importorskip("qcodes")
from qcodes.dataset import LinSweep, dond, load_by_id, load_or_create_experiment  # noqa: E402

from labsat.config import parse_config  # noqa: E402
from labsat.qcodes import QcodesStation  # noqa: E402
from labsat.qcodes.datasets import export_calibration, export_run, to_netcdf, use_database  # noqa: E402

STATION = "instruments.yaml"


@pytest.fixture
def qdb(tmp_path):
    return use_database(tmp_path / "experiments.db")


def _bench_config():
    """The mesh station plus a standalone SMU (wired to heater 3) and power meter (output port 2)."""
    data = yaml.safe_load(open(STATION))
    data["instruments"]["smu"] = dict(kind="smu", limits=dict(v_max=5.0, i_max_ma=10, resistance_ohm=600,
                                                               power_max_mw=30), ramp=dict(max_step_v=0.5),
                                      sim_heater=3)
    data["instruments"]["pm"] = dict(kind="power_meter", wavelength_nm=1550, sim_port=2)
    return parse_config(data)


def test_parameters_carry_the_driver_limits_and_ramp():
    with QcodesStation(STATION) as qs:
        heaters = qs["heaters"]
        v = heaters.ch5.voltage
        # instruments.yaml: v_max 6.5 V, 12 mA at 600 ohm (7.2 V), 75 mW (6.7 V): 6.5 V is the tightest
        assert (v.vals._min_value, v.vals._max_value) == (0.0, 6.5)
        assert v.step == 1.0 and v.inter_delay == 0.0 and v.unit == "V"
        writes = heaters.driver.writes
        with pytest.raises(ValueError, match="must be between 0.0 and 6.5"):
            v(6.6)
        assert heaters.driver.writes == writes  # refused before anything was sent
        v(2.5)
        assert v() == pytest.approx(2.5, abs=1e-3)
        assert qs.labsat.lab.chip.heater_v[5] == pytest.approx(2.5, abs=1e-3)
        assert heaters.ch5.power() == pytest.approx(2.5**2 / 600, rel=1e-3)
        assert heaters.get_idn()["model"]
        lab = qs.labsat.lab
    assert np.all(lab.chip.heater_v == 0.0)  # the labsat station's safe state ran on exit
    assert "heaters" not in qcodes.Instrument._all_instruments  # deregistered from QCoDeS


def test_smu_and_power_meter_as_qcodes_instruments():
    with QcodesStation(_bench_config()) as qs:
        smu, pm = qs["smu"], qs["pm"]
        # 30 mW at 600 ohm caps the voltage at 4.24 V, below v_max 5 V
        assert smu.voltage.vals._max_value == pytest.approx(np.sqrt(0.030 * 600))
        assert smu.voltage.step == 0.5
        with pytest.raises(ValueError):
            pm.wavelength(3000.0)  # outside the sensor's range
        with pytest.raises(ValueError):
            pm.averages(0)
        pm.averages(16)
        assert pm.averages() == 16
        qs["modulator"].levels(np.full(8, 1.0))  # light into the chip
        smu.output(True)
        smu.voltage(2.0)
        assert smu.voltage() == pytest.approx(2.0)
        assert qs.labsat.lab.chip.heater_v[3] == pytest.approx(2.0)
        assert smu.current() == pytest.approx(2.0 / 600, rel=0.05)
        assert pm.power() > 0
        snap = qs.station.snapshot()
        assert snap["instruments"]["pm"]["parameters"]["averages"]["value"] == 16


def test_dond_sweep_on_the_virtual_lab_reads_back(qdb):
    with QcodesStation(STATION) as qs:
        st = qs.station
        st.modulator.levels(np.full(8, 1.0))  # light into every input
        exp = load_or_create_experiment("heater sweep", sample_name=qs.labsat.device_id())
        ds, *_ = dond(LinSweep(st.heaters.ch0.voltage, 0.0, 4.0, 9, 0.0), st.detectors.ch0.power,
                      st.detectors.ch1.power, st.detectors.powers, exp=exp, do_plot=False, show_progress=False)
        run_id = ds.run_id
    back = load_by_id(run_id)
    xr = back.to_xarray_dataset()
    assert list(xr.data_vars)[:2] == ["detectors_ch0_power", "detectors_ch1_power"]
    assert np.allclose(xr["heaters_ch0_voltage"].values, np.linspace(0, 4, 9))
    p0 = xr["detectors_ch0_power"].values
    assert p0.shape == (9,) and np.all(p0 >= 0) and np.ptp(p0) > 1e-6  # the heater moves the light
    assert "detectors_powers" in back.parameters
    snap = json.loads(back.get_metadata("snapshot"))
    heaters = snap["station"]["instruments"]["heaters"]
    assert heaters["submodules"]["ch0"]["parameters"]["voltage"]["vals"] == "<Numbers 0.0<=v<=6.5>"
    assert snap["station"]["metadata"]["labsat_station"]["instruments"]["heaters"]["limits"]["v_max"] == 6.5


def test_calibration_sweep_and_run_export_with_netcdf(qdb, tmp_path):
    pytest.importorskip("torch")
    from labsat.calibration.measure import measure
    from labsat.runs import RunDB

    with QcodesStation(STATION) as qs:
        data = measure(qs.labsat.layer(), settings=3, inputs_per_setting=4, seed=1)
        ds = export_calibration(data, device="vchip-1", station=qs.station)
    back = load_by_id(ds.run_id).to_xarray_dataset_dict()
    u = back["u"]["u"].values
    assert u.shape == data.u.shape and np.allclose(u, data.u)
    assert np.allclose(back["p"]["p"].values, data.p)
    assert load_by_id(ds.run_id).get_metadata("labsat_device") == "vchip-1"
    nc = to_netcdf(load_by_id(ds.run_id), tmp_path / "cal.nc")
    assert nc.exists()

    with RunDB(tmp_path / "labsat.sqlite") as rdb:
        run = rdb.start_run("train", {"train": {"mode": "offline", "epochs": 2}},
                            station_yaml=open(STATION).read(), device="vchip-1", git=False)
        rdb.record_epoch(run, dict(epoch=1, loss=0.9, train_accuracy=0.5, test_accuracy=0.45, seconds=1.0))
        rdb.record_epoch(run, dict(epoch=2, loss=0.6, train_accuracy=0.7, test_accuracy=0.66, seconds=1.0))
        rdb.set_parameters(run, "heater_v", [0.0, 1.5, 3.0])
        rdb.finish(run, "completed", result={"accuracy": 0.66})
        rds = export_run(rdb, run)
    loaded = load_by_id(rds.run_id)
    x = loaded.to_xarray_dataset_dict()
    assert np.allclose(x["loss"]["loss"].values, [0.9, 0.6])
    assert np.allclose(x["final_heater_v"]["final_heater_v"].values, [0.0, 1.5, 3.0])
    assert json.loads(loaded.get_metadata("labsat_result")) == {"accuracy": 0.66}
    snap = json.loads(loaded.get_metadata("snapshot"))
    assert snap["station"]["metadata"]["labsat_station"]["instruments"]["heaters"]["kind"] == "heater_dac"

    import xarray

    nc = to_netcdf(loaded, tmp_path / "run.nc")
    with xarray.open_dataset(nc) as d:
        assert np.allclose(d["loss"].values, [0.9, 0.6])
        assert d.attrs["labsat_kind"] == "train"


def test_every_kind_of_driver_is_wrapped():
    """Free-space (SLM, camera) and pulse (pulse shaper, spectrometer) stations as QCoDeS stations."""
    with QcodesStation("stations/freespace.yaml") as qs:
        cam = qs["camera"]
        with pytest.raises(ValueError):
            cam.exposure(2e6)  # above the camera's 1 s
        cam.exposure(250.0)
        assert cam.exposure() == pytest.approx(250.0)
        slm = qs["mask_slm"]
        with pytest.raises(ValueError):
            slm.frame(np.full((slm.driver.height, slm.driver.width), 256))  # 8-bit gray levels
        assert set(qs.station.snapshot()["instruments"]) == {"input_slm", "mask_slm", "camera"}
    with QcodesStation("stations/pulse.yaml") as qs:
        spec = qs["spectrometer"]
        spec.integration_time(0.002)
        assert spec.integration_time() == pytest.approx(0.002)
        assert spec.spectrum().shape == spec.wavelength().shape
        att = qs["shaper"].attenuation()
        assert att.shape == qs["shaper"].frequency().shape


def test_readme_script(tmp_path, monkeypatch):
    """The README's QCoDeS script, run as written: it writes a QCoDeS database and a netCDF file."""
    import re
    import shutil
    from pathlib import Path

    import xarray

    root = Path(__file__).resolve().parents[1]
    readme = (root / "README.md").read_text()
    section = readme.split("## QCoDeS", 1)[1]
    script = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    shutil.copy(root / "instruments.yaml", tmp_path / "instruments.yaml")
    monkeypatch.chdir(tmp_path)
    exec(compile(script, "README.md:QCoDeS", "exec"), {"__name__": "__readme__"})
    assert (tmp_path / "runs" / "qcodes.db").exists()
    with xarray.open_dataset(tmp_path / "runs" / "heater-sweep.nc") as d:
        assert d["detectors_ch0_power"].shape == (21,)
        assert "heaters" in d.attrs["snapshot"]


def test_runs_export_to_a_qcodes_database(tmp_path):
    """`labsat runs export RUN --format qcodes --out DB`: a run of the run database as a QCoDeS dataset."""
    from typer.testing import CliRunner

    from labsat.cli import app
    from labsat.runs import RunDB

    with RunDB(tmp_path / "labsat.sqlite") as rdb:
        run = rdb.start_run("train", {"train": {"mode": "offline"}}, device="vchip-1", git=False)
        rdb.record_epoch(run, dict(epoch=1, loss=0.8, train_accuracy=0.6))
        rdb.finish(run, "completed")
    out = tmp_path / "lab.db"
    result = CliRunner().invoke(app, ["runs", "export", str(run), "--format", "qcodes", "--out", str(out),
                                      "--db", str(tmp_path / "labsat.sqlite")])
    assert result.exit_code == 0, result.output
    assert "as QCoDeS dataset" in result.output
    use_database(out)
    ds = load_by_id(int(re.search(r"QCoDeS dataset (\d+)", result.output).group(1)))
    assert np.allclose(ds.to_xarray_dataset_dict()["loss"]["loss"].values, [0.8])
