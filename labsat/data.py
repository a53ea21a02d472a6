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
