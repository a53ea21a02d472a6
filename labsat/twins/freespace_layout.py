"""Where the free-space network's class detectors sit on the camera grid (numpy only, no torch).

Shared by the twin (labsat.twins.freespace) and the station file's validation (labsat.config), which
must import without torch.
"""
from __future__ import annotations

import math

import numpy as np


def detector_boxes(grid: int, classes: int, size: int) -> list[tuple[int, int]]:
    """Top-left corners (row, col) of ``classes`` square detectors of ``size`` px on the grid: rows of
    near-equal counts (10 -> 3, 4, 3), evenly spaced."""
    nrows = max(1, round(math.sqrt(classes)))
    counts = [classes // nrows + (1 if r < classes % nrows else 0) for r in range(nrows)]  # largest first
    centre_out = sorted(range(nrows), key=lambda r: abs(r - (nrows - 1) / 2))
    arranged = [0] * nrows
    for r, n in zip(centre_out, counts):
        arranged[r] = n
    counts = arranged
    boxes = []
    for r, n in enumerate(counts):
        cy = grid * (r + 1) / (nrows + 1)
        for c in range(n):
            cx = grid * (c + 1) / (n + 1)
            boxes.append((int(round(cy - size / 2)), int(round(cx - size / 2))))
    for (y, x) in boxes:
        if y < 0 or x < 0 or y + size > grid or x + size > grid:
            raise ValueError(f"{classes} detectors of {size} px do not fit a {grid} px grid")
    # no overlap
    occupied = np.zeros((grid, grid), dtype=int)
    for (y, x) in boxes:
        occupied[y:y + size, x:x + size] += 1
    if occupied.max() > 1:
        raise ValueError(f"{classes} detectors of {size} px overlap on a {grid} px grid")
    return boxes
