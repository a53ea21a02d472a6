"""Data sets that ship inside packages (no download): scikit-learn's handwritten digits.

The 8x8 digits are reduced to the mesh's input size by PCA fitted on the training split, then scaled
to modulator amplitudes in [0, 1] with the training split's range. The encoder is saved with every
model so evaluation feeds the chip exactly what training did.
"""
from __future__ import annotations

from dataclasses import dataclass

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


def fit_encoder(x: np.ndarray, k: int) -> Encoder:
    mean = x.mean(0)
    _, _, vt = np.linalg.svd(x - mean, full_matrices=False)
    comps = vt[:k]
    z = (x - mean) @ comps.T
    lo, hi = np.percentile(z, 1, axis=0), np.percentile(z, 99, axis=0)
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


def load_dataset(spec: str, features: int, seed: int = 0, n_train: int | None = None,
                 n_test: int | None = None) -> Dataset:
    """``digits`` (default) or ``mnist:PATH`` (a directory holding the four MNIST IDX files)."""
    if spec == "digits":
        return load_digits(features, seed=seed)
    if spec.startswith("mnist:"):
        path = spec.split(":", 1)[1]
        if not path:
            raise ValueError("--data mnist:PATH needs the directory of the MNIST IDX files")
        return load_mnist(path, features, n_train=n_train, n_test=n_test, seed=seed)
    raise ValueError(f"unknown data set {spec!r}: use 'digits' or 'mnist:PATH'")


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
