"""labsat experiment: a tiny end-to-end run of each experiment on the virtual lab, and the IDX reader."""
import gzip
from pathlib import Path

import numpy as np
import pytest

from labsat.data import load_dataset, load_mnist, read_idx
from labsat.experiments import Setup, run_experiment

STATION = Path(__file__).resolve().parents[1] / "instruments.yaml"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return Setup(station=STATION, seeds=1, offline_epochs=1, online_epochs=1, cal_settings=4, cal_inputs=4,
                 n_chips=2, drift_kelvin=(0.0, 2.0), rho_grid=(0.0, 0.05), sharp_random=2, sharp_adv_steps=2,
                 hessian_iters=3, sharp_samples=40, methods=("plain", "sat", "pat+sat"),
                 out=tmp_path_factory.mktemp("exp"), scheduler="serial", store=tmp_path_factory.mktemp("runs"))


@pytest.mark.parametrize("name", ["imprecise", "transfer", "perturbation", "sharpness", "rho"])
def test_experiment_writes_table_csv_and_plot(tiny, name):
    result = run_experiment(name, tiny, log=lambda msg: None)
    d = tiny.out / name
    for f in ("table.md", "results.csv", "results.json", "plot.png"):
        assert (d / f).stat().st_size > 0
    assert (d / "plot.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = result["rows"]
    assert rows and "±" in (d / "table.md").read_text()
    if name == "imprecise":
        by = {(r["method"], r["seed"]): r for r in rows}
        assert by[("pat+sat", 0)]["queries_per_step"] == 1.0  # one hardware forward per online SAT step
        assert by[("plain", 0)]["hardware_queries"] == 0
        assert all(0.0 <= r["device_accuracy"] <= 1.0 for r in rows)
    if name == "transfer":
        assert {r["chip"] for r in rows} == {1, 2, 3}
    if name == "perturbation":
        assert {r["delta_kelvin"] for r in rows} == {0.0, 2.0}
    if name == "sharpness":
        assert all(r["adversarial_increase"] >= 0 for r in rows)


def test_unknown_experiment_and_bad_data(tiny):
    with pytest.raises(ValueError, match="unknown experiment"):
        run_experiment("nope", tiny)
    with pytest.raises(ValueError, match="digits"):
        load_dataset("cifar", 8)
    with pytest.raises(FileNotFoundError):
        load_dataset("mnist:/nonexistent/dir", 8)


def _write_idx(path: Path, array: np.ndarray, code: int, compress: bool = False) -> None:
    header = bytes([0, 0, code, array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    payload = header + array.astype(array.dtype.newbyteorder(">")).tobytes()
    (gzip.open if compress else open)(path, "wb").write(payload)


def test_idx_reader_round_trip_and_errors(tmp_path):
    a = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    _write_idx(tmp_path / "a-idx3-ubyte", a, 0x08)
    assert np.array_equal(read_idx(tmp_path / "a-idx3-ubyte"), a)
    b = np.array([1.5, -2.0], dtype=np.float32)
    _write_idx(tmp_path / "b.gz", b, 0x0D, compress=True)
    assert np.array_equal(read_idx(tmp_path / "b.gz"), b)
    (tmp_path / "bad").write_bytes(b"\x01\x02\x08\x01" + (3).to_bytes(4, "big") + b"abc")
    with pytest.raises(ValueError, match="magic"):
        read_idx(tmp_path / "bad")
    (tmp_path / "short").write_bytes(b"\x00\x00\x08\x01" + (5).to_bytes(4, "big") + b"abc")
    with pytest.raises(ValueError, match="payload"):
        read_idx(tmp_path / "short")


def test_mnist_loader_reads_idx_files(tmp_path):
    rng = np.random.default_rng(0)
    for split, n in (("train", 60), ("t10k", 20)):
        _write_idx(tmp_path / f"{split}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28), dtype=np.uint8),
                   0x08, compress=True)
        _write_idx(tmp_path / f"{split}-labels-idx1-ubyte.gz", rng.integers(0, 10, n, dtype=np.uint8), 0x08,
                   compress=True)
    data = load_mnist(tmp_path, 8, n_train=40)
    assert data.x_train.shape == (40, 8) and data.x_test.shape == (20, 8)
    assert float(data.x_train.min()) >= 0.0 and float(data.x_train.max()) <= 1.0
    assert data.name == "mnist" and data.n_classes == 10
    assert load_dataset(f"mnist:{tmp_path}", 8).x_train.shape == (60, 8)
