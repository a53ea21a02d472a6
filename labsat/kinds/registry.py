"""The kind registry: :class:`Kind`, registration, lookup, loading a lab's own kind (see :mod:`labsat.kinds`)."""
from __future__ import annotations

import importlib
from dataclasses import dataclass, replace
from typing import Callable

ENTRY_POINT_GROUP = "labsat.kinds"


@dataclass(frozen=True)
class Kind:
    config_kind: str
    name: str
    description: str
    make_twin: Callable
    make_hardware: Callable
    make_scene: Callable
    # optional: fit_twin(twin, measurements, progress=report) -> loss history, used by `labsat calibrate`
    # in place of calibration.fit_twin (the MZI mesh's fit) for kinds with other twin parameters
    fit_twin: Callable | None = None
    # optional, for kinds written outside labsat: the pydantic model of the layer's own keys
    config_model: type | None = None

    def fit(self, twin, data, progress=None, **steps):
        """Fit ``twin`` to calibration ``data``: the kind's own fit, else the MZI mesh's
        (:func:`labsat.calibration.fit_twin`, which takes ``adam_steps`` / ``lbfgs_steps``)."""
        if self.fit_twin is not None:
            return self.fit_twin(twin, data, progress=progress)
        from labsat.calibration import fit_twin

        return fit_twin(twin, data, progress=progress, **steps)


KINDS: dict[str, Kind] = {}


def register_kind(kind: Kind) -> Kind:
    KINDS[kind.config_kind] = kind
    return kind


class KindError(ValueError):
    """A layer's ``kind:`` names no kind that can be loaded (one line, naming the key)."""


def load_kind(spec: str, key: str = "kind") -> Kind:
    """The kind ``spec`` names: registered, ``package.module:ATTR``, or a ``labsat.kinds`` entry point;
    loaded once and registered under ``spec``."""
    if spec in KINDS:
        return KINDS[spec]
    if ":" in spec:
        module, _, attr = spec.partition(":")
        try:
            obj = importlib.import_module(module)
            for part in attr.split("."):
                obj = getattr(obj, part)
        except (ImportError, AttributeError) as exc:
            raise KindError(f"{key}: cannot load kind {spec!r} ({type(exc).__name__}: {exc})") from None
    else:
        from importlib.metadata import entry_points

        found = [ep for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name == spec]
        if not found:
            known = ", ".join(sorted({k.config_kind for k in KINDS.values()}))
            raise KindError(f"{key}: unknown kind {spec!r} (built in: {known}; or package.module:KIND, or the "
                            f"name of a '{ENTRY_POINT_GROUP}' entry point)")
        try:
            obj = found[0].load()
        except Exception as exc:
            raise KindError(f"{key}: cannot load entry point {spec!r} ({type(exc).__name__}: {exc})") from None
    if not isinstance(obj, Kind):
        raise KindError(f"{key}: {spec!r} is a {type(obj).__name__}, not a labsat.kinds.Kind")
    return register_kind(replace(obj, config_kind=spec))


def kind_of(config, layer: str) -> Kind:
    """The kind of layer ``layer``; a kind from outside labsat is loaded and its settings validated."""
    if layer not in config.layers:
        raise KeyError(f"layers.{layer}: no such layer in the station (have: {', '.join(config.layers)})")
    cfg = config.layers[layer]
    kind = load_kind(cfg.kind, key=f"layers.{layer}.kind")
    if kind.config_model is not None and "_settings" not in cfg.__dict__:
        _bind_settings(config, layer, kind)
    return kind


def _bind_settings(config, layer: str, kind: Kind) -> None:
    """Validate a plugin layer's own keys with its kind's model; check its instrument references."""
    from pydantic import ValidationError

    cfg = config.layers[layer]
    data = {k: v for k, v in (cfg.model_extra or {}).items()}
    try:
        settings = kind.config_model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise KindError(f"layers.{layer}.{where}: {first['msg'].removeprefix('Value error, ')}") from None
    cfg.__dict__["_settings"] = settings
    if hasattr(settings, "check_references"):
        try:
            settings.check_references(layer, config.instruments)
        except ValueError as exc:
            raise KindError(str(exc)) from None


def settings_of(config, layer: str):
    """A plugin layer's validated settings (its kind's ``config_model``); the layer config otherwise."""
    kind_of(config, layer)
    cfg = config.layers[layer]
    return cfg.__dict__.get("_settings", cfg)


def layer_for_kind(config, name: str | None) -> str:
    """The station's layer of CLI kind ``name`` (``mesh``, ...); the first layer when ``name`` is None."""
    if name is None:
        return next(iter(config.layers))
    kinds = {lname: kind_of(config, lname) for lname in config.layers}
    matches = [lname for lname, kind in kinds.items() if name in (kind.name, kind.config_kind)]
    if not matches:
        have = ", ".join(f"{kinds[n].name} ({n})" for n in config.layers)
        known = ", ".join(k.name for k in KINDS.values())
        raise ValueError(f"--kind {name}: the station has no such layer (has: {have}; kinds: {known})")
    return matches[0]


def calibration_for(config, layer: str, device: str, calibration=None, force: bool = False) -> tuple[dict, str]:
    """The checked calibration record of ``layer`` (its twin state in ``record['twin']``) and its file: the
    file given, else the latest of this device and this layer's kind; checked against the kind's twin
    (finite values, shapes, known parameters) and, unless ``force``, for this device and kind."""
    from pathlib import Path

    from labsat.calibration.store import check_calibration, latest_calibration, load_calibration

    k = kind_of(config, layer)
    directory = config.resolve(config.station.calibration_dir)
    path = Path(calibration) if calibration else latest_calibration(directory, device, k.name)
    record = load_calibration(path)
    check_calibration(record, k.make_twin(config, layer), device=device, kind=k.name, force=force)
    return record, str(path)


def layer_seed(seed: int, layer: str, first: str) -> int:
    """The first layer of a station gets the station's chip seed; others a different, fixed one."""
    import zlib

    return seed if layer == first else seed + zlib.crc32(layer.encode()) % 100_000
