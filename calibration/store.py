"""Calibration files: one fitted twin per device and date, versioned, with the data it came from.

Layout under the station's ``calibration_dir``::

    <device>/<UTC timestamp>.json   schema version, device, instrument identities, twin parameters,
                                    residuals, fit settings
    <device>/<UTC timestamp>.npz    the measurements the fit used
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


def save_calibration(directory: str | Path, device: str, twin_state: dict, meta: dict,
                     data: Measurements | None = None) -> Path:
    folder = Path(directory) / _safe(device)
    folder.mkdir(parents=True, exist_ok=True)
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    path = folder / f"{stamp}.json"
    record = {"schema_version": SCHEMA_VERSION, "device": device,
              "created_utc": stamp, "twin": twin_state, **meta}
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
    if not isinstance(record["twin"], dict):
        raise CalibrationError(f"{path}: 'twin' must be a mapping of parameter names to values")
    if record["schema_version"] != SCHEMA_VERSION:
        raise CalibrationError(f"{path}: schema_version {record['schema_version']} is not supported "
                               f"(this labsat reads {SCHEMA_VERSION})")
    record["path"] = str(path)
    return record


def latest_calibration(directory: str | Path, device: str) -> Path:
    folder = Path(directory) / _safe(device)
    files = sorted(folder.glob("*.json"))
    if not files:
        raise CalibrationError(f"no calibration for device '{device}' in {folder}; run `labsat calibrate`")
    return files[-1]


def load_measurements(record: dict) -> Measurements:
    path = Path(record["path"]).with_name(record["data_file"])
    with np.load(path) as z:
        return Measurements(z["u"], z["x"], z["p"])
