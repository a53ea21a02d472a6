"""Sharpness-aware optimizers: wrappers usable with any torch optimizer."""
from .sam import SAM

__all__ = ["SAM"]
