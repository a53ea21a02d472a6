"""The Clements mesh layout lives in :mod:`labsat.geometry` (shared by the virtual chip and the twin, below
both); this import path stays for everyone who uses it."""
from labsat.geometry import MeshLayout

__all__ = ["MeshLayout"]
