"""The pulse kind's twin at CI size: where the inputs sit on the shaper, the SHG-structured learned twin
(its physics form, its fit over random parameters against a black-box MLP, its refresh, its round trip).

Small layers (4 input and 12 parameter macro-pixels, 10 outputs) keep the queries few.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
import yaml

from conftest import REPO
from labsat.calibration import measure
from labsat.calibration.learned import collect
from labsat.config import parse_config
from labsat.drivers.sim.shg import ShgScene, ShgSpec
from labsat.hardware.pulse import PulseHardware, input_pixels
from labsat.station import Station
from labsat.twins.pulse_learned import (ShgTwin, TwinEnsemble, fit_learned, make_member, prediction_error,
                                        train_twin, twin_for_layer, _flatten)


def small_station(tmp_path, layout: str = "interleaved", n_in: int = 4, n_ctrl: int = 12) -> dict:
    d = yaml.safe_load((REPO / "stations" / "pulse.yaml").read_text())
    d["station"]["calibration_dir"] = str(tmp_path / "cal")
    d["station"]["runs_dir"] = str(tmp_path / "runs")
    d["instruments"]["spectrometer"]["channels"] = 12
    d["layers"]["shg"].update(n_inputs=n_in, n_controls=n_ctrl, input_layout=layout)
    d["layers"]["shg"]["outputs"]["channels"] = "1-10"
    return d


def test_input_pixels_layouts():
    assert list(input_pixels(3, 5, "first")) == [0, 1, 2]
    spread = input_pixels(8, 40, "interleaved")
    assert len(set(spread)) == 8 and spread.min() >= 0 and spread.max() < 48
    gaps = np.diff(spread)
    assert gaps.min() == gaps.max() == 6  # evenly spread
    assert abs(spread.mean() - 23.5) <= 0.5  # centred on the band
    with pytest.raises(ValueError, match="input_layout must be 'first' or 'interleaved'"):
        input_pixels(2, 2, "random")


def test_hardware_writes_inputs_where_the_layout_says(tmp_path):
    cfg = parse_config(small_station(tmp_path)).layers["shg"]

    class Grid:  # the shaper as PulseHardware sees it at construction: its frequency grid
        def frequencies(self):
            return np.round(191.25 + 0.001 * np.arange(5026), 3)

    hw = PulseHardware(cfg, Grid(), spectrometer=None)
    x, u = np.full(4, 0.5), np.full(12, 0.25)
    per_pixel = hw.phases(x, u)[::cfg.pixel_bins]
    ins = input_pixels(4, 12, "interleaved")
    np.testing.assert_allclose(per_pixel[ins], np.pi * 0.5)
    np.testing.assert_allclose(np.delete(per_pixel, ins), 2 * np.pi * 0.25)


def test_shg_twin_has_the_form_of_the_physics():
    """With the device's hidden pulse spectrum and leakage put in, the twin's SH power is the physical one."""
    n_in, n_c, pb = 4, 12, 4
    spec = ShgSpec(band_bins=(n_in + n_c) * pb, pixels=12)
    scene = ShgScene(spec, seed=3)
    twin = ShgTwin(n_in, n_c, 10, pixel_bins=pb, layout="interleaved", detector_bins=10_000)  # no pooling
    env = scene.truth.envelope[spec.margin_bins - 1:-(spec.margin_bins - 1)]
    with torch.no_grad():
        twin.env_re.copy_(torch.as_tensor(env.real))
        twin.env_im.copy_(torch.as_tensor(env.imag))
        twin.leak.fill_(scene.truth.slm_blur)
        twin.pool.copy_(torch.eye(twin.pool.shape[0], dtype=torch.float64))
    rng = np.random.default_rng(0)
    x, u = rng.uniform(0, 1, n_in), rng.uniform(0, 1, n_c)
    ins = input_pixels(n_in, n_c, "interleaved")
    pix = np.empty(n_in + n_c)
    pix[ins], pix[np.setdiff1d(np.arange(n_in + n_c), ins)] = np.pi * x, 2 * np.pi * u
    n = spec.band_bins + 2 * spec.margin_bins
    mask = np.zeros(n, dtype=complex)
    mask[spec.margin_bins:-spec.margin_bins] = np.exp(1j * np.repeat(pix, pb))
    b = scene.truth.slm_blur
    leaked = mask.copy()
    leaked[1:-1] = (1 - 2 * b) * mask[1:-1] + b * (mask[:-2] + mask[2:])
    z = (np.arange(2 * n - 1) - (n - 1)) / n
    eta = np.sinc((z - scene.truth.pm_offset) / spec.pm_width) ** 2
    truth = scene._sh_power(scene.truth.envelope * leaked, 0.0) / eta  # without phase matching (the detector's)
    lo = 2 * (spec.margin_bins - 1)
    mine = twin.sh_power(torch.as_tensor(x)[None], torch.as_tensor(u)[None])[0].numpy() * twin.n_bins
    np.testing.assert_allclose(mine, truth[lo:lo + len(mine)], rtol=1e-9, atol=1e-12 * truth.max())


@pytest.fixture(scope="module")
def measured(tmp_path_factory):
    """A small interleaved station: 150 random settings x 4 inputs, and 40 settings near one u0."""
    tmp = tmp_path_factory.mktemp("pulse-twin")
    config = parse_config(small_station(tmp))
    with Station(config) as st:
        hw = st.layer()
        data = measure(hw, settings=150, inputs_per_setting=4, seed=0)
        u0 = np.random.default_rng(1).uniform(0.1, 0.9, 12)
        near = collect(hw, 40, 4, seed=2, center=u0, sigma=0.05)
    fit_set, held = data.split(0.2, seed=0)
    return config, fit_set, held, near


def test_structured_twin_generalises_over_random_parameters_where_an_mlp_does_not(measured):
    config, fit_set, held, near = measured
    twin = twin_for_layer(config.layers["shg"], members=2)
    assert isinstance(twin, TwinEnsemble) and all(isinstance(m, ShgTwin) for m in twin.members)
    history = fit_learned(twin, fit_set)
    assert history[-1] < 0.5 * history[0]
    err = prediction_error(twin, held)  # parameters it never saw, drawn from the whole range
    assert err["r2"] > 0.9, err
    assert prediction_error(twin, near)["r2"] > 0.85
    mlp = make_member(4, 12, 10, "mlp", hidden=64, depth=2)
    fit_learned(mlp, fit_set, epochs=60)
    assert prediction_error(mlp, held)["r2"] < err["r2"] - 0.2  # the black box, same 480 queries
    # the members differ (own seeds, own rows) and their spread is recorded for cautious steps
    ys = twin.all_members(torch.rand(5, 4, dtype=torch.float64), torch.rand(12, dtype=torch.float64))
    assert not torch.allclose(ys[0], ys[1]) and float(twin.reference_spread) > 0
    # round trip through the calibration file's JSON-able state; a twin of another layout is refused
    clone = twin_for_layer(config.layers["shg"], members=2)
    clone.load_fitted_state(yaml.safe_load(yaml.safe_dump(twin.fitted_state())))
    x, u = torch.rand(6, 4, dtype=torch.float64), torch.rand(12, dtype=torch.float64)
    torch.testing.assert_close(clone(x, u), twin(x, u))
    other = twin_for_layer(config.layers["shg"].model_copy(update={"input_layout": "first"}), members=2)
    with pytest.raises(ValueError, match="does not fit this layer"):
        other.load_fitted_state(twin.fitted_state())


def test_refresh_fits_the_window_without_forgetting_the_rest(measured):
    config, fit_set, held, near = measured
    twin = make_member(4, 12, 10, "shg", pixel_bins=4, layout="interleaved")
    fit_learned(twin, fit_set)
    x, u, y = _flatten(near)
    before_near = prediction_error(twin, near)["rmse"]
    before_global = prediction_error(twin, held)["r2"]
    train_twin(twin, x[:96], u[:96], y[:96], epochs=4, renormalise=False)  # an online refresh's call
    assert prediction_error(twin, near)["rmse"] < 0.8 * before_near  # 0.0088 -> 0.0056 when written
    assert prediction_error(twin, held)["r2"] > before_global - 0.05


def test_a_saved_models_encoder_reaches_the_pulse_data(tmp_path):
    """`labsat evaluate` rebuilds the data set with the model's saved encoder (it crashed on the pulse kind)."""
    from labsat.workflows.training import dataset_for

    twin = twin_for_layer(parse_config(small_station(tmp_path, n_in=4)).layers["shg"], members=1)
    data = twin.load_data(seed=0)
    again = dataset_for(twin, encoder_state=data.encoder.state())
    assert again.name == "vowels"
    torch.testing.assert_close(again.x_test, data.x_test)
