"""Calibration files: one fitted twin per device and date, versioned, with the data it came from.

Layout under the station's ``calibration_dir``::

    <kind>/<device>/<UTC timestamp>.json   schema version, network kind, device, instrument identities,
                                           twin parameters, residuals, fit settings
    <kind>/<device>/<UTC timestamp>.npz    the measurements the fit used

Kinds never share a folder (two kinds' virtual chips are both ``vchip-1``). Files written before the
kind was recorded (``<device>/<stamp>.json``) are still read when named, and found as "latest" only if
they record the same kind.

A calibration is trusted only after :func:`check_calibration` (``calibration_for`` does both): the file
is of this device and this kind (else refused, saying whose it is, unless ``force``), has exactly this
twin's parameters, with this layer's shapes, every value finite, and loads into the twin. Every message
names the file.
"""
from __future__ import annotations

import datetime as _dt
import json
import re
from pathlib import Path

import numpy as np

from .measure import Measurements

SCHEMA_VERSION = 1


class CalibrationError(ValueError):
    """A calibration file is missing, unreadable or of another schema."""


def _safe(name: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9._-]+", name):
        raise CalibrationError(f"device name {name!r} may only use letters, digits, '.', '_' and '-'")
    return name


def calibration_folder(directory: str | Path, device: str, kind: str | None = None) -> Path:
    """``<directory>/<kind>/<device>`` (``<directory>/<device>`` when no kind is given: the old layout)."""
    folder = Path(directory)
    if kind is not None:
        folder = folder / _safe(kind)
    return folder / _safe(device)


def save_calibration(directory: str | Path, device: str, twin_state: dict, meta: dict,
                     data: Measurements | None = None, kind: str | None = None) -> Path:
    folder = calibration_folder(directory, device, kind)
    folder.mkdir(parents=True, exist_ok=True)
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    path = folder / f"{stamp}.json"
    record = {"schema_version": SCHEMA_VERSION, "device": device,
              "created_utc": stamp, "twin": twin_state, **meta}
    if kind is not None:
        record["kind"] = kind
    if data is not None:
        np.savez_compressed(path.with_suffix(".npz"), **data.arrays())
        record["data_file"] = path.with_suffix(".npz").name
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(record, indent=1))
    tmp.replace(path)  # atomic: a crash never leaves half a calibration
    return path


def load_calibration(path: str | Path) -> dict:
    path = Path(path)
    try:
        record = json.loads(path.read_text())
    except OSError as exc:
        raise CalibrationError(f"{path}: cannot read: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise CalibrationError(f"{path}: not a text (UTF-8) file: {exc.reason} at byte {exc.start}") from None
    except json.JSONDecodeError as exc:
        raise CalibrationError(f"{path}: not valid JSON (line {exc.lineno}): {exc.msg}") from None
    if not isinstance(record, dict):
        raise CalibrationError(f"{path}: expected a JSON object")
    for key in ("schema_version", "device", "twin"):
        if key not in record:
            raise CalibrationError(f"{path}: missing key '{key}'")
    version = record["schema_version"]
    if isinstance(version, bool) or not isinstance(version, int):
        raise CalibrationError(f"{path}: schema_version must be an integer (this labsat reads {SCHEMA_VERSION}), "
                               f"got the {_type_name(version)} {_short(version)}")
    if version != SCHEMA_VERSION:
        raise CalibrationError(f"{path}: schema_version {version} is not supported "
                               f"(this labsat reads {SCHEMA_VERSION})")
    if not isinstance(record["twin"], dict):
        raise CalibrationError(f"{path}: 'twin' must be a mapping of parameter names to values, "
                               f"got the {_type_name(record['twin'])} {_short(record['twin'])}")
    for key in ("device", "kind"):
        if key in record and not isinstance(record[key], str):
            raise CalibrationError(f"{path}: '{key}' must be a string, got the {_type_name(record[key])} "
                                   f"{_short(record[key])}")
    record["path"] = str(path)
    return record


def _type_name(value) -> str:
    return {str: "string", int: "integer", float: "number", bool: "boolean", list: "list", dict: "mapping",
            type(None): "null"}.get(type(value), type(value).__name__)


def _short(value) -> str:
    text = json.dumps(value) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _recorded_kind(path: Path) -> str | None:
    try:
        record = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    kind = record.get("kind") if isinstance(record, dict) else None
    return kind if isinstance(kind, str) else None


def latest_calibration(directory: str | Path, device: str, kind: str | None = None) -> Path:
    """The newest calibration of ``device``; with ``kind``, only of that network kind: its own folder,
    plus files of the old layout that record the same kind (never another kind's file)."""
    if kind is None:
        folder = calibration_folder(directory, device)
        files = sorted(folder.glob("*.json"))
        if not files:
            raise CalibrationError(f"no calibration for device '{device}' in {folder}; run `labsat calibrate`")
        return files[-1]
    folder = calibration_folder(directory, device, kind)
    legacy = sorted(calibration_folder(directory, device).glob("*.json"))
    legacy_same = [p for p in legacy if _recorded_kind(p) == kind]
    files = sorted(list(folder.glob("*.json")) + legacy_same, key=lambda p: p.name)
    if not files:
        other = len(legacy) - len(legacy_same)
        note = (f" ({calibration_folder(directory, device)} holds {other} calibration(s) of another or an "
                f"unrecorded kind: not used; pass --calibration FILE to use one)") if other else ""
        raise CalibrationError(f"no calibration for device '{device}' (kind {kind}) in {folder}{note}; run "
                               f"`labsat calibrate --kind {kind}`")
    return files[-1]


def _describe(record: dict) -> str:
    kind = record.get("kind") or "unrecorded kind"
    return f"device '{record.get('device')}', {kind}, made {record.get('created_utc', 'at an unknown time')}"


def _compare(value, ref, key: str, problems: list[str]) -> None:
    """Check ``value`` against the reference twin state ``ref``: same parameters, shapes, finite numbers."""
    if isinstance(ref, dict):
        if not isinstance(value, dict):
            problems.append(f"{key} must be a mapping, got the {_type_name(value)} {_short(value)}")
            return
        unknown = [k for k in value if k not in ref]
        missing = [k for k in ref if k not in value]
        if unknown:
            problems.append(f"{key}.{unknown[0]} is not a parameter of this twin (it has: {', '.join(ref)})")
        if missing:
            problems.append(f"calibration is missing twin parameter '{missing[0]}' (this twin has: {', '.join(ref)})")
        for k in ref:
            if k in value:
                _compare(value[k], ref[k], f"{key}.{k}", problems)
        return
    if isinstance(ref, (list, tuple)) and any(isinstance(r, dict) for r in ref):  # e.g. an ensemble's members
        if not isinstance(value, (list, tuple)) or len(value) != len(ref):
            problems.append(f"{key} must be a list of {len(ref)} entries, got {_short(value)}")
            return
        for i, (v, r) in enumerate(zip(value, ref)):
            _compare(v, r, f"{key}[{i}]", problems)
        return
    want = np.shape(np.asarray(ref, dtype=float))
    try:
        arr = np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        problems.append(f"{key} must be numbers of shape {want}, got {_short(value)}")
        return
    if isinstance(value, bool) or arr.dtype == object:
        problems.append(f"{key} must be numbers of shape {want}, got {_short(value)}")
    elif arr.shape != want:
        problems.append(f"{key} has shape {arr.shape}, this layer's twin needs {want}")
    elif not np.all(np.isfinite(arr)):
        bad = int(np.size(arr) - np.count_nonzero(np.isfinite(arr)))
        problems.append(f"{key}: {bad} of {arr.size} values are not finite (NaN or infinity)")


def check_calibration(record: dict, twin, *, device: str | None, kind: str | None, force: bool = False) -> dict:
    """Validate a loaded calibration against this layer's (nominal) ``twin`` and load it into the twin.

    Refused (:class:`CalibrationError`, naming the file): another device's or another kind's calibration
    (unless ``force``; the message says whose it is), unknown or missing parameters, wrong shapes,
    non-finite or non-numeric values, and anything the twin itself refuses.
    """
    path = record.get("path", "calibration")
    rkind = record.get("kind")
    if kind is not None and rkind is not None and rkind != kind and not force:
        raise CalibrationError(f"{path}: a {rkind} calibration ({_describe(record)}), not for this {kind} layer; "
                               f"calibrate it with `labsat calibrate --kind {kind}`, or pass --force to use it anyway")
    if device is not None and record.get("device") != device and not force:
        raise CalibrationError(f"{path}: a calibration of another device ({_describe(record)}), not of "
                               f"'{device}'; calibrate this device with `labsat calibrate`, or pass --force to "
                               f"use it anyway")
    problems: list[str] = []
    _compare(record["twin"], twin.fitted_state(), "twin", problems)
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise CalibrationError(f"{path}: {problems[0]}{more}")
    try:
        twin.load_fitted_state(record["twin"])
    except (KeyError, ValueError, TypeError, RuntimeError, IndexError) as exc:
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        raise CalibrationError(f"{path}: {msg}") from None
    return record


def load_measurements(record: dict) -> Measurements:
    path = Path(record["path"]).with_name(record["data_file"])
    with np.load(path) as z:
        return Measurements(z["u"], z["x"], z["p"])
