"""Clements (rectangular) mesh layout: which MZI sits on which pair of modes, which heater is which.

This is the chip's *design* (what a lab gets from the layout file), shared by the virtual chip and the
twin. It holds no fabrication error: those live hidden in the virtual chip and fitted in the twin.
A neutral module (numpy only): the drivers' virtual lab and the twins both import it, neither imports
the other. ``labsat.twins.layout.MeshLayout`` is the same class.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class MeshLayout:
    """Rectangular MZI mesh on ``modes`` waveguides (Clements et al. 2016).

    Column ``c`` holds MZIs on mode pairs ``(i, i+1)`` for ``i = c % 2, c % 2 + 2, ...``.
    MZI ``m`` has two heaters: ``2m`` (internal phase theta) and ``2m + 1`` (external phase phi).
    Heaters are numbered in their physical order on the chip; neighbours in that order share heat.
    """

    modes: int

    def __post_init__(self):
        if not 2 <= self.modes <= 64:
            raise ValueError(f"mesh modes must be between 2 and 64, got {self.modes}")

    @property
    def columns(self) -> list[np.ndarray]:
        """Top mode index of each MZI, per column."""
        return [np.arange(c % 2, self.modes - 1, 2) for c in range(self.modes)]

    @property
    def column_slices(self) -> list[slice]:
        """MZI index range of each column (MZIs are numbered column by column)."""
        out, start = [], 0
        for tops in self.columns:
            out.append(slice(start, start + len(tops)))
            start += len(tops)
        return out

    @property
    def n_mzi(self) -> int:
        return self.modes * (self.modes - 1) // 2

    @property
    def n_heaters(self) -> int:
        return 2 * self.n_mzi

    @property
    def n_couplers(self) -> int:
        return 2 * self.n_mzi
