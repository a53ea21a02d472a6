"""Property-based tests (hypothesis) of the two file parsers a user can feed anything:
instruments.yaml (labsat.config) and calibration files (labsat.calibration.load_calibration).

Property: whatever the input, the parser returns a valid object or raises its own clear error
(ConfigError / CalibrationError, both ValueErrors the CLI turns into one line and exit code 2),
never another exception.
"""
from __future__ import annotations

import json
import math

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from config_mutations import mutate
from conftest import minimal_config
from labsat.calibration import CalibrationError, load_calibration
from labsat.config import ConfigError, StationConfig, load_config, parse_config

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-10**6, max_value=10**6),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12),
    st.sampled_from(["auto", "0-3", "0-99", "3-1", "a-b", "-1", "sim", "real", "heater_dac", "mzi_mesh",
                     "modulator_dac", "photodetector_daq", "heaters", "detectors", "modulator", ""]),
)
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                       st.dictionaries(st.text(max_size=8), inner, max_size=4)),
                      max_leaves=10)


def _mutate(data: dict, draw) -> dict:
    return mutate(data, draw, values, st.text(max_size=8), max_edits=4)


@SETTINGS
@given(st.data())
def test_config_mutations_parse_or_raise_config_error(data):
    mutated = _mutate(minimal_config(), data.draw)
    try:
        cfg = parse_config(mutated)
    except ConfigError as exc:
        assert str(exc).startswith("instruments.yaml")
        return
    assert isinstance(cfg, StationConfig)
    for layer in cfg.layers.values():  # what parsed is consistent
        assert layer.heaters.instrument in cfg.instruments


@SETTINGS
@given(values)
def test_config_arbitrary_documents(doc):
    try:
        parse_config(doc)
    except ConfigError:
        pass


@SETTINGS
@given(st.text(max_size=200))
def test_config_arbitrary_yaml_text(tmp_path_factory, text):
    path = tmp_path_factory.mktemp("cfg") / "instruments.yaml"
    path.write_text(text)
    try:
        load_config(path)
    except ConfigError:
        pass


def _json_safe(v):
    return not (isinstance(v, float) and not math.isfinite(v))


json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False, allow_infinity=False),
              st.text(max_size=10)),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=12)
calibration_like = st.fixed_dictionaries(
    {}, optional={"schema_version": st.one_of(st.just(1), json_values), "device": json_values,
                  "twin": st.one_of(json_values, st.dictionaries(
                      st.sampled_from(["offset", "eta", "coupler", "loss", "crosstalk"]), json_values)),
                  "created_utc": json_values, "data_file": json_values})


@SETTINGS
@given(st.one_of(json_values, calibration_like))
def test_calibration_arbitrary_json(tmp_path_factory, doc):
    path = tmp_path_factory.mktemp("cal") / "c.json"
    path.write_text(json.dumps(doc))
    try:
        record = load_calibration(path)
    except CalibrationError as exc:
        assert str(path) in str(exc)
        return
    assert isinstance(record, dict) and record["schema_version"] == 1 and "twin" in record


@SETTINGS
@given(st.binary(max_size=200))
def test_calibration_arbitrary_bytes(tmp_path_factory, raw):
    path = tmp_path_factory.mktemp("cal") / "c.json"
    path.write_bytes(raw)
    try:
        load_calibration(path)
    except CalibrationError:
        pass


def test_calibration_missing_file(tmp_path):
    with pytest.raises(CalibrationError, match="cannot read"):
        load_calibration(tmp_path / "nope.json")


def test_yaml_round_trip_of_valid_config_parses():
    assert isinstance(parse_config(yaml.safe_load(yaml.safe_dump(minimal_config()))), StationConfig)


@SETTINGS
@given(st.binary(max_size=200))
def test_config_arbitrary_bytes(tmp_path_factory, raw):
    path = tmp_path_factory.mktemp("cfg") / "instruments.yaml"
    path.write_bytes(raw)
    try:
        load_config(path)
    except ConfigError:
        pass


def test_binary_files_name_themselves(tmp_path):
    (tmp_path / "c.json").write_bytes(b"\x80\x81 not text")
    with pytest.raises(CalibrationError, match="c.json: not a text"):
        load_calibration(tmp_path / "c.json")
    (tmp_path / "i.yaml").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(ConfigError, match="i.yaml: not a text"):
        load_config(tmp_path / "i.yaml")
