"""A user's own data: NPZ and CSV loaders (validated, one clear error line) and --data on the CLI,
including a training run on a user NPZ that is then evaluated on the same data by default."""
from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from labsat import cli
from labsat.data import DataError, load_csv, load_dataset, load_npz
from test_cli import quick_calibration, small_yaml  # noqa: F401  (fixtures)

runner = CliRunner()


def _blobs(n=120, d=6, classes=3, seed=0):
    """Well-separated Gaussian blobs: a data set a 4-mode mesh can learn in a few epochs."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 4, (classes, d))
    y = rng.integers(0, classes, n)
    return centres[y] + rng.normal(0, 0.5, (n, d)), y


def test_npz_is_split_encoded_and_labelled(tmp_path):
    x, y = _blobs()
    np.savez(tmp_path / "mine.npz", x=x, y=y + 5)  # labels need not start at 0
    data = load_npz(tmp_path / "mine.npz", features=4, seed=1)
    assert data.x_train.shape == (90, 4) and data.x_test.shape == (30, 4)
    assert data.n_classes == 3 and set(data.y_train.tolist()) <= {0, 1, 2}
    assert float(data.x_train.min()) >= 0 and float(data.x_train.max()) <= 1  # modulator amplitudes
    assert data.source == f"npz:{(tmp_path / 'mine.npz').resolve()}"
    again = load_dataset(data.source, 4, seed=1, encoder=data.encoder)
    assert np.allclose(again.x_test, data.x_test)  # evaluation feeds the chip what training did


def test_npz_with_its_own_split_and_fewer_features_than_inputs(tmp_path):
    x, y = _blobs(d=2)
    np.savez(tmp_path / "split.npz", x_train=x[:100], y_train=y[:100], x_test=x[100:], y_test=y[100:])
    data = load_dataset(str(tmp_path / "split.npz"), 4)  # a .npz path without the prefix
    assert data.x_train.shape == (100, 4) and data.x_test.shape == (20, 4)
    assert np.allclose(data.x_train[:, 2:], 0.0)  # two features -> two inputs carry them


def test_csv_with_header_and_class_names(tmp_path):
    x, y = _blobs(n=40, d=3)
    names = np.array(["setosa", "versicolor", "virginica"])[y]
    lines = ["label,a,b,c"] + [f"{n},{r[0]},{r[1]},{r[2]}" for n, r in zip(names, x)]
    (tmp_path / "flowers.csv").write_text("\n".join(lines) + "\n")
    data = load_csv(tmp_path / "flowers.csv", features=4)
    assert data.n_classes == 3 and data.x_train.shape[1] == 4 and len(data.x_train) + len(data.x_test) == 40
    (tmp_path / "plain.csv").write_text("\n".join(f"{r[0]},{r[1]},{k}" for r, k in zip(x, y)) + "\n")
    plain = load_dataset("csv:" + str(tmp_path / "plain.csv"), 4)
    assert len(plain.x_train) + len(plain.x_test) == 40  # no header: the last column is the label


@pytest.mark.parametrize("make, message", [
    (lambda p: None, "no such NPZ file"),
    (lambda p: p.write_bytes(b"not a zip"), "not a readable NPZ file"),
    (lambda p: np.savez(p, features=np.ones((5, 2))), "needs arrays 'x' and 'y'"),
    (lambda p: np.savez(p, x=np.ones((6, 2)), y=np.arange(5)), "6 samples but 5 labels"),
    (lambda p: np.savez(p, x=np.ones((6, 2)), y=np.zeros(6)), "at least 2"),
    (lambda p: np.savez(p, x=np.array([[1.0, np.nan]] * 6), y=np.arange(6) % 2), "not a finite number"),
    (lambda p: np.savez(p, x=np.ones((6, 2)), y=np.linspace(0, 1, 6)), "labels must be integers"),
])
def test_bad_npz_is_one_clear_line(tmp_path, make, message):
    path = tmp_path / "bad.npz"
    make(path)
    with pytest.raises(DataError, match=message) as err:
        load_npz(path, 4)
    assert "\n" not in str(err.value) and "bad.npz" in str(err.value)


def test_bad_csv_names_line_and_column(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("a,b,label\n1,2,0\n3,x,1\n5,6,0\n7,8,1\n")
    with pytest.raises(DataError, match=r"bad.csv: line 3, column 2: 'x' is not a number"):
        load_csv(path, 4)
    path.write_text("1,2,0\n3,4\n")
    with pytest.raises(DataError, match="line 2 has 2 columns, expected 3"):
        load_csv(path, 4)
    with pytest.raises(DataError, match="unknown data set 'cifar'"):
        load_dataset("cifar", 4)


def test_bad_data_on_the_cli_exits_2_before_any_run(small_yaml, tmp_path):  # noqa: F811
    result = runner.invoke(cli.app, ["train", "--station", str(small_yaml), "--nominal", "--epochs", "1",
                                     "--data", str(tmp_path / "missing.npz")])
    assert result.exit_code == 2
    assert "missing.npz: no such NPZ file" in result.output
    assert len(result.output.strip().splitlines()) == 1
    db = tmp_path / "runs" / "labsat.sqlite"
    if db.exists():  # checked before a run was recorded
        from labsat.runs import RunDB

        with RunDB(db) as rdb:
            assert rdb.runs("train") == []


def test_training_run_on_a_user_npz(small_yaml, tmp_path, quick_calibration):  # noqa: F811
    x, y = _blobs(n=200, d=6, classes=3, seed=2)
    np.savez(tmp_path / "blobs.npz", x=x, y=y)
    spec = f"npz:{tmp_path / 'blobs.npz'}"
    result = runner.invoke(cli.app, ["calibrate", "--station", str(small_yaml), "--settings", "8", "--inputs", "8"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(cli.app, ["train", "--station", str(small_yaml), "--mode", "offline", "--optimizer", "adam",
                                     "--epochs", "15", "--lr", "0.05", "--data", spec, "--json"])
    assert result.exit_code == 0, result.output
    trained = json.loads(result.stdout)
    final = trained["final"]
    assert final["train_accuracy"] > 0.6  # 3 classes: chance is 1/3
    runs = json.loads(runner.invoke(cli.app, ["runs", "show", str(trained["run"]), "--station", str(small_yaml),
                                              "--json"]).stdout)
    assert runs["run"]["config"]["data"] == f"npz:{(tmp_path / 'blobs.npz').resolve()}"
    # evaluate without --data: the model's own data set (its test split), on the chip and another chip
    ev = runner.invoke(cli.app, ["evaluate", trained["model"], "--station", str(small_yaml), "--json"])
    assert ev.exit_code == 0, ev.output
    (acc,) = json.loads(ev.stdout)["accuracy"].values()
    assert acc["vchip-1"] > 0.5, acc
