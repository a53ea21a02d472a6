"""Kind 4: pulse shaper + second-harmonic generation + spectrometer, physics treated as unknown; a neural
twin learned from measurements. Config: :class:`labsat.config.PulseLayerConfig`."""
from __future__ import annotations

from labsat.kinds.registry import Kind, layer_seed, register_kind


def _pulse_twin(config, layer: str):
    from labsat.calibration.pulse import OnlineRefresh
    from labsat.twins.pulse_learned import twin_for_layer

    twin = twin_for_layer(config.layers[layer])
    twin.refresher = OnlineRefresh  # refreshed online from training's own measurements
    return twin


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
    return ShgScene(spec, seed=layer_seed(seed, layer, next(iter(config.layers))),
                    shaper_name=cfg.shaper.instrument)


def _pulse_fit(twin, data, progress=None):
    from labsat.calibration.pulse import fit_learned

    return fit_learned(twin, data, progress=progress)


KIND = register_kind(Kind("pulse_shg", "pulse",
                          "pulse shaper + second-harmonic generation + spectrometer; physics unknown, neural twin "
                          "learned from measurements", _pulse_twin, _pulse_hardware, _pulse_scene, fit_twin=_pulse_fit))
