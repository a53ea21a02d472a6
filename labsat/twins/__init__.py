"""Differentiable models (digital twins) of each physical system."""
from .layout import MeshLayout
from .mzi import MZIMeshTwin

__all__ = ["MeshLayout", "MZIMeshTwin"]
