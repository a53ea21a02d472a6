"""Shared fixtures: the repo's station on the virtual lab, a bare virtual lab, and a config builder.

Nothing here writes into the repository: stations get a copy of instruments.yaml whose
calibration_dir and runs_dir point under pytest's tmp_path.
"""
from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
INSTRUMENTS_YAML = REPO / "instruments.yaml"


def minimal_config() -> dict:
    """A small, valid station (4-mode mesh on the virtual lab) as a plain dict, for tests to mutate."""
    return {
        "station": {"name": "test bench", "backend": "sim", "calibration_dir": "cal", "runs_dir": "runs",
                    "sim": {"chip_seed": 1}},
        "instruments": {
            "heaters": {"kind": "heater_dac", "address": "auto", "channels": 16, "timeout_s": 2,
                        "limits": {"v_max": 6.5, "i_max_ma": 12, "resistance_ohm": 600,
                                   "power_max_mw": 75, "total_power_max_w": 3.0},
                        "ramp": {"max_step_v": 1.0, "step_delay_s": 0.0}},
            "modulator": {"kind": "modulator_dac", "address": "auto", "channels": 4,
                          "limits": {"v_max": 2.0}},
            "detectors": {"kind": "photodetector_daq", "address": "auto", "channels": 4, "range_w": 1e-3},
        },
        "layers": {
            "mesh": {"kind": "mzi_mesh", "modes": 4, "device": None,
                     "heaters": {"instrument": "heaters", "channels": "0-11"},
                     "inputs": {"instrument": "modulator", "channels": "0-3"},
                     "outputs": {"instrument": "detectors", "channels": "0-3"},
                     "v_max": 6.0, "v2pi": 5.0, "modulator_vpi": 2.0, "laser_power_w": 1e-3},
        },
    }


@pytest.fixture
def config_dict() -> dict:
    return copy.deepcopy(minimal_config())


def write_yaml(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.fixture
def station_yaml(tmp_path) -> Path:
    """A copy of the repo's instruments.yaml with calibration_dir and runs_dir under tmp_path."""
    data = yaml.safe_load(INSTRUMENTS_YAML.read_text())
    data["station"]["calibration_dir"] = str(tmp_path / "calibration")
    data["station"]["runs_dir"] = str(tmp_path / "runs")
    return write_yaml(tmp_path / "instruments.yaml", data)


@pytest.fixture
def small_station_yaml(tmp_path, config_dict) -> Path:
    """The minimal 4-mode station as a file under tmp_path (fast calibrations and training)."""
    return write_yaml(tmp_path / "small.yaml", config_dict)


@pytest.fixture
def station(station_yaml):
    """The repo's station (8-mode mesh, backend sim), connected; closed (safe state) afterwards."""
    from labsat.station import Station

    with Station(station_yaml) as st:
        yield st


@pytest.fixture
def small_station(small_station_yaml):
    from labsat.station import Station

    with Station(small_station_yaml) as st:
        yield st


@pytest.fixture
def lab():
    """A bare virtual lab (8-mode chip, seed 3); servers stopped afterwards."""
    from labsat.drivers.sim.servers import VirtualLab

    vl = VirtualLab(seed=3)
    yield vl
    vl.close()


@pytest.fixture
def python_sigint():
    """Ctrl-C handled as Python does in an interactive run (KeyboardInterrupt), even when the test process was
    started with SIGINT ignored (a background job, nohup, some CI runners): the Ctrl-C tests send SIGINT to
    themselves and expect the interpreter's own handler."""
    import signal

    before = signal.getsignal(signal.SIGINT)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, before)
