"""labsat.paper.common: the declared chip sets, settings overrides, the image loader, the outputs."""
import json

import pytest
import torch

from labsat import paper
from labsat.paper import common


def test_protocol_rejects_tuning_chips_among_evaluation_chips():
    with pytest.raises(ValueError, match="disjoint"):
        common.Protocol(eval_chips=(common.TUNING_CHIPS[0], 201))


def test_full_protocol_needs_five_chips_and_three_seeds():
    with pytest.raises(ValueError, match="5 evaluation chips x 3 seeds"):
        common.Protocol(eval_chips=common.EVAL_CHIPS[:4], seeds=(0, 1, 2), full=True)
    common.Protocol(eval_chips=common.EVAL_CHIPS[:5], seeds=(0, 1, 2), full=True)


def test_transfer_chips_are_never_tuning_or_evaluation_chips():
    new = {common.transfer_chip(p, k) for p in range(5) for k in range(5)}
    assert len(new) == 25
    assert not new & (set(common.TUNING_CHIPS) | set(common.EVAL_CHIPS))


def test_parse_settings_types_and_names_the_bad_pair():
    defaults = {"epochs": 40, "readout": "paper", "sigma": 0.15, "drifts": (0.0, -1.0)}
    got = paper.parse_settings(["epochs=3", "readout=scale", "sigma=0.2", "drifts=0,-2"], defaults)
    assert got == {"epochs": 3, "readout": "scale", "sigma": 0.2, "drifts": (0.0, -2.0)}
    with pytest.raises(ValueError, match="'colour=red'"):
        paper.parse_settings(["colour=red"], defaults)
    with pytest.raises(ValueError, match="'epochs=many'"):
        paper.parse_settings(["epochs=many"], defaults)


def test_load_images_digits_shapes_and_subsets():
    xtr, ytr, xte, yte, name = common.load_images("digits", n_train=50, n_test=20)
    assert xtr.shape == (50, 1, 28, 28) and xte.shape == (20, 1, 28, 28)
    assert xtr.dtype == torch.float32 and 0.0 <= float(xtr.min()) and float(xtr.max()) <= 1.0
    assert "50 train / 20 test" in name
    with pytest.raises(ValueError, match="unknown data set"):
        common.load_images("cifar")


def test_summaries_and_outputs(tmp_path):
    rows = [{"m": "a", "acc": 0.5}, {"m": "a", "acc": 0.7}, {"m": "b", "acc": 1.0}]
    s = common.summarise(rows, ("m",), "acc")
    assert s[("a",)][0] == pytest.approx(0.6) and s[("a",)][2] == 2 and s[("b",)] == (1.0, 0.0, 1)
    assert common.fmt([0.5, 0.7]) == "60.0 ± 14.1 (2)"
    fig = common.plt().figure()
    common.write_results(tmp_path, rows, "| x |\n", {"k": 1}, fig)
    assert json.loads((tmp_path / "results.json").read_text())["rows"] == rows
    assert (tmp_path / "plot.png").read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "results.csv").read_text().splitlines()[0] == "m,acc"
