"""The physical network kinds: how each one builds its twin, its hardware and its virtual scene.

A kind is registered once, under the ``kind:`` value its layers use in instruments.yaml, with the
short name the CLI's ``--kind`` takes. Everything else (PhysicalLayer, optimizers, training, CLI,
calibration storage) is shared by all kinds.

- ``make_twin(config, layer) -> nn.Module``: the nominal (uncalibrated) differentiable twin, with
  ``forward(x, u)``, ``n_controls``, ``n_inputs``, ``n_outputs``, ``fitted_state()`` and
  ``load_fitted_state(state)``.
- ``make_hardware(station, layer)``: an object with ``forward(x, u) -> y`` (numpy), ``n_controls``,
  ``modes`` (inputs), counters ``batches``/``samples`` and ``forget_controls()``.
- ``make_scene(config, layer, seed)``: the virtual lab's hidden-truth physics for backend ``sim``.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class Kind:
    config_kind: str
    name: str
    description: str
    make_twin: Callable
    make_hardware: Callable
    make_scene: Callable


KINDS: dict[str, Kind] = {}


def register_kind(kind: Kind) -> Kind:
    KINDS[kind.config_kind] = kind
    return kind


def kind_of(config, layer: str) -> Kind:
    if layer not in config.layers:
        raise KeyError(f"layers.{layer}: no such layer in the station (have: {', '.join(config.layers)})")
    return KINDS[config.layers[layer].kind]


def layer_for_kind(config, name: str | None) -> str:
    """The station's layer of CLI kind ``name`` (``mesh``, ...); the first layer when ``name`` is None."""
    if name is None:
        return next(iter(config.layers))
    matches = [lname for lname, layer in config.layers.items() if KINDS[layer.kind].name == name]
    if not matches:
        have = ", ".join(f"{KINDS[l.kind].name} ({n})" for n, l in config.layers.items())
        known = ", ".join(k.name for k in KINDS.values())
        raise ValueError(f"--kind {name}: the station has no such layer (has: {have}; kinds: {known})")
    return matches[0]


# --- kind 1: MZI mesh with thermo-optic heaters ---
def _mesh_resistance(config, layer: str) -> float:
    return config.instruments[config.layers[layer].heaters.instrument].limits.resistance_ohm


def _mesh_twin(config, layer: str):
    from labsat.physical import twin_for

    return twin_for(config.layers[layer], _mesh_resistance(config, layer))


def _mesh_hardware(station, layer: str):
    from labsat.physical import MeshHardware

    cfg = station.config.layers[layer]
    return MeshHardware(cfg, heaters=station.instruments[cfg.heaters.instrument],
                        modulator=station.instruments[cfg.inputs.instrument],
                        daq=station.instruments[cfg.outputs.instrument])


def _mesh_scene(config, layer: str, seed: int):
    from labsat.drivers.sim.chip import ChipSpec, VirtualChip

    cfg = config.layers[layer]
    fields = {f.name for f in dataclasses.fields(ChipSpec)}
    overrides = {k: v for k, v in config.station.sim.model_dump().items() if k in fields and v is not None}
    spec = ChipSpec(modes=cfg.modes, heater_resistance_ohm=_mesh_resistance(config, layer), v2pi=cfg.v2pi,
                    modulator_vpi=cfg.modulator_vpi, laser_power_w=cfg.laser_power_w, **overrides)
    return VirtualChip(spec, seed=seed)


register_kind(Kind("mzi_mesh", "mesh", "MZI mesh (Clements) with thermo-optic heaters; analytic twin",
                   _mesh_twin, _mesh_hardware, _mesh_scene))
