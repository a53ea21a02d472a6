"""Vowel classification data: SYNTHETIC formants sampled around Peterson & Barney (1952)'s published means.

The data set is generated here, from a seed; it is **not** the original Peterson & Barney measurements.
:func:`generate_vowels` draws speakers (by default 33 men, 28 women and 15 children, each saying each of
the 10 vowels twice, like the original study: 1520 tokens) around the group/vowel averages of F0, F1, F2
and F3 published in Table II of

    G. E. Peterson and H. L. Barney, "Control methods used in a study of the vowels",
    J. Acoust. Soc. Am. 24(2), 175-184 (1952).

Those averages are typed in below (:data:`PB1952_MEANS`). Each speaker gets a vocal-tract scale factor
(log-normal, sigma 5 %) applied to F1-F3 and an F0 factor (log-normal, sigma 5 %); each token gets
independent log-normal jitter (9 % on each formant, 8 % on F0). With these settings a logistic
regression on the features below, split by speaker, scores about 85 % on the test speakers (the real
measurements give about the same), so the task is not trivially separable. Synthetic tokens are
independent given the speaker, unlike real speech, and the formant distributions are log-normal
around the means, so results on this set are a stand-in, not a replication of the paper's data.

Checked against real measurements (``benchmarks/pulse_data_ceiling.py --hillenbrand vowdata.dat``, the file
Hillenbrand et al., J. Acoust. Soc. Am. 97, 3099 (1995) published; not part of this repository): on
the same 8 steady-state features and speaker split, their 10 Peterson & Barney vowels give 79 % (logistic)
/ 84 % (MLP), this generator 83 % / 88 %, so the synthetic task is, if anything, easier than the real
one. Its per-token spread of F1-F3 is wider than the real men's (log sd 0.10 vs 0.06-0.07) and of F0
narrower (0.09 vs 0.16), but the real vowel means overlap more than Peterson & Barney's; making the
spread "real" alone would make the synthetic set easier still, so it is kept. Real vowels pass 90 % only
with their dynamics (duration, formant change: 92 % / 93 %), which steady-state formants do not carry.

Users who have the original measurements can load them with :func:`load_vowels_csv` (a CSV with
columns ``type, speaker, vowel, f0, f1, f2, f3``; ``vowel`` one of :data:`VOWELS`) and pass the path
to :func:`load_vowels`; nothing is downloaded.

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

VOWELS = ("iy", "ih", "eh", "ae", "ah", "aa", "ao", "uh", "uw", "er")
IPA = ("i", "ɪ", "ɛ", "æ", "ʌ", "ɑ", "ɔ", "ʊ", "u", "ɝ")
GROUPS = ("m", "w", "c")  # men, women, children

# Peterson & Barney (1952), Table II: average F0, F1, F2, F3 (Hz) per speaker group and vowel,
# rows in the order of VOWELS (iy ih eh ae ah aa ao uh uw er = i ɪ ɛ æ ʌ ɑ ɔ ʊ u ɝ).
PB1952_MEANS = {
    "m": [(136, 270, 2290, 3010), (135, 390, 1990, 2550), (130, 530, 1840, 2480), (127, 660, 1720, 2410),
          (130, 640, 1190, 2390), (124, 730, 1090, 2440), (129, 570, 840, 2410), (137, 440, 1020, 2240),
          (141, 300, 870, 2240), (133, 490, 1350, 1690)],
    "w": [(235, 310, 2790, 3310), (232, 430, 2480, 3070), (223, 610, 2330, 2990), (210, 860, 2050, 2850),
          (221, 760, 1400, 2780), (212, 850, 1220, 2810), (216, 590, 920, 2710), (232, 470, 1160, 2680),
          (231, 370, 950, 2670), (218, 500, 1640, 1960)],
    "c": [(272, 370, 3200, 3730), (269, 530, 2730, 3600), (260, 690, 2610, 3570), (251, 1010, 2320, 3320),
          (261, 850, 1590, 3360), (256, 1030, 1370, 3170), (263, 680, 1060, 3180), (276, 560, 1410, 3310),
          (274, 430, 1170, 3260), (261, 560, 1820, 2160)],
}
SPEAKERS = {"m": 33, "w": 28, "c": 15}  # speakers per group in the original study
TOKENS = 2  # repetitions of each vowel per speaker
SPEAKER_SCALE = 0.05  # sigma of the log vocal-tract scale factor per speaker (F1-F3)
SPEAKER_F0 = 0.05  # sigma of the log F0 factor per speaker
TOKEN_JITTER = 0.09  # sigma of the log jitter per token and formant
F0_JITTER = 0.08  # sigma of the log F0 jitter per token


def generate_vowels(seed: int = 0, speakers: dict[str, int] | None = None, tokens: int = TOKENS,
                    speaker_scale: float = SPEAKER_SCALE, speaker_f0: float = SPEAKER_F0,
                    jitter: float = TOKEN_JITTER, f0_jitter: float = F0_JITTER
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Synthetic tokens around PB1952_MEANS: (formants (n, 4) in Hz: f0..f3, vowel index (n,), speaker id (n,)).

    Deterministic for a given seed and arguments. Frequencies are rounded to whole Hz.
    """
    speakers = dict(SPEAKERS if speakers is None else speakers)
    bad = set(speakers) - set(GROUPS)
    if bad:
        raise ValueError(f"vowels: speaker groups are {GROUPS}, got {sorted(bad)}")
    if any(int(n) < 0 for n in speakers.values()) or tokens < 1 or sum(speakers.values()) < 1:
        raise ValueError(f"vowels: need at least one speaker and one token, got {speakers}, tokens={tokens}")
    if min(speaker_scale, speaker_f0, jitter, f0_jitter) < 0:
        raise ValueError("vowels: spreads must be >= 0")
    rng = np.random.default_rng(seed)
    n_v = len(VOWELS)
    formants, labels, ids = [], [], []
    for group in GROUPS:
        means = np.log(np.asarray(PB1952_MEANS[group], dtype=float))  # (10, 4)
        for k in range(int(speakers.get(group, 0))):
            shift = np.array([rng.normal(0, speaker_f0)] + [rng.normal(0, speaker_scale)] * 3)
            noise = rng.normal(0, 1, (n_v, tokens, 4)) * np.array([f0_jitter, jitter, jitter, jitter])
            f = np.exp(means[:, None, :] + shift + noise).reshape(-1, 4)
            formants.append(np.round(f))
            labels.append(np.repeat(np.arange(n_v), tokens))
            ids.append(np.full(n_v * tokens, f"{group}{k + 1}"))
    return np.concatenate(formants), np.concatenate(labels), np.concatenate(ids)


def load_vowels_csv(path: str | Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A user-supplied vowel table (e.g. the original Peterson & Barney measurements).

    CSV with a header and at least the columns ``type`` (speaker group), ``speaker``, ``vowel`` (one of
    VOWELS), ``f0``, ``f1``, ``f2``, ``f3`` (Hz). Returns the same triple as :func:`generate_vowels`.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such vowel CSV")
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = {"type", "speaker", "vowel", "f0", "f1", "f2", "f3"} - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"{path}: missing column(s) {sorted(missing)}")
        rows = list(reader)
    if not rows:
        raise ValueError(f"{path}: no rows")
    formants, labels, speakers = [], [], []
    for i, r in enumerate(rows, start=2):
        if r["vowel"] not in VOWELS:
            raise ValueError(f"{path}:{i}: vowel {r['vowel']!r} is not one of {VOWELS}")
        try:
            f = [float(r[k]) for k in ("f0", "f1", "f2", "f3")]
        except ValueError as e:
            raise ValueError(f"{path}:{i}: {e}") from None
        if min(f) <= 0:
            raise ValueError(f"{path}:{i}: frequencies must be > 0, got {f}")
        formants.append(f)
        labels.append(VOWELS.index(r["vowel"]))
        speakers.append(f"{r['type']}{r['speaker']}")
    return np.array(formants), np.array(labels), np.array(speakers)


def vowel_features(formants: np.ndarray) -> np.ndarray:
    lf = np.log(formants)
    ratios = np.stack([lf[:, 1] - lf[:, 0], lf[:, 2] - lf[:, 1], lf[:, 3] - lf[:, 2], lf[:, 3] - lf[:, 1]], 1)
    return np.concatenate([lf, ratios], 1)


def load_vowels(features: int = 8, seed: int = 0, test_fraction: float = 0.25,
                encoder: Encoder | None = None, path: str | Path | None = None, data_seed: int = 0) -> Dataset:
    """Vowel data set split by speaker (``seed`` picks the test speakers).

    Synthetic tokens from :func:`generate_vowels` (``data_seed``), or the CSV at ``path`` if given.
    """
    formants, labels, speakers = load_vowels_csv(path) if path is not None else generate_vowels(data_seed)
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
