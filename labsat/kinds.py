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
    # optional: fit_twin(twin, measurements, progress=report) -> loss history, used by `labsat calibrate`
    # in place of calibration.fit_twin (the MZI mesh's fit) for kinds with other twin parameters
    fit_twin: Callable | None = None


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


# --- kind 2: microring weight bank with thermo-optic heaters and balanced photodetectors ---
def _ring_resistance(config, layer: str) -> float:
    return config.instruments[config.layers[layer].heaters.instrument].limits.resistance_ohm


def _ring_twin(config, layer: str):
    from labsat.twins.microring import twin_for_layer

    return twin_for_layer(config.layers[layer], _ring_resistance(config, layer))


def _ring_hardware(station, layer: str):
    from labsat.hardware.microring import MicroringHardware

    cfg = station.config.layers[layer]
    return MicroringHardware(cfg, heaters=station.instruments[cfg.heaters.instrument],
                             modulator=station.instruments[cfg.inputs.instrument],
                             daq=station.instruments[cfg.outputs.instrument])


def _layer_seed(seed: int, layer: str, first: str) -> int:
    """The first layer of a station gets the station's chip seed; others a different, fixed one."""
    import zlib

    return seed if layer == first else seed + zlib.crc32(layer.encode()) % 100_000


def _ring_scene(config, layer: str, seed: int):
    from labsat.drivers.sim.microring import MicroringBank, MicroringSpec

    cfg = config.layers[layer]
    sim = config.station.sim
    extra = {} if sim.drift_kelvin_per_hour is None else {"drift_kelvin_per_hour": sim.drift_kelvin_per_hour}
    spec = MicroringSpec(n_inputs=cfg.n_inputs, n_outputs=cfg.n_outputs,
                         heater_resistance_ohm=_ring_resistance(config, layer), hwhm_pm=cfg.hwhm_pm,
                         bias_pm=cfg.bias_pm, shift_pm_per_mw=cfg.shift_pm_per_mw,
                         modulator_vpi=cfg.modulator_vpi, line_power_w=cfg.line_power_w, **extra)
    return MicroringBank(spec, seed=_layer_seed(seed, layer, next(iter(config.layers))))


def _ring_fit(twin, data, progress=None):
    from labsat.twins.microring import fit_microring

    return fit_microring(twin, data, progress=progress)


register_kind(Kind("microring_bank", "microring",
                   "microring weight bank (add-drop rings, heaters, balanced detectors); analytic twin with "
                   "fitted thermal crosstalk", _ring_twin, _ring_hardware, _ring_scene, fit_twin=_ring_fit))


# --- kind 3: free-space optics (phase masks on an SLM, camera readout) ---
def _freespace_twin(config, layer: str):
    from labsat.twins.freespace import twin_for_layer

    return twin_for_layer(config.layers[layer])


def _freespace_hardware(station, layer: str):
    from labsat.hardware.freespace import FreeSpaceHardware

    cfg = station.config.layers[layer]
    return FreeSpaceHardware(cfg, input_slm=station.instruments[cfg.input_slm],
                             mask_slm=station.instruments[cfg.mask_slm], camera=station.instruments[cfg.camera])


def _freespace_scene(config, layer: str, seed: int):
    from labsat.drivers.sim.freespace import FreeSpaceScene, FreeSpaceSpec

    cfg = config.layers[layer]
    cam = config.instruments[cfg.camera]
    spec = FreeSpaceSpec(grid=cfg.grid, masks=cfg.masks, pitch_um=cfg.pitch_um, wavelength_nm=cfg.wavelength_nm,
                         distance_mm=cfg.distance_mm, padding=cfg.padding, camera_shape=(cam.height, cam.width))
    scene = FreeSpaceScene(spec, seed=_layer_seed(seed, layer, next(iter(config.layers))))
    scene.roles = {cfg.input_slm: "input", cfg.mask_slm: "masks"}
    return scene


def _freespace_fit(twin, data, progress=None):
    from labsat.calibration.freespace import fit_freespace

    return fit_freespace(twin, data, progress=progress)


register_kind(Kind("freespace", "freespace",
                   "free-space optics: phase masks on an SLM, camera readout; angular-spectrum twin with fitted "
                   "misalignment (rotation, shift, scale) and pixel crosstalk",
                   _freespace_twin, _freespace_hardware, _freespace_scene, fit_twin=_freespace_fit))


# --- kind 3: pulse shaper + second-harmonic generation + spectrometer, physics treated as unknown ---
def _pulse_twin(config, layer: str):
    from labsat.twins.pulse_learned import twin_for_layer

    return twin_for_layer(config.layers[layer])


def _pulse_hardware(station, layer: str):
    from labsat.hardware.pulse import PulseHardware

    cfg = station.config.layers[layer]
    return PulseHardware(cfg, shaper=station.instruments[cfg.shaper.instrument],
                         spectrometer=station.instruments[cfg.outputs.instrument])


def _pulse_scene(config, layer: str, seed: int):
    from labsat.drivers.sim.shg import ShgScene, ShgSpec

    cfg = config.layers[layer]
    spec = ShgSpec(start_thz=cfg.start_thz, band_bins=(cfg.n_inputs + cfg.n_controls) * cfg.pixel_bins,
                   pixels=config.instruments[cfg.outputs.instrument].channels)
    return ShgScene(spec, seed=_layer_seed(seed, layer, next(iter(config.layers))),
                    shaper_name=cfg.shaper.instrument)


def _pulse_fit(twin, data, progress=None):
    from labsat.twins.pulse_learned import fit_learned

    return fit_learned(twin, data, progress=progress)


register_kind(Kind("pulse_shg", "pulse",
                   "pulse shaper + second-harmonic generation + spectrometer; physics unknown, neural twin "
                   "learned from measurements", _pulse_twin, _pulse_hardware, _pulse_scene, fit_twin=_pulse_fit))
