"""A wider pulse layer: the benchmark's --n-inputs override (issue 17, round 3b) at CI size.

The override goes through the benchmark's one station path (benchmarks/pulse_pat.py:station_config, the
same as --n-controls): the layer then has the extra input pixels, spread across the band where the light
is, the hardware sees every one of them above its noise, and the kind's twin and the data set follow.
"""
from __future__ import annotations

import importlib.util

import numpy as np
import torch
from conftest import REPO

from labsat.data import load_digits
from labsat.hardware.pulse import input_pixels
from labsat.kinds import KINDS
from labsat.station import Station


def _pulse_pat():
    spec = importlib.util.spec_from_file_location("pulse_pat", REPO / "benchmarks" / "pulse_pat.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_n_inputs_override_widens_the_layer_and_every_input_is_seen(tmp_path):
    bench = _pulse_pat()
    cfg = bench.station_config(REPO / "stations" / "pulse.yaml", None, tmp_path, n_inputs=12)
    lname = next(iter(cfg.layers))
    layer = cfg.layers[lname]
    assert (layer.n_inputs, layer.n_controls, layer.input_layout) == (12, 40, "interleaved")
    # without the override the station is unchanged
    assert bench.station_config(REPO / "stations" / "pulse.yaml", None, tmp_path).layers[lname].n_inputs == 8
    # interleaved: inputs spread over the 52 macro-pixels, none at the band's edges, all distinct
    pix = input_pixels(12, 40, "interleaved")
    assert len(set(pix.tolist())) == 12 and pix.min() > 0 and pix.max() < 51
    assert np.ptp(np.diff(pix)) <= 1
    with Station(cfg, chip_seed=1) as st:
        hw = st.layer()
        assert hw.modes == 12 and hw.n_controls == 40 and len(hw.control_pix) == 40
        u, reps = np.full(40, 0.5), 4
        x = np.full((13, 12), 0.5)
        x[np.arange(1, 13), np.arange(12)] = 1.0  # row 0: all inputs at 0.5; row k + 1: input k raised alone
        y = hw.forward(np.repeat(x, reps, 0), u).reshape(13, reps, -1)
        mean, noise_var = y.mean(1), y.var(1, ddof=1).mean(0) / reps  # per output, of a mean of `reps`
        change = ((mean[1:] - mean[0]) ** 2).sum(1)  # squared change of the SH spectrum, per input pixel
        snr = change / (2 * noise_var.sum())  # over the detector noise of the difference
        # every input pixel alone moves the spectrum above the noise; those in the pulse's bright middle far
        # above it, the outermost (at ~14 % of the peak amplitude) least: visibility follows the light
        assert (snr > 1).all(), snr
        assert snr[3:9].min() > 30 and max(snr[0], snr[-1]) < snr[3:9].min(), snr
    twin = KINDS["pulse_shg"].make_twin(cfg, lname)
    assert twin.n_inputs == 12
    y = twin(torch.rand(3, 12, dtype=torch.float64), torch.full((40,), 0.5, dtype=torch.float64))
    assert y.shape == (3, len(layer.outputs.channels))
    assert load_digits(layer.n_inputs, seed=0).x_train.shape[1] == 12


def test_bright_order_puts_the_first_features_in_the_brightest_input_pixels():
    bench = _pulse_pat()
    data = load_digits(12, seed=0)
    out = bench.bright_order(data, 12, 40, "interleaved")
    pix = input_pixels(12, 40, "interleaved")
    dist = np.abs(pix - 25.5)
    # features 0 and 1 (PCA's largest) sit in the two input pixels nearest the band's centre, the last in the edges
    for k, j in ((0, int(np.argsort(dist, kind="stable")[0])), (11, int(np.argsort(dist, kind="stable")[-1]))):
        torch.testing.assert_close(out.x_train[:, j], data.x_train[:, k])
    assert dist[[int((out.x_test[0] == data.x_test[0, k]).nonzero()[0]) for k in (0, 1)]].max() == dist.min()
    # a permutation of the columns: same values, labels untouched
    torch.testing.assert_close(out.x_train.sort(1).values, data.x_train.sort(1).values)
    assert torch.equal(out.y_test, data.y_test)


def test_against_pairs_runs_by_device_seed_and_method():
    bench = _pulse_pat()
    run = lambda dev, seed, m, acc, twin=0.9: {"device": dev, "seed": seed, "method": m,
                                               "device_test": acc, "twin_test": twin}
    new = [run(2, 0, "PAT", 0.80), run(2, 1, "PAT", 0.70), run(3, 0, "PAT", 0.75), run(2, 0, "in silico", 0.40)]
    base = [run(2, 0, "PAT", 0.78), run(2, 1, "PAT", 0.74), run(2, 0, "in silico", 0.50, 0.8)]  # (3, 0) missing
    lines = bench.against(new, base, ["in silico", "PAT"])
    assert len(lines) == 2
    assert "paired -10.0 ± 0.0 points, better in 0 of 1" in lines[0] and "90.0 vs 80.0 %" in lines[0]
    assert "paired -1.0 ± 3.0 points, better in 1 of 2" in lines[1]  # (+2, -4): device 3 has no baseline
