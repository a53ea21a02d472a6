"""Differentiable models (digital twins) of each physical system.

Names are resolved on first use (PEP 562), so ``labsat.twins.layout`` (used by the virtual lab)
imports without torch; ``from labsat.twins import MZIMeshTwin`` works as before.
"""
from __future__ import annotations

import importlib

_LAZY = {"MeshLayout": ".layout", "MZIMeshTwin": ".mzi"}

__all__ = ["MeshLayout", "MZIMeshTwin"]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
