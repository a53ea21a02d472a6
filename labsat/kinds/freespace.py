"""Kind 3: free-space optics, phase masks on an SLM with camera readout; angular-spectrum twin with fitted
misalignment. Config: :class:`labsat.config.FreeSpaceLayerConfig`; fit :func:`labsat.calibration.freespace.fit_freespace`."""
from __future__ import annotations

from labsat.kinds.registry import Kind, layer_seed, register_kind


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
    scene = FreeSpaceScene(spec, seed=layer_seed(seed, layer, next(iter(config.layers))))
    scene.roles = {cfg.input_slm: "input", cfg.mask_slm: "masks"}
    return scene


def _freespace_fit(twin, data, progress=None):
    from labsat.calibration.freespace import fit_freespace

    return fit_freespace(twin, data, progress=progress)


KIND = register_kind(Kind("freespace", "freespace",
                          "free-space optics: phase masks on an SLM, camera readout; angular-spectrum twin with fitted "
                          "misalignment (rotation, shift, scale) and pixel crosstalk",
                          _freespace_twin, _freespace_hardware, _freespace_scene, fit_twin=_freespace_fit))
