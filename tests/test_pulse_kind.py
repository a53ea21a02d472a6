"""The pulse shaper + SHG + spectrometer kind: spectrometer driver on the virtual lab, the SHG scene,
the learned twin (beats a constant predictor on held-out settings), refresh, the vowel data, the CLI.

Small layers (4 input and 4 parameter macro-pixels) keep the measurements few; stations under tmp_path.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
import yaml
from typer.testing import CliRunner

from conftest import REPO, write_yaml
from labsat import cli
from labsat.calibration import measure
from labsat.calibration.pulse import TwinRefresher, fit_learned, prediction_error
from labsat.config import ConfigError, parse_config
from labsat.drivers.base import InstrumentError
from labsat.drivers.sim.shg import ShgScene, ShgSpec
from labsat.kinds import KINDS
from labsat.station import Station
from labsat.twins.pulse_learned import LearnedTwin
from labsat.vowels import PB1952_MEANS, VOWELS, generate_vowels, load_vowels, load_vowels_csv

runner = CliRunner()


def pulse_station(tmp_path, n_in: int = 4, n_ctrl: int = 4, pixels: int = 12) -> dict:
    d = yaml.safe_load((REPO / "stations" / "pulse.yaml").read_text())
    d["station"]["calibration_dir"] = str(tmp_path / "cal")
    d["station"]["runs_dir"] = str(tmp_path / "runs")
    d["instruments"]["spectrometer"]["channels"] = pixels
    layer = d["layers"]["shg"]
    layer.update(n_inputs=n_in, n_controls=n_ctrl)
    layer["outputs"]["channels"] = f"1-{pixels - 2}"
    return d


def test_spectrometer_driver_on_the_virtual_lab(tmp_path):
    config = parse_config(pulse_station(tmp_path))
    with Station(config) as st:
        spec = st.instruments["spectrometer"]
        assert "SIM-SPEC12" in spec.identity
        assert spec.integration_s == pytest.approx(1e-3)
        wl = spec.wavelengths_nm()
        assert wl.shape == (12,) and np.all(np.diff(wl) < 0) and 770 < wl.mean() < 780  # SH of 1550 nm
        dark = spec.acquire()  # the shaper blocks everything at start: read noise only
        assert dark.shape == (12,) and dark.max() < 100
        hw = st.layer()
        y = hw.forward(np.full((2, 4), 0.5), np.zeros(4))
        assert y.shape == (2, 10) and y.max() > 0.5  # bright SH with the band open
        spec.integration_s = 0.5  # 500 x longer: saturates
        with pytest.raises(InstrumentError, match="saturated"):
            hw.forward(np.zeros((1, 4)), np.zeros(4))
        with pytest.raises(ValueError, match="integration time"):
            spec.integration_s = -1
        shaper_sim = st.lab.instruments["shaper"]
    assert np.all(shaper_sim.port == 0)  # the station left the shaper in its safe state (blocked)


def test_shg_scene_physics():
    spec = ShgSpec(band_bins=32, pixels=12)
    scene = ShgScene(spec, seed=3)
    n = spec.band_bins + 2 * spec.margin_bins
    blocked = scene.expected_counts(np.zeros(n, dtype=complex))
    assert np.all(blocked == 0)
    rng = np.random.default_rng(0)
    inside = np.zeros(n, dtype=complex)
    inside[spec.margin_bins:-spec.margin_bins] = 1.0
    # compensating the pulse's own spectral phase (a transform-limited pulse) maximises the SH peak
    compensated = inside * np.exp(-1j * np.angle(scene.truth.envelope))
    random_phase = inside * np.exp(2j * np.pi * rng.uniform(size=n))
    assert scene.expected_counts(compensated).max() > 2 * scene.expected_counts(random_phase).max()
    # SHG is nonlinear: doubling the field quadruples the SH power
    assert scene.expected_counts(0.5 * inside) == pytest.approx(scene.expected_counts(inside) / 16)
    # a global phase does nothing; the crystal temperature (drift) moves the phase-matching curve
    np.testing.assert_allclose(scene.expected_counts(inside * np.exp(1j * 0.7)), scene.expected_counts(inside))
    warm = scene.expected_counts(inside, kelvin=2.0)
    assert np.abs(warm - scene.expected_counts(inside, kelvin=0.0)).max() > 0.05 * warm.max()


def test_learned_twin_beats_a_constant_predictor_on_held_out_settings(tmp_path):
    config = parse_config(pulse_station(tmp_path))
    with Station(config) as st:
        hw = st.layer()
        data = measure(hw, settings=200, inputs_per_setting=4, seed=0)
        assert hw.samples == 800 and hw.uploads == 800
        fit_set, held = data.split(0.2, seed=0)
        twin = LearnedTwin(4, 4, 10, hidden=64, depth=2)
        history = fit_learned(twin, fit_set, epochs=120)
        assert history[-1] < history[0]
        err = prediction_error(twin, held)
        assert err["rmse"] < 0.8 * err["constant_rmse"] and err["r2"] > 0.3
        # the calibration round trip of a learned twin (JSON-able state)
        other = KINDS["pulse_shg"].make_twin(config, "shg")
        assert other.n_outputs == 10 and other.n_controls == 4
        with pytest.raises(ValueError, match="does not fit"):
            other.load_fitted_state(twin.fitted_state())
        clone = LearnedTwin(4, 4, 10, hidden=64, depth=2, seed=5)
        clone.load_fitted_state(yaml.safe_load(yaml.safe_dump(twin.fitted_state())))
        x, u = torch.rand(3, 4, dtype=torch.float64), torch.rand(4, dtype=torch.float64)
        torch.testing.assert_close(clone(x, u), twin(x, u))
        # refresh near a parameter setting: measures there and lowers the twin's error there
        refresher = TwinRefresher(twin, hw, calibration=fit_set, settings=6, inputs=8, spread=0.03, epochs=40)
        u0 = np.full(4, 0.3)
        pool = np.random.default_rng(1).uniform(0, 1, (64, 4))
        first = refresher.refresh(u0, pool)
        second = refresher.refresh(u0, pool)
        assert refresher.samples == 96 and second < first


def test_vowel_data_set():
    formants, labels, speakers = generate_vowels(0)
    assert formants.shape == (1520, 4) and len(np.unique(speakers)) == 76
    assert np.bincount(labels).tolist() == [152] * len(VOWELS)
    again, _, _ = generate_vowels(0)
    np.testing.assert_array_equal(again, formants)  # seeded
    assert not np.array_equal(generate_vowels(1)[0], formants)
    # sampled around Peterson & Barney's Table II means: group/vowel medians within 5 % of them
    for group in ("m", "w", "c"):
        rows = np.char.startswith(speakers.astype(str), group)
        for v in range(len(VOWELS)):
            med = np.median(formants[rows & (labels == v)], axis=0)
            np.testing.assert_allclose(med, PB1952_MEANS[group][v], rtol=0.05)
    d = load_vowels(8, seed=0)
    assert d.n_classes == 10 and d.x_train.shape[1] == 8
    assert len(d.x_train) + len(d.x_test) == 1520 and len(d.x_test) == 20 * 19  # 19 of 76 speakers
    assert float(d.x_train.min()) >= 0 and float(d.x_train.max()) <= 1
    # not trivially separable, not noise: a linear model on unseen speakers lands near the real data's ~85 %
    from sklearn.linear_model import LogisticRegression
    lr = LogisticRegression(max_iter=5000).fit(d.x_train.numpy(), d.y_train.numpy())
    assert 0.75 <= lr.score(d.x_test.numpy(), d.y_test.numpy()) <= 0.95
    with pytest.raises(ValueError, match="features"):
        load_vowels(9)
    with pytest.raises(ValueError, match="speaker groups"):
        generate_vowels(0, speakers={"x": 3})


def test_vowel_csv_reader(tmp_path):
    formants, labels, speakers = generate_vowels(3, speakers={"m": 4, "w": 4, "c": 4})
    path = tmp_path / "vowels.csv"
    lines = ["type,speaker,vowel,f0,f1,f2,f3"] + [
        f"{s[0]},{s[1:]},{VOWELS[y]},{','.join(str(int(v)) for v in f)}" for f, y, s in zip(formants, labels, speakers)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    f2, y2, s2 = load_vowels_csv(path)
    np.testing.assert_array_equal(f2, formants)
    np.testing.assert_array_equal(y2, labels)
    np.testing.assert_array_equal(s2, speakers)
    d = load_vowels(4, seed=0, path=path)
    assert len(d.x_train) + len(d.x_test) == 240 and len(d.x_test) == 20 * 3
    with pytest.raises(FileNotFoundError, match="no such vowel CSV"):
        load_vowels_csv(tmp_path / "absent.csv")
    (tmp_path / "bad.csv").write_text("type,speaker,vowel,f0,f1,f2\nm,1,iy,1,2,3\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"missing column\(s\) \['f3'\]"):
        load_vowels_csv(tmp_path / "bad.csv")
    (tmp_path / "bad.csv").write_text("type,speaker,vowel,f0,f1,f2,f3\nm,1,oo,1,2,3,4\n", encoding="utf-8")
    with pytest.raises(ValueError, match="bad.csv:2: vowel 'oo'"):
        load_vowels_csv(tmp_path / "bad.csv")


def test_pulse_config_errors(tmp_path):
    d = pulse_station(tmp_path)
    d["layers"]["shg"]["outputs"]["channels"] = "0-40"
    with pytest.raises(ConfigError, match=r"layers.shg.outputs.channels: channel 12 does not exist"):
        parse_config(d)
    d = pulse_station(tmp_path)
    d["layers"]["shg"]["shaper"]["instrument"] = "spectrometer"
    with pytest.raises(ConfigError, match=r"is a spectrometer, shaper need a pulse_shaper"):
        parse_config(d)


def test_cli_train_pulse_offline_on_the_twin(tmp_path, monkeypatch):
    monkeypatch.setattr(cli.console, "_width", 250)
    path = write_yaml(tmp_path / "pulse.yaml", pulse_station(tmp_path))
    out = tmp_path / "p.pt"
    result = runner.invoke(cli.app, ["train", "--kind", "pulse", "--station", str(path), "--epochs", "1",
                                     "--optimizer", "adam", "--batch-size", "512", "--nominal", "--out", str(out)])
    assert result.exit_code == 0, result.output
    blob = torch.load(out, weights_only=False)
    assert blob["meta"]["kind"] == "pulse_shg" and blob["state_dict"]["physical.u"].shape == (4,)
