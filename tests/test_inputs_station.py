"""Issue 14, item 1: every station-file error is caught at validation, before anything is started.

The property-based test mutates every valid station file the project ships (instruments.yaml and
stations/*.yaml) at random (types, values, keys, structure), runs the real CLI entry
(``labsat calibrate --station FILE`` through typer's CliRunner) and asserts, for each mutated file:

- it is refused: exit code 2, one ``error:`` naming the file and a dotted key that exists in the file
  (or, for a missing field, whose parent does), no traceback, and nothing started (no virtual lab, no
  adapter opened, no station connected); or
- it is valid: then the station is the next thing started (the test stops it there).

Case count: ``CASES`` examples per station file (4 files: 4 x 60 = 240 CLI runs), and as many numeric-only
edits whose valid results must build the twin and virtual scene (4 x 60); ``LABSAT_STATION_CASES=N``
runs N of each per file.
"""
from __future__ import annotations

import os
import re
import warnings
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from config_mutations import at, mutate, paths
from labsat.config import ConfigError, load_config, parse_config

REPO = Path(__file__).resolve().parents[1]
STATION_FILES = [REPO / "instruments.yaml", *sorted((REPO / "stations").glob("*.yaml"))]
CASES = int(os.environ.get("LABSAT_STATION_CASES", "60"))  # per file; CI size

key_text = st.from_regex(r"[a-z_]{1,8}", fullmatch=True)
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-10**15, max_value=10**15), st.integers(),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12),
    st.sampled_from(["auto", "0-3", "0-999999999999", "3-1", "a-b", "-1", "-5-3", "sim", "real", "", "[bold]x[/]",
                     "heater_dac", "mzi_mesh", "microring_bank", "freespace", "pulse_shg", "slm", "camera",
                     "/dev/ttyNOPE", "socket://127.0.0.1", "TCPIP0::x", "garbage", "1e400", ".inf", 1e308,
                     -1e308, 10**30, -1, 0, 0.0, 13.0, 3601]),
)
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                       st.dictionaries(key_text, inner, max_size=4)),
                      max_leaves=8)


def _mutate(data: dict, draw) -> dict:
    """1-3 random edits: replace a value (any type, any structure), delete a key or item, add a key or item."""
    return mutate(data, draw, values, key_text, max_edits=3, ops=("replace", "replace", "delete", "add"))


class _Started(Exception):
    """Raised where something would be started: the test ends the command there."""


@pytest.fixture
def started(monkeypatch):
    """Record (and stop) anything that would start: a station connecting, a virtual lab, an adapter."""
    from labsat import cli
    from labsat.drivers import base
    from labsat.drivers.sim import servers
    from labsat.station import Station

    log: list[str] = []
    monkeypatch.setattr(cli.console, "width", 10_000)  # one line per error, as on a wide terminal

    def stop(what):
        def fn(*args, **kwargs):
            log.append(what)
            raise _Started(what)
        return fn

    monkeypatch.setattr(Station, "connect", stop("station"))
    monkeypatch.setattr(servers.VirtualLab, "__init__", stop("virtual lab"))
    monkeypatch.setattr(base, "open_adapter", stop("adapter"))
    return log


def _resolves(key: str, doc) -> bool:
    """``key`` (dotted) names a node of ``doc``, or a missing field of an existing mapping."""
    node = doc
    parts = key.split(".")
    for i, part in enumerate(parts):
        if part == "[key]":  # pydantic: the error is in the mapping's key itself
            return i == len(parts) - 1
        if isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        elif isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, dict) and i == len(parts) - 1:
            return True  # a missing (required) field of an existing mapping
        else:
            return False
    return True


KEY_LINE = re.compile(r"^\s*((?:station|instruments|layers)(?:\.[^\s:]+)*):", re.M)


def _check_refusal(output: str, path: Path, doc) -> None:
    assert "Traceback" not in output, output
    flat = output.replace("\n", " ")
    assert "error:" in flat and path.name in flat, output
    body = output.split("invalid configuration", 1)[-1]
    keys = KEY_LINE.findall(body) or re.findall(r"((?:station|instruments|layers)\.[^\s:]+):", flat)
    assert keys, f"no key named in:\n{output}"
    assert any(_resolves(k, doc) for k in keys), f"{keys} not in the file:\n{output}"


@pytest.mark.parametrize("station_file", STATION_FILES, ids=[p.name for p in STATION_FILES])
@settings(max_examples=CASES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                    HealthCheck.too_slow])
@given(data=st.data())
def test_mutated_station_files_refused_by_key_before_anything_starts(station_file, data, tmp_path, started):
    from labsat.cli import app

    original = yaml.safe_load(station_file.read_text())
    doc = _mutate(original, data.draw)
    path = tmp_path / f"mutated-{station_file.name}"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    started.clear()
    result = CliRunner().invoke(app, ["calibrate", "--station", str(path)])
    if isinstance(result.exception, _Started):  # valid: the station is the next thing started
        event("valid: station started next")
        assert started == ["station"]
        parse_config(doc, str(path))  # and the schema agrees
        return
    assert started == [], f"{started} started for\n{result.output}"
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    _check_refusal(result.output, path, doc)
    event("refused by key, exit 2")


# --- the issue's battery, one example of each class, with the exact key expected ---
BATTERY = [
    ("huge channel range", ("layers", "mesh", "heaters", "channels"), "0-999999999999",
     "layers.mesh.heaters.channels", "at most 8192"),
    ("empty layers", ("layers",), {}, "layers", "at least 1"),
    ("empty instruments for a built-in kind", ("instruments",), {}, "instruments", "at least 1"),
    ("infinite timeout", ("instruments", "heaters", "timeout_s"), float("inf"),
     "instruments.heaters.timeout_s", "finite"),
    ("huge timeout", ("instruments", "detectors", "timeout_s"), 1e308,
     "instruments.detectors.timeout_s", "less than or equal to 3600"),
    ("heater v_max beyond full scale", ("instruments", "heaters", "limits", "v_max"), 15,
     "instruments.heaters.limits.v_max", "less than or equal to 12"),
    ("heater i_max beyond full scale", ("instruments", "heaters", "limits", "i_max_ma"), 30,
     "instruments.heaters.limits.i_max_ma", "less than or equal to 24"),
    ("modulator beyond full scale", ("instruments", "modulator", "limits", "v_max"), 11,
     "instruments.modulator.limits.v_max", "less than or equal to 10"),
    ("NaN", ("layers", "mesh", "v2pi"), float("nan"), "layers.mesh.v2pi", "finite"),
    ("v2pi that underflows the twin", ("layers", "mesh", "v2pi"), 2.2250738585072014e-308, "layers.mesh.v2pi",
     "greater than or equal to 0.001"),
    ("negative chip seed", ("station", "sim", "chip_seed"), -3, "station.sim.chip_seed", "greater than or equal to 0"),
    ("malformed VISA address", ("instruments", "modulator", "address"), "garbage",
     "instruments.modulator.address", "not a valid address"),
    ("serial bridge without port", ("instruments", "heaters", "address"), "socket://192.0.2.5",
     "instruments.heaters.address", "socket://<host>:<port>"),
    ("VISA interface resource", ("instruments", "detectors", "address"), "GPIB0::INTFC",
     "instruments.detectors.address", "INTFC resource"),
    ("device name a path", ("layers", "mesh", "device"), "../chip", "layers.mesh.device", "should match pattern"),
]


@pytest.mark.parametrize("label, where, value, key, message", BATTERY, ids=[b[0] for b in BATTERY])
def test_issue_battery_refused_by_key_exit_2(tmp_path, started, label, where, value, key, message):
    from labsat.cli import app

    doc = yaml.safe_load((REPO / "instruments.yaml").read_text())
    node = doc
    for k in where[:-1]:
        node = node[k]
    node[where[-1]] = value
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(doc))
    result = CliRunner().invoke(app, ["calibrate", "--station", str(path)])
    flat = " ".join(result.output.split())
    assert result.exit_code == 2 and started == [], result.output
    assert f"{key}: " in flat and message in flat, result.output
    assert "Traceback" not in result.output


def test_channel_range_is_counted_not_built():
    """The huge range is refused by arithmetic: no 10^12-element list is ever allocated."""
    import tracemalloc

    doc = yaml.safe_load((REPO / "instruments.yaml").read_text())
    doc["layers"]["mesh"]["heaters"]["channels"] = "0-999999999999"
    tracemalloc.start()
    with pytest.raises(ConfigError, match="layers.mesh.heaters.channels"):
        parse_config(doc)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 50e6


@pytest.mark.parametrize("station_file", STATION_FILES, ids=[p.name for p in STATION_FILES])
def test_shipped_station_files_are_valid(station_file):
    assert load_config(station_file).layers


# --- values that pass the schema must not crash later: numeric edits, then what the CLI builds next ---
numbers = st.one_of(st.integers(min_value=-2**70, max_value=2**70), st.floats(allow_nan=True, allow_infinity=True),
                    st.sampled_from([0, 1, 2, -1, 0.5, 1e-300, 1e300, 4096, 8192, 3600, 12, 24, 2**32, 2**32 - 1]))
NUMERIC_CASES = int(os.environ.get("LABSAT_STATION_CASES", "60"))


def _numeric_leaves(node):
    """The paths of every number (not a bool) in the nested dict/list, in document order."""
    for path in paths(node):
        value = at(node, path)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            yield path


@pytest.mark.parametrize("station_file", STATION_FILES, ids=[p.name for p in STATION_FILES])
@settings(max_examples=NUMERIC_CASES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_numeric_edits_are_refused_by_key_or_build_the_layer(station_file, data):
    """Any number at any numeric key: a ConfigError naming a key of the file, or a config from which the
    layer's twin and virtual scene are built without error (what `labsat` builds next)."""
    from labsat.kinds import kind_of

    doc = yaml.safe_load(station_file.read_text())
    leaves = list(_numeric_leaves(doc))
    for _ in range(data.draw(st.integers(min_value=1, max_value=2))):
        path = data.draw(st.sampled_from(leaves))
        node = doc
        for k in path[:-1]:
            node = node[k]
        node[path[-1]] = data.draw(numbers)
    try:
        cfg = parse_config(doc, "s.yaml")
    except ConfigError as exc:
        keys = KEY_LINE.findall(str(exc).split("invalid configuration", 1)[-1])
        assert keys and all(_resolves(k, doc) for k in keys), str(exc)
        event("refused by key")
        return
    event("valid: twin and scene built")
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # an overflow building the physics is a finding too
        for lname in cfg.layers:
            kind = kind_of(cfg, lname)
            twin = kind.make_twin(cfg, lname)
            assert twin.n_inputs >= 1 and twin.n_outputs >= 1
            kind.make_scene(cfg, lname, cfg.station.sim.chip_seed)


@pytest.mark.parametrize("seed", ["-1", str(2**32)])
def test_chip_seed_option_checked_like_the_file(started, seed):
    from labsat.cli import app

    result = CliRunner().invoke(app, ["calibrate", "--station", str(REPO / "instruments.yaml"), "--chip-seed", seed])
    assert result.exit_code == 2 and started == [], result.output
    assert f"error: --chip-seed: {seed} is not a chip seed (an integer 0..4294967295)" in result.output
