"""instruments.yaml validation: every bad file is a ConfigError whose message names the dotted key."""
from __future__ import annotations

import pytest
import yaml

from conftest import INSTRUMENTS_YAML, minimal_config, write_yaml
from labsat.config import ConfigError, load_config, parse_config


def test_repo_instruments_yaml_is_valid():
    cfg = load_config(INSTRUMENTS_YAML)
    assert cfg.station.backend == "sim"
    mesh = cfg.layers["mesh"]
    assert len(mesh.heaters.channels) == mesh.modes * (mesh.modes - 1)
    assert mesh.heaters.channels == list(range(56))
    assert cfg.resolve(cfg.station.calibration_dir) == INSTRUMENTS_YAML.parent / "calibration/data"


def test_minimal_config_is_valid():
    cfg = parse_config(minimal_config())
    assert cfg.layers["mesh"].modes == 4


def test_channel_range_strings():
    d = minimal_config()
    d["layers"]["mesh"]["heaters"]["channels"] = "0-5, 8,10-14"
    cfg = parse_config(d)
    assert cfg.layers["mesh"].heaters.channels == [0, 1, 2, 3, 4, 5, 8, 10, 11, 12, 13, 14]


@pytest.mark.parametrize("text, line", [
    ("station:\n  name: x\n  backend: [sim\ninstruments: {}\n", 4),
    ("station:\n  name: x\n\tbackend: sim\n", 3),
    ("instruments:\n  heaters:\n    kind: heater_dac\n   channels: 8\n", 4),
])
def test_malformed_yaml_names_the_line(tmp_path, text, line):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    msg = str(info.value)
    assert "malformed YAML" in msg and f"line {line}" in msg and str(path) in msg


def test_duplicate_key_is_an_error(tmp_path):
    """PyYAML keeps the last of two equal keys; a limits file must not silently take the looser one."""
    text = INSTRUMENTS_YAML.read_text().replace("      v_max: 6.5\n", "      v_max: 6.5\n      v_max: 12\n", 1)
    assert text.count("v_max: 12") == 1
    path = tmp_path / "dup.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    msg = str(info.value)
    line = text.splitlines().index("      v_max: 12") + 1
    assert "duplicate key 'v_max'" in msg and f"line {line}" in msg and f"first given at line {line - 1}" in msg


def test_same_key_in_different_mappings_is_fine(tmp_path):
    path = write_yaml(tmp_path / "ok.yaml", minimal_config())  # v_max under heaters, modulator and mesh
    assert load_config(path).layers["mesh"].v_max == 6.0


@pytest.mark.parametrize("text, what", [("", "NoneType"), ("- a\n- b\n", "list"), ("just text\n", "str")])
def test_not_a_mapping(tmp_path, text, what):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=f"expected a mapping .* got {what}"):
        load_config(path)


def test_missing_file():
    with pytest.raises(ConfigError, match="cannot read"):
        load_config("/nonexistent/instruments.yaml")


def _mutate(path: tuple, value=None, delete=False) -> dict:
    d = minimal_config()
    node = d
    for key in path[:-1]:
        node = node[key]
    if delete:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return d


CASES = [
    # unknown keys (typos)
    ("unknown key", ("instruments", "heaters", "limits", "vmax"), 6.0, False,
     "instruments.heaters.limits.vmax", "Extra inputs are not permitted"),
    ("unknown top-level key", ("instrument",), {}, False, "instrument", "Extra inputs"),
    ("unknown station key", ("station", "backnd"), "sim", False, "station.backnd", "Extra inputs"),
    # wrong types
    ("wrong type", ("instruments", "heaters", "limits", "v_max"), "high", False,
     "instruments.heaters.limits.v_max", "valid number"),
    ("wrong type int", ("instruments", "modulator", "channels"), "eight", False,
     "instruments.modulator.channels", "valid integer"),
    ("negative", ("instruments", "heaters", "limits", "resistance_ohm"), -600, False,
     "instruments.heaters.limits.resistance_ohm", "greater than 0"),
    ("bad literal", ("station", "backend"), "fake", False, "station.backend", "'sim' or 'real'"),
    ("bad instrument kind", ("instruments", "heaters", "kind"), "toaster", False,
     "instruments.heaters", "toaster"),
    ("bad channel string", ("layers", "mesh", "inputs", "channels"), "a-b", False,
     "layers.mesh.inputs.channels", "range string"),
    # missing required keys
    ("missing key", ("instruments", "heaters", "limits", "resistance_ohm"), None, True,
     "instruments.heaters.limits.resistance_ohm", "Field required"),
    ("missing limits", ("instruments", "modulator", "limits"), None, True,
     "instruments.modulator.limits", "Field required"),
    ("missing layers", ("layers",), None, True, "layers", "Field required"),
    ("missing layer value", ("layers", "mesh", "v2pi"), None, True, "layers.mesh.v2pi", "Field required"),
    # cross references
    ("unknown instrument", ("layers", "mesh", "heaters", "instrument"), "heatr", False,
     "layers.mesh.heaters.instrument", "no instrument named 'heatr'"),
    ("wrong instrument kind", ("layers", "mesh", "outputs", "instrument"), "modulator", False,
     "layers.mesh.outputs.instrument", "'modulator' is a modulator_dac"),
    ("channel out of range", ("layers", "mesh", "outputs", "channels"), "1-4", False,
     "layers.mesh.outputs.channels", "channel 4 does not exist on 'detectors' (0..3)"),
    ("heater channel out of range", ("layers", "mesh", "heaters", "channels"), "5-16", False,
     "layers.mesh.heaters.channels", "channel 16 does not exist"),
    ("channel twice", ("layers", "mesh", "inputs", "channels"), [0, 1, 1, 2], False,
     "layers.mesh.inputs.channels", "listed twice"),
    ("layer v_max above heater limit", ("layers", "mesh", "v_max"), 7.0, False,
     "layers.mesh.v_max", "exceeds instruments.heaters.limits.v_max (6.5 V)"),
    ("modulator vpi above limit", ("layers", "mesh", "modulator_vpi"), 2.5, False,
     "layers.mesh.modulator_vpi", "exceeds instruments.modulator.limits.v_max"),
    ("heater count", ("layers", "mesh", "heaters", "channels"), "0-10", False,
     "heaters.channels", "4-mode mesh has 12 heaters, 11 channels given"),
]


@pytest.mark.parametrize("label, path, value, delete, key, message", CASES, ids=[c[0] for c in CASES])
def test_bad_config_names_the_key(tmp_path, label, path, value, delete, key, message):
    data = _mutate(path, value, delete)
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    msg = str(info.value)
    assert f"{key}:" in msg, msg
    assert message in msg, msg
    # the same through a file: the message also names the file
    file = write_yaml(tmp_path / "station.yaml", data)
    with pytest.raises(ConfigError) as info:
        load_config(file)
    assert str(file) in str(info.value) and f"{key}:" in str(info.value)


def test_several_errors_are_all_reported():
    d = minimal_config()
    d["instruments"]["heaters"]["limits"]["v_max"] = "x"
    d["instruments"]["modulator"]["channels"] = -1
    msg = str(pytest.raises(ConfigError, parse_config, d).value)
    assert "instruments.heaters.limits.v_max" in msg and "instruments.modulator.channels" in msg


def test_config_error_is_a_value_error():
    assert issubclass(ConfigError, ValueError)


def test_auto_address_with_real_backend(tmp_path):
    """backend: real never invents an address: 'auto' is refused before anything is opened."""
    from labsat.station import Station

    d = minimal_config()
    d["station"]["backend"] = "real"
    path = write_yaml(tmp_path / "real.yaml", d)
    with pytest.raises(ConfigError, match=r"instruments\.heaters\.address: 'auto' only works with backend: sim"):
        Station(path)  # issue 14: refused when the file is validated, before a Station exists


def test_station_rejects_a_bad_file(tmp_path):
    from labsat.station import Station

    d = minimal_config()
    d["layers"]["mesh"]["v_max"] = 9.0
    with pytest.raises(ConfigError, match=r"layers\.mesh\.v_max"):
        Station(write_yaml(tmp_path / "s.yaml", d))


def test_yaml_round_trip_of_the_repo_file(tmp_path):
    """The repo file, dumped and reloaded, is the same configuration."""
    data = yaml.safe_load(INSTRUMENTS_YAML.read_text())
    a = parse_config(data)
    b = load_config(write_yaml(tmp_path / "copy.yaml", data))
    assert a.model_dump() == b.model_dump()


def test_layer_control_range_must_fit_the_total_heater_power_limit(config_dict):
    """Training can drive every heater to the layer's v_max, so that must be within the total limit."""
    config_dict["instruments"]["heaters"]["limits"]["total_power_max_w"] = 0.5  # 12 heaters at 6 V: 0.72 W
    with pytest.raises(ConfigError, match=r"layers\.mesh\.v_max: all 12 heaters at 6.0 V draw 0.72 W"):
        parse_config(config_dict)
