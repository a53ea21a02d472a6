"""Kind 1: MZI mesh (Clements) of thermo-optic phase shifters; analytic twin with fitted imperfections.

Config: :class:`labsat.config.MeshLayerConfig`. Control law: :func:`labsat.hardware.heater_bank.heater_voltages`.
Fit: :func:`labsat.calibration.fit_twin` (the default fit). Virtual scene: :class:`labsat.drivers.sim.chip.VirtualChip`.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from labsat.hardware.heater_bank import HeaterBankHardware
from labsat.kinds.registry import Kind, register_kind


def resistance(config, layer: str) -> float:
    return config.instruments[config.layers[layer].heaters.instrument].limits.resistance_ohm


def twin_for(cfg, heater_resistance_ohm: float):
    """The nominal (uncalibrated) twin of a mesh layer, from its datasheet values."""
    from labsat.twins.mzi import MZIMeshTwin

    eta = 2 * np.pi * heater_resistance_ohm / cfg.v2pi**2  # rad/W
    return MZIMeshTwin(cfg.modes, phase_per_u=eta * cfg.v_max**2 / heater_resistance_ohm)


class MeshHardware(HeaterBankHardware):
    """A mesh on the bench: controls -> heater voltages, inputs -> modulator voltages, detectors -> powers.

    Counts every hardware forward (``batches``) and every sample sent through the chip (``samples``).
    """

    name = "mesh"

    def __init__(self, cfg, heaters, modulator, daq, max_batch: int | None = None):
        super().__init__(cfg, heaters, modulator, daq, max_batch)
        self.modes = cfg.modes
        self.power_per_port = self.output_scale = cfg.laser_power_w / cfg.modes

    def input_voltages(self, x: np.ndarray) -> np.ndarray:
        """Modulator voltages for field amplitudes ``x`` in [0, 1] (amplitude ~ sin)."""
        return 2 * self.cfg.modulator_vpi / np.pi * np.arcsin(x)


def make_twin(config, layer: str):
    return twin_for(config.layers[layer], resistance(config, layer))


def make_hardware(station, layer: str):
    return MeshHardware.for_layer(station, layer)


def make_scene(config, layer: str, seed: int):
    from labsat.drivers.sim.chip import ChipSpec, VirtualChip

    cfg = config.layers[layer]
    fields = {f.name for f in dataclasses.fields(ChipSpec)}
    overrides = {k: v for k, v in config.station.sim.model_dump().items() if k in fields and v is not None}
    spec = ChipSpec(modes=cfg.modes, heater_resistance_ohm=resistance(config, layer), v2pi=cfg.v2pi,
                    modulator_vpi=cfg.modulator_vpi, laser_power_w=cfg.laser_power_w, **overrides)
    return VirtualChip(spec, seed=seed)


KIND = register_kind(Kind("mzi_mesh", "mesh", "MZI mesh (Clements) with thermo-optic heaters; analytic twin",
                          make_twin, make_hardware, make_scene))
