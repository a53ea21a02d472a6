"""Calibration sweeps and training / evaluation runs as QCoDeS datasets (and from there netCDF).

- :func:`export_calibration`: the settings a calibration measured (controls ``u`` per setting and
  control, inputs ``x`` and normalised outputs ``p`` per setting, sample and port), with the
  calibration file's fit as metadata;
- :func:`export_run`: one run of the run database (``labsat runs``): per-epoch metrics against
  ``epoch``, final parameters against their index, the run's record (config, result, device,
  calibration, git revision) as metadata;
- :func:`to_netcdf`: a dataset to a netCDF file (QCoDeS's own exporter).

Every dataset carries a station snapshot: pass the live QCoDeS Station (``QcodesStation.station``)
to snapshot every instrument's parameters; without one, the instruments.yaml the data came from is
snapshotted (every instrument's address, limits and settings). The QCoDeS database is the one given
(``db=``), else QCoDeS's configured one.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import qcodes
from qcodes.dataset import (DataSetProtocol, Measurement, initialise_or_create_database_at,
                            load_or_create_experiment)

from labsat.calibration.measure import Measurements
from labsat.calibration.store import load_calibration, load_measurements


def use_database(path: str | Path) -> Path:
    """Open (or create) the QCoDeS database at ``path`` for the datasets that follow."""
    path = Path(path).expanduser().resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    initialise_or_create_database_at(str(path))
    return path


def _snapshot_station(station: qcodes.Station | None, station_config=None) -> qcodes.Station:
    """The live station, or an instrument-less one whose snapshot holds the station file."""
    if station is not None:
        return station
    st = qcodes.Station(default=False)
    if station_config is not None:
        if hasattr(station_config, "model_dump_json"):
            station_config = json.loads(station_config.model_dump_json())
        st.metadata["labsat_station"] = station_config
    return st


def export_calibration(data: Measurements | str | Path, *, db: str | Path | None = None,
                       device: str = "", station: qcodes.Station | None = None, station_config=None,
                       meta: dict | None = None, name: str = "calibration") -> DataSetProtocol:
    """One dataset of a calibration sweep: ``data`` measured in memory, or a calibration file (its
    NPZ is read, its fit and residuals become metadata)."""
    if not isinstance(data, Measurements):
        record = load_calibration(data)
        device = device or record["device"]
        meta = {k: v for k, v in record.items() if k not in ("twin",)} | (meta or {})
        data = load_measurements(record)
    if db is not None:
        use_database(db)
    u, x, p = (np.asarray(a, dtype=float) for a in (data.u, data.x, data.p))
    k_settings, n_controls = u.shape
    _, n_samples, n_in = x.shape
    n_out = p.shape[-1]
    exp = load_or_create_experiment("labsat calibration", sample_name=device or "unknown device")
    meas = Measurement(exp=exp, station=_snapshot_station(station, station_config), name=name)
    meas.register_custom_parameter("setting", label="setting index")
    meas.register_custom_parameter("control", label="control index")
    meas.register_custom_parameter("sample", label="input sample index")
    meas.register_custom_parameter("port", label="input port index")
    meas.register_custom_parameter("output", label="output port index")
    meas.register_custom_parameter("u", label="normalised heater power", unit="", setpoints=("setting", "control"))
    meas.register_custom_parameter("x", label="input amplitude", unit="", setpoints=("setting", "sample", "port"))
    meas.register_custom_parameter("p", label="normalised output power", unit="", setpoints=("setting", "sample", "output"))
    with meas.run() as saver:
        for k in range(k_settings):
            saver.add_result(("setting", np.full(n_controls, k)), ("control", np.arange(n_controls)), ("u", u[k]))
            s_i, p_i = np.meshgrid(np.arange(n_samples), np.arange(n_in), indexing="ij")
            saver.add_result(("setting", np.full(s_i.size, k)), ("sample", s_i.ravel()), ("port", p_i.ravel()),
                             ("x", x[k].ravel()))
            s_o, o_i = np.meshgrid(np.arange(n_samples), np.arange(n_out), indexing="ij")
            saver.add_result(("setting", np.full(s_o.size, k)), ("sample", s_o.ravel()), ("output", o_i.ravel()),
                             ("p", p[k].ravel()))
        ds = saver.dataset
    ds.add_metadata("labsat_kind", "calibration")
    ds.add_metadata("labsat_device", device)
    if meta:
        ds.add_metadata("labsat_calibration", json.dumps(meta, default=str))
    return ds


def export_run(rundb, run: int, *, db: str | Path | None = None, station: qcodes.Station | None = None,
               ) -> DataSetProtocol:
    """One run of a :class:`labsat.runs.RunDB` as a dataset: per-epoch metrics against ``epoch``,
    final parameters against their index; the run's record as metadata. The snapshot is the live
    ``station`` if given, else the station file the run recorded."""
    from labsat.runs.db import EPOCH_COLUMNS

    info = rundb.run(run)
    epochs = rundb.epochs(run)
    params = rundb.parameters(run)
    station_config = None
    if info.get("station_yaml"):
        import yaml

        try:
            station_config = yaml.safe_load(info["station_yaml"])
        except yaml.YAMLError:
            station_config = {"text": info["station_yaml"]}
    if db is not None:
        use_database(db)
    exp = load_or_create_experiment(f"labsat {info['kind']}", sample_name=info["device"] or "unknown device")
    meas = Measurement(exp=exp, station=_snapshot_station(station, station_config), name=f"run {run}")
    metrics = [c for c in EPOCH_COLUMNS[1:] if c != "recorded_utc"]
    if epochs:
        meas.register_custom_parameter("epoch", label="epoch")
        for c in metrics:
            meas.register_custom_parameter(c, label=c.replace("_", " "), setpoints=("epoch",))
    for pname in params:
        meas.register_custom_parameter(f"{pname}_index", label=f"{pname} index")
        meas.register_custom_parameter(f"final_{pname}", label=f"final {pname}", setpoints=(f"{pname}_index",))
    with meas.run() as saver:
        for e in epochs:
            saver.add_result(("epoch", e["epoch"]),
                             *((c, np.nan if e[c] is None else float(e[c])) for c in metrics))
        for pname, values in params.items():
            saver.add_result((f"{pname}_index", np.asarray(list(values), dtype=float)),
                             (f"final_{pname}", np.asarray(list(values.values()), dtype=float)))
        ds = saver.dataset
    ds.add_metadata("labsat_run", int(run))
    ds.add_metadata("labsat_kind", info["kind"])
    ds.add_metadata("labsat_status", info["status"])
    for key in ("device", "calibration", "git_revision", "started_utc", "ended_utc"):
        ds.add_metadata(f"labsat_{key}", "" if info.get(key) is None else str(info[key]))
    ds.add_metadata("labsat_config", json.dumps(info["config"], default=str))
    ds.add_metadata("labsat_result", json.dumps(info["result"], default=str))
    return ds


def to_netcdf(dataset: DataSetProtocol, path: str | Path) -> Path:
    """Write ``dataset`` to one netCDF file at ``path`` (QCoDeS's exporter: data, metadata, snapshot)."""
    path = Path(path).expanduser().resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    dataset.export("netcdf", path=str(path.parent), prefix="")
    written = Path(dataset.export_info.export_paths["nc"])
    if written != path:
        written.replace(path)
    return path
