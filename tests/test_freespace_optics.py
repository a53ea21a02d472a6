"""Free-space kind: optics (energy, scene vs twin), drivers over the virtual lab, config checks."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from labsat.drivers.base import InstrumentError, LimitError
from labsat.drivers.sim.freespace import (FreeSpaceScene, FreeSpaceSpec, FreeSpaceTruth, angular_spectrum_kernel,
                                          propagate)
from labsat.twins.freespace import FreeSpaceTwin, detector_boxes

SMALL = dict(grid=16, masks=2, padding=2, image_size=8, classes=4, detector_px=3)


def small_station(tmp_path, seed: int = 1) -> dict:
    g = SMALL["grid"]
    return {
        "station": {"name": "fs test", "backend": "sim", "calibration_dir": str(tmp_path / "cal"),
                    "runs_dir": str(tmp_path / "runs"), "sim": {"chip_seed": seed}},
        "instruments": {
            "input_slm": {"kind": "slm", "width": g, "height": g, "modulation": "amplitude"},
            "mask_slm": {"kind": "slm", "width": 2 * g, "height": g, "modulation": "phase"},
            "camera": {"kind": "camera", "width": g, "height": g, "exposure_us": 10},
        },
        "layers": {"freespace": {"kind": "freespace", "input_slm": "input_slm", "mask_slm": "mask_slm",
                                 "camera": "camera", **SMALL}},
    }


def test_angular_spectrum_propagation_conserves_energy():
    rng = np.random.default_rng(0)
    kern = angular_spectrum_kernel(64, 8e-6, 532e-9, 1e-3)
    field = rng.normal(size=(3, 64, 64)) + 1j * rng.normal(size=(3, 64, 64))
    out = propagate(field, kern)
    np.testing.assert_allclose((abs(out) ** 2).sum((1, 2)), (abs(field) ** 2).sum((1, 2)), rtol=1e-10)
    assert not np.allclose(out, field)  # it did propagate


def test_twin_propagation_conserves_energy_through_phase_masks():
    twin = FreeSpaceTwin(**SMALL)
    x = torch.rand(2, twin.n_inputs, dtype=torch.float64)
    field = torch.nn.functional.pad(x.reshape(2, 16, 16), (8, 8, 8, 8)).to(torch.complex64)
    u = torch.rand(twin.n_controls, dtype=torch.float64)
    trans = twin.transmissions(u)
    assert torch.allclose(trans.abs(), torch.ones_like(trans.abs()), atol=1e-5)  # phase-only, |t| = 1
    out = twin._propagate(twin._propagate(field) * trans[0])
    torch.testing.assert_close((out.abs() ** 2).sum((1, 2)), (field.abs() ** 2).sum((1, 2)), rtol=1e-4, atol=0)


def test_scene_and_twin_agree_when_the_twin_knows_the_truth():
    truth = FreeSpaceTruth(rotation_deg=0.7, shift_x_px=0.3, shift_y_px=-0.4, scale=1.02, crosstalk=0.05)
    spec = FreeSpaceSpec(grid=16, padding=2, camera_shape=(16, 16), shot_noise=False, read_noise_counts=0)
    scene = FreeSpaceScene(spec, truth=truth)
    rng = np.random.default_rng(1)
    u = rng.uniform(0, 1, 2 * 16 * 16)
    x = rng.uniform(0, 1, (4, 16 * 16))
    scene.set_masks(2 * np.pi * u)
    measured = scene.intensity(x.reshape(4, 16, 16))
    twin = FreeSpaceTwin(**SMALL)
    nominal = twin.frames(torch.tensor(x), torch.tensor(u)).numpy()
    twin.load_fitted_state(vars(truth))
    fitted = twin.frames(torch.tensor(x), torch.tensor(u)).numpy()
    assert np.abs(fitted - measured).max() < 1e-4 * measured.max()
    assert np.abs(nominal - measured).max() > 0.05 * measured.max()  # misalignment matters


def test_detector_layout_3_4_3():
    boxes = detector_boxes(32, 10, 4)
    rows = sorted({y for y, _ in boxes})
    assert [sum(1 for y, _ in boxes if y == r) for r in rows] == [3, 4, 3]
    with pytest.raises(ValueError):
        detector_boxes(8, 10, 4)


def test_station_drivers_and_safe_state(tmp_path):
    from labsat.config import parse_config
    from labsat.station import Station

    with Station(parse_config(small_station(tmp_path))) as st:
        hw = st.layer()
        scene = st.lab.scenes["freespace"]
        slm, cam = st.instruments["mask_slm"], st.instruments["camera"]
        u = np.random.default_rng(0).uniform(0, 1, hw.n_controls)
        y = hw.forward(np.random.default_rng(1).uniform(0, 1, (5, hw.modes)), u)
        assert y.shape == (5, 4) and np.allclose(y.sum(1), 1.0)
        assert np.any(slm.displayed() != 0)
        np.testing.assert_allclose(scene.mask_phase.ravel() % (2 * np.pi), (2 * np.pi * u) % (2 * np.pi),
                                   atol=2 * np.pi / 256)
        with pytest.raises(LimitError):
            slm.show(np.full((16, 32), 300))
        with pytest.raises(LimitError):
            slm.show(np.zeros((16, 16)))
        with pytest.raises(LimitError):
            cam.exposure_us = 0.0
        cam.exposure_us = 1e6  # far too long: the camera saturates, and says so
        with pytest.raises(InstrumentError, match="saturated"):
            hw.run(np.ones((1, hw.modes)))
    assert not np.any(scene.mask_phase)  # the station's exit showed the flat (safe) frame


def test_config_checks_name_the_key(tmp_path):
    from labsat.config import ConfigError, parse_config

    bad = small_station(tmp_path)
    bad["instruments"]["mask_slm"]["width"] = 20
    with pytest.raises(ConfigError, match="layers.freespace.masks"):
        parse_config(bad)
    bad = small_station(tmp_path)
    bad["instruments"]["input_slm"]["modulation"] = "phase"
    with pytest.raises(ConfigError, match="layers.freespace.input_slm"):
        parse_config(bad)
