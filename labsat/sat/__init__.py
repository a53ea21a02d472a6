"""Sharpness-aware optimizers: wrappers usable with any torch optimizer.

- :class:`SAM` (Foret et al. 2021), ``adaptive=True`` for ASAM (Kwon et al. 2021): two gradient
  evaluations per step, worst-case perturbation of radius ``rho``;
- :class:`SAF` and :class:`MESA` (Du et al. 2022): trajectory loss, about one gradient evaluation;
- :class:`NoiseInjection`: random Gaussian perturbation, the analog-computing baseline.

:mod:`labsat.sat.sharpness` measures the sharpness of a trained model (loss increase within rho,
top Hessian eigenvalue).
"""
from .noise import NoiseInjection
from .saf import MESA, SAF, trajectory_kl
from .partial import PartialSAM
from .sam import SAM

__all__ = ["SAM", "PartialSAM", "SAF", "MESA", "NoiseInjection", "trajectory_kl"]
