"""Test helper: the virtual chip's physics driven directly (no protocol layer), for fast calibration tests.

Only the *tests* read the hidden truth, to compare fits with it; the calibration code sees readings only.
"""
from __future__ import annotations

import numpy as np

from labsat.calibration.simchip import DirectHardware

__all__ = ["DirectHardware", "wrapped"]


def wrapped(a):
    return (np.asarray(a) + np.pi) % (2 * np.pi) - np.pi
