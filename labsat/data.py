"""Data sets: the built-in digits (scikit-learn, no download), MNIST IDX files, a user's NPZ or CSV.

``--data`` on train / evaluate / demo / experiment takes a spec (:func:`load_dataset`):
``digits`` (default), ``mnist:DIR``, ``npz:FILE`` / ``FILE.npz``, ``csv:FILE`` / ``FILE.csv``.
A bad file is one clear :class:`DataError` line naming the file and what is wrong with it.

The 8x8 digits are reduced to the mesh's input size by PCA fitted on the training split, then scaled
to modulator amplitudes in [0, 1] with the training split's range. The encoder is saved with every
model so evaluation feeds the chip exactly what training did.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch


@dataclass
class Encoder:
    mean: np.ndarray
    components: np.ndarray  # (k, d)
    lo: np.ndarray
    hi: np.ndarray

    def __call__(self, x: np.ndarray) -> np.ndarray:
        z = (x - self.mean) @ self.components.T
        return np.clip((z - self.lo) / (self.hi - self.lo), 0.0, 1.0)

    def state(self) -> dict:
        return {k: getattr(self, k).tolist() for k in ("mean", "components", "lo", "hi")}

    @classmethod
    def from_state(cls, state: dict) -> "Encoder":
        return cls(**{k: np.asarray(state[k], dtype=float) for k in ("mean", "components", "lo", "hi")})


@dataclass
class Dataset:
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    encoder: Encoder
    n_classes: int
    name: str
    source: str = ""  # the --data spec that loads it again (absolute path for a user's file)


def fit_encoder(x: np.ndarray, k: int) -> Encoder:
    """PCA to ``k`` components, scaled to [0, 1] by the 1st..99th percentiles. With fewer than ``k``
    features (or directions) the remaining inputs are held at 0."""
    mean = x.mean(0)
    _, _, vt = np.linalg.svd(x - mean, full_matrices=False)
    comps = vt[:k]
    if len(comps) < k:
        comps = np.vstack([comps, np.zeros((k - len(comps), x.shape[1]))])
    z = (x - mean) @ comps.T
    lo, hi = np.percentile(z, 1, axis=0), np.percentile(z, 99, axis=0)
    hi = np.where(hi > lo, hi, lo + 1.0)  # a constant direction maps to 0, not to a division by zero
    return Encoder(mean, comps, lo, hi)


def split(n: int, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    idx = np.random.default_rng(seed).permutation(n)
    n_test = int(round(n * test_fraction))
    return idx[n_test:], idx[:n_test]


def load_digits(features: int, seed: int = 0, test_fraction: float = 0.25, encoder: Encoder | None = None) -> Dataset:
    from sklearn.datasets import load_digits as _sk

    raw = _sk()
    x, y = raw.data.astype(float), raw.target.astype(int)
    tr, te = split(len(x), test_fraction, seed)
    enc = encoder or fit_encoder(x[tr], features)
    as_t = lambda a: torch.as_tensor(a, dtype=torch.float64)  # noqa: E731
    return Dataset(as_t(enc(x[tr])), torch.as_tensor(y[tr]), as_t(enc(x[te])), torch.as_tensor(y[te]),
                   enc, 10, "digits")


# --- MNIST from IDX files at a path the user gives (no download) ---
_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"),
               0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}
MNIST_FILES = {"train_images": "train-images-idx3-ubyte", "train_labels": "train-labels-idx1-ubyte",
               "test_images": "t10k-images-idx3-ubyte", "test_labels": "t10k-labels-idx1-ubyte"}


def read_idx(path) -> np.ndarray:
    """Read an IDX file (LeCun's MNIST format; ``.gz`` compressed or not) into a numpy array.

    Header: two zero bytes, a type byte (0x08 ubyte, 0x09 byte, 0x0B short, 0x0C int, 0x0D float,
    0x0E double), a byte with the number of dimensions, then each dimension as a big-endian uint32.
    """
    import gzip
    from pathlib import Path

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such IDX file")
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise ValueError(f"{path}: not an IDX file (bad magic number)")
    code, ndim = raw[2], raw[3]
    if code not in _IDX_DTYPES:
        raise ValueError(f"{path}: unknown IDX data type 0x{code:02x}")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"{path}: truncated IDX header")
    shape = tuple(int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(_IDX_DTYPES[code])
    count = int(np.prod(shape)) if shape else 1
    if len(raw) - header != count * dtype.itemsize:
        raise ValueError(f"{path}: IDX payload has {len(raw) - header} bytes, the header promises "
                         f"{count * dtype.itemsize} for shape {shape}")
    return np.frombuffer(raw, dtype=dtype, offset=header, count=count).reshape(shape).astype(dtype.newbyteorder("="))


def _find_idx(directory, stem: str):
    from pathlib import Path

    directory = Path(directory)
    for name in (stem, stem + ".gz", stem.replace("-idx", ".idx"), stem.replace("-idx", ".idx") + ".gz"):
        if (directory / name).exists():
            return directory / name
    raise FileNotFoundError(f"{directory}: no {stem}[.gz] (MNIST is read from IDX files, never downloaded)")


def load_mnist(path, features: int, n_train: int | None = None, n_test: int | None = None, seed: int = 0,
               encoder: Encoder | None = None) -> Dataset:
    """MNIST from the four IDX files in directory ``path``, reduced by PCA to ``features`` amplitudes.

    ``n_train`` / ``n_test`` keep random subsets (drawn with ``seed``) for small runs.
    """
    files = {k: _find_idx(path, v) for k, v in MNIST_FILES.items()}
    xs = {k: read_idx(files[k]).reshape(-1, 28 * 28).astype(float) / 255.0 for k in ("train_images", "test_images")}
    ys = {k: read_idx(files[k]).astype(int) for k in ("train_labels", "test_labels")}
    rng = np.random.default_rng(seed)
    x_tr, y_tr, x_te, y_te = xs["train_images"], ys["train_labels"], xs["test_images"], ys["test_labels"]
    if len(x_tr) != len(y_tr) or len(x_te) != len(y_te):
        raise ValueError(f"{path}: image and label files disagree in length")
    if n_train is not None and n_train < len(x_tr):
        keep = rng.choice(len(x_tr), n_train, replace=False)
        x_tr, y_tr = x_tr[keep], y_tr[keep]
    if n_test is not None and n_test < len(x_te):
        keep = rng.choice(len(x_te), n_test, replace=False)
        x_te, y_te = x_te[keep], y_te[keep]
    enc = encoder or fit_encoder(x_tr, features)
    as_t = lambda a: torch.as_tensor(a, dtype=torch.float64)  # noqa: E731
    return Dataset(as_t(enc(x_tr)), torch.as_tensor(y_tr), as_t(enc(x_te)), torch.as_tensor(y_te), enc, 10, "mnist")


class DataError(ValueError):
    """A data set file is missing or malformed; the message names the file and the problem."""


def _as_labels(y: np.ndarray, where: str) -> tuple[np.ndarray, list]:
    """Labels of any type -> 0..C-1 (sorted unique values), with the class values."""
    y = np.asarray(y).ravel()
    if y.dtype.kind == "f":
        if not np.all(np.isfinite(y)) or not np.all(y == np.round(y)):
            raise DataError(f"{where}: labels must be integers or class names, got {y[~(y == np.round(y))][:1]}")
        y = y.astype(int)
    classes, idx = np.unique(y, return_inverse=True)
    if len(classes) < 2:
        raise DataError(f"{where}: labels hold {len(classes)} class; a classifier needs at least 2")
    return idx.astype(int), classes.tolist()


def _as_features(x, where: str) -> np.ndarray:
    try:
        x = np.asarray(x, dtype=float)
    except (TypeError, ValueError):
        raise DataError(f"{where}: features must be numbers") from None
    if x.ndim == 1:
        x = x[:, None]
    x = x.reshape(len(x), -1)
    if x.size == 0 or x.shape[1] == 0:
        raise DataError(f"{where}: no features")
    if not np.all(np.isfinite(x)):
        r, c = np.argwhere(~np.isfinite(x))[0]
        raise DataError(f"{where}: feature {c} of sample {r} is not a finite number ({x[r, c]})")
    return x


def _user_dataset(x_tr, y_tr, x_te, y_te, features: int, name: str, source: str, encoder=None) -> Dataset:
    enc = encoder or fit_encoder(x_tr, features)
    if enc.mean.shape[0] != x_tr.shape[1]:
        raise DataError(f"{source}: {x_tr.shape[1]} features per sample, the model's encoder expects "
                        f"{enc.mean.shape[0]}")
    classes = np.unique(np.concatenate([y_tr, y_te]))
    as_t = lambda a: torch.as_tensor(a, dtype=torch.float64)  # noqa: E731
    return Dataset(as_t(enc(x_tr)), torch.as_tensor(y_tr), as_t(enc(x_te)), torch.as_tensor(y_te), enc,
                   int(classes.max()) + 1, name, source)


def _split_user(x, y, where: str, test_fraction: float, seed: int):
    if len(x) != len(y):
        raise DataError(f"{where}: {len(x)} samples but {len(y)} labels")
    if len(x) < 4:
        raise DataError(f"{where}: {len(x)} samples; need at least 4 (train and test)")
    tr, te = split(len(x), test_fraction, seed)
    return x[tr], y[tr], x[te], y[te]


def load_npz(path, features: int, seed: int = 0, test_fraction: float = 0.25, encoder: Encoder | None = None
             ) -> Dataset:
    """A user's NPZ: arrays ``x`` (samples x features, any shape per sample) and ``y`` (labels: integers
    or names), split ``test_fraction`` for test with ``seed``; or ``x_train``, ``y_train``, ``x_test``,
    ``y_test`` for a split of the user's own."""
    from pathlib import Path

    path = Path(path).expanduser().resolve()
    if not path.is_file():
        raise DataError(f"{path}: no such NPZ file")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (ValueError, OSError, EOFError) as exc:
        raise DataError(f"{path}: not a readable NPZ file ({str(exc).splitlines()[0]})") from None
    where = str(path)
    if {"x_train", "y_train", "x_test", "y_test"} <= arrays.keys():
        x_tr, x_te = _as_features(arrays["x_train"], f"{where}: x_train"), _as_features(arrays["x_test"], f"{where}: x_test")
        y_all, _ = _as_labels(np.concatenate([np.ravel(arrays["y_train"]), np.ravel(arrays["y_test"])]), where)
        y_tr, y_te = y_all[:len(np.ravel(arrays["y_train"]))], y_all[len(np.ravel(arrays["y_train"])):]
        if len(x_tr) != len(y_tr) or len(x_te) != len(y_te) or x_tr.shape[1] != x_te.shape[1]:
            raise DataError(f"{where}: x_train/y_train/x_test/y_test disagree in length or feature count")
    elif {"x", "y"} <= arrays.keys():
        x = _as_features(arrays["x"], f"{where}: x")
        y, _ = _as_labels(arrays["y"], f"{where}: y")
        x_tr, y_tr, x_te, y_te = _split_user(x, y, where, test_fraction, seed)
    else:
        raise DataError(f"{where}: needs arrays 'x' and 'y' (or x_train, y_train, x_test, y_test); "
                        f"has {', '.join(sorted(arrays)) or 'none'}")
    return _user_dataset(x_tr, y_tr, x_te, y_te, features, path.stem, f"npz:{path}", encoder)


def load_csv(path, features: int, seed: int = 0, test_fraction: float = 0.25, encoder: Encoder | None = None
             ) -> Dataset:
    """A user's CSV: one sample per row, numeric feature columns and a label column: the column named
    ``label`` (or ``y``, ``class``, ``target``) when there is a header row, else the last column."""
    import csv
    from pathlib import Path

    path = Path(path).expanduser().resolve()
    if not path.is_file():
        raise DataError(f"{path}: no such CSV file")
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = [r for r in csv.reader(f) if r and any(c.strip() for c in r)]
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not a text (UTF-8) file: {exc.reason} at byte {exc.start}") from None
    except csv.Error as exc:
        raise DataError(f"{path}: malformed CSV: {exc}") from None
    if not rows:
        raise DataError(f"{path}: empty")

    def numeric(cell: str) -> bool:
        try:
            float(cell)
            return True
        except ValueError:
            return False

    label_names = ("label", "y", "class", "target")
    has_header = (any(not numeric(c) for c in rows[0][:-1])
                  or any(c.strip().lower() in label_names for c in rows[0]))
    header = rows[0] if has_header else None
    body = rows[1:] if header is not None else rows
    width = len(rows[0])
    if width < 2:
        raise DataError(f"{path}: needs at least one feature column and a label column")
    for i, r in enumerate(body, start=2 if header is not None else 1):
        if len(r) != width:
            raise DataError(f"{path}: line {i} has {len(r)} columns, expected {width}")
    label_col = width - 1
    if header is not None:
        names = [c.strip().lower() for c in header]
        for key in label_names:
            if key in names:
                label_col = names.index(key)
                break
    x_cols = [c for c in range(width) if c != label_col]
    try:
        x = np.array([[float(r[c]) for c in x_cols] for r in body])
    except ValueError:
        for i, r in enumerate(body, start=2 if header is not None else 1):
            for c in x_cols:
                if not numeric(r[c]):
                    raise DataError(f"{path}: line {i}, column {c + 1}: {r[c]!r} is not a number") from None
        raise
    labels = [r[label_col].strip() for r in body]
    y_raw = np.array([int(v) for v in labels]) if all(v.lstrip("-").isdigit() for v in labels) else np.array(labels)
    x = _as_features(x, str(path))
    y, _ = _as_labels(y_raw, str(path))
    x_tr, y_tr, x_te, y_te = _split_user(x, y, str(path), test_fraction, seed)
    return _user_dataset(x_tr, y_tr, x_te, y_te, features, path.stem, f"csv:{path}", encoder)


DATA_HELP = "digits | mnist:DIR | npz:FILE | csv:FILE (a .npz or .csv path also works)"


def load_dataset(spec: str, features: int, seed: int = 0, n_train: int | None = None,
                 n_test: int | None = None, encoder: Encoder | None = None) -> Dataset:
    """``digits`` (default), ``mnist:DIR`` (the four MNIST IDX files), ``npz:FILE`` or ``csv:FILE`` (a
    user's features + labels; a path ending in .npz / .csv works without the prefix). ``encoder``: the
    one a model was trained with (evaluation feeds the chip exactly what training did)."""
    spec = str(spec or "digits").strip()
    kind, _, path = spec.partition(":")
    if not path and spec.lower().endswith((".npz", ".csv")):
        kind, path = spec.rsplit(".", 1)[1].lower(), spec
    if spec == "digits":
        data = load_digits(features, seed=seed, encoder=encoder)
        data.source = "digits"
        return data
    if kind in ("mnist", "npz", "csv") and not path:
        raise DataError(f"--data {kind}:PATH needs a path")
    if kind == "mnist":
        data = load_mnist(path, features, n_train=n_train, n_test=n_test, seed=seed, encoder=encoder)
        data.source = f"mnist:{Path(path).expanduser().resolve()}"
        return data
    if kind == "npz":
        return load_npz(path, features, seed=seed, encoder=encoder)
    if kind == "csv":
        return load_csv(path, features, seed=seed, encoder=encoder)
    raise DataError(f"unknown data set {spec!r}: use {DATA_HELP}")


# --- images for free-space optics: the 8x8 digits upsampled onto an SLM grid ---
@dataclass
class ImageEncoder:
    """8x8 digit images (flattened, values 0..16) -> amplitudes in [0, 1] on a ``grid`` x ``grid`` SLM
    frame: upsampled (nearest) to ``size`` x ``size`` and centred. Saved with models like :class:`Encoder`."""

    grid: int
    size: int
    kind: str = "image"

    def __call__(self, x: np.ndarray) -> np.ndarray:
        from scipy.ndimage import zoom

        imgs = np.clip(np.asarray(x, dtype=float).reshape(-1, 8, 8) / 16.0, 0.0, 1.0)
        if self.size % 8 == 0:
            up = np.kron(imgs, np.ones((1, self.size // 8, self.size // 8)))
        else:
            up = np.clip(zoom(imgs, (1, self.size / 8, self.size / 8), order=1), 0.0, 1.0)
        out = np.zeros((len(imgs), self.grid, self.grid))
        o = (self.grid - self.size) // 2
        out[:, o:o + self.size, o:o + self.size] = up
        return out.reshape(len(imgs), -1)

    def state(self) -> dict:
        return {"kind": self.kind, "grid": self.grid, "size": self.size}

    @classmethod
    def from_state(cls, state: dict) -> "ImageEncoder":
        if state.get("kind") != "image":
            raise ValueError("not an image encoder (the model was trained on another kind of input)")
        return cls(int(state["grid"]), int(state["size"]))


def load_digits_images(grid: int, size: int = 16, seed: int = 0, test_fraction: float = 0.25,
                       encoder: ImageEncoder | None = None) -> Dataset:
    """scikit-learn's digits as images on a ``grid`` x ``grid`` frame (amplitudes, flattened)."""
    from sklearn.datasets import load_digits as _sk

    if not 8 <= size <= grid:
        raise ValueError(f"image size must be between 8 and the grid ({grid}), got {size}")
    raw = _sk()
    x, y = raw.data.astype(float), raw.target.astype(int)
    tr, te = split(len(x), test_fraction, seed)
    enc = encoder or ImageEncoder(grid, size)
    as_t = lambda a: torch.as_tensor(a, dtype=torch.float64)  # noqa: E731
    return Dataset(as_t(enc(x[tr])), torch.as_tensor(y[tr]), as_t(enc(x[te])), torch.as_tensor(y[te]),
                   enc, 10, "digits-images")
