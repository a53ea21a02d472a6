"""Kind 2: microring weight bank (add-drop rings, heaters, balanced detectors); analytic twin with a fitted
thermal crosstalk matrix. Config: :class:`labsat.config.MicroringLayerConfig`; control law
:func:`labsat.hardware.heater_bank.heater_voltages`; fit :func:`labsat.calibration.microring.fit_microring`."""
from __future__ import annotations

from labsat.kinds.registry import Kind, layer_seed, register_kind


def _ring_resistance(config, layer: str) -> float:
    return config.instruments[config.layers[layer].heaters.instrument].limits.resistance_ohm


def _ring_twin(config, layer: str):
    from labsat.twins.microring import twin_for_layer

    return twin_for_layer(config.layers[layer], _ring_resistance(config, layer))


def _ring_hardware(station, layer: str):
    from labsat.hardware.microring import MicroringHardware

    return MicroringHardware.for_layer(station, layer)


def _ring_scene(config, layer: str, seed: int):
    from labsat.drivers.sim.microring import MicroringBank, MicroringSpec

    cfg = config.layers[layer]
    sim = config.station.sim
    extra = {} if sim.drift_kelvin_per_hour is None else {"drift_kelvin_per_hour": sim.drift_kelvin_per_hour}
    spec = MicroringSpec(n_inputs=cfg.n_inputs, n_outputs=cfg.n_outputs,
                         heater_resistance_ohm=_ring_resistance(config, layer), hwhm_pm=cfg.hwhm_pm,
                         bias_pm=cfg.bias_pm, shift_pm_per_mw=cfg.shift_pm_per_mw,
                         modulator_vpi=cfg.modulator_vpi, line_power_w=cfg.line_power_w, **extra)
    return MicroringBank(spec, seed=layer_seed(seed, layer, next(iter(config.layers))))


def _ring_fit(twin, data, progress=None):
    from labsat.calibration.microring import fit_microring

    return fit_microring(twin, data, progress=progress)


KIND = register_kind(Kind("microring_bank", "microring",
                          "microring weight bank (add-drop rings, heaters, balanced detectors); analytic twin with "
                          "fitted thermal crosstalk", _ring_twin, _ring_hardware, _ring_scene, fit_twin=_ring_fit))
