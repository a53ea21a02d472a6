"""Vowel classification data: Peterson & Barney (1952) formants, shipped in labsat/datasets/pb1952.csv.

Features per token (8): the logarithms of f0, f1, f2, f3 and of the formant ratios f1/f0, f2/f1, f3/f2,
f3/f1 (ratios are the classic speaker normalisation); reduced/whitened by PCA fitted on the training
speakers and scaled to [0, 1] like labsat.data's digits (the same :class:`~labsat.data.Encoder`).
Train and test sets are split by speaker, so the test measures generalisation to new voices.
"""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import torch

from labsat.data import Dataset, Encoder, fit_encoder

DATA = Path(__file__).resolve().parent / "datasets" / "pb1952.csv"
VOWELS = ("iy", "ih", "eh", "ae", "ah", "aa", "ao", "uh", "uw", "er")


def read_pb1952(path: Path = DATA) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(formants (n, 4) in Hz: f0..f3, vowel index (n,), speaker id (n,))."""
    if not path.exists():
        raise FileNotFoundError(f"{path}: the vowel data set is missing from this installation")
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    formants = np.array([[float(r[k]) for k in ("f0", "f1", "f2", "f3")] for r in rows])
    labels = np.array([VOWELS.index(r["vowel"]) for r in rows])
    speakers = np.array([f"{r['type']}{r['speaker']}" for r in rows])
    return formants, labels, speakers


def vowel_features(formants: np.ndarray) -> np.ndarray:
    lf = np.log(formants)
    ratios = np.stack([lf[:, 1] - lf[:, 0], lf[:, 2] - lf[:, 1], lf[:, 3] - lf[:, 2], lf[:, 3] - lf[:, 1]], 1)
    return np.concatenate([lf, ratios], 1)


def load_vowels(features: int = 8, seed: int = 0, test_fraction: float = 0.25,
                encoder: Encoder | None = None) -> Dataset:
    formants, labels, speakers = read_pb1952()
    x = vowel_features(formants)
    if not 1 <= features <= x.shape[1]:
        raise ValueError(f"vowels: 1..{x.shape[1]} features, got {features}")
    ids = np.unique(speakers)
    test_ids = set(np.random.default_rng(seed).permutation(ids)[:int(round(len(ids) * test_fraction))])
    te = np.array([s in test_ids for s in speakers])
    tr = ~te
    enc = encoder or fit_encoder(x[tr], features)
    as_t = lambda a: torch.as_tensor(a, dtype=torch.float64)  # noqa: E731
    return Dataset(as_t(enc(x[tr])), torch.as_tensor(labels[tr]), as_t(enc(x[te])), torch.as_tensor(labels[te]),
                   enc, len(VOWELS), "vowels")
