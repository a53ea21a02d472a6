"""Is a stored calibration still valid? Re-measure a few settings and compare with the stored twin.

Rule (drift detection): the calibration is **stale** when the RMSE between fresh readings and the
stored twin's prediction exceeds ``factor`` (default 2) times the held-out RMSE stored with the fit
(``residuals.fitted_holdout.rmse``), or ``floor`` when that is larger (so a fit that happened to land
right at the noise floor is not declared stale by noise alone). Fresh settings are drawn at random,
not taken from the calibration data, so the check tests prediction, not memory.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from .fit import residual_summary
from .measure import measure


@dataclass
class CheckResult:
    valid: bool
    rmse: float  # fresh readings vs the stored twin
    stored_rmse: float  # held-out RMSE recorded when the twin was fitted
    threshold: float
    factor: float
    readings: int
    max_abs: float

    def as_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        verdict = "VALID" if self.valid else "STALE (recalibrate)"
        return (f"{verdict}: RMSE {self.rmse:.4f} on {self.readings} fresh readings vs threshold "
                f"{self.threshold:.4f} ({self.factor:g} x stored held-out RMSE {self.stored_rmse:.4f})")


def stored_holdout_rmse(record: dict) -> float:
    try:
        return float(record["residuals"]["fitted_holdout"]["rmse"])
    except (KeyError, TypeError):
        from .store import CalibrationError

        raise CalibrationError(f"{record.get('path', 'calibration')}: has no 'residuals.fitted_holdout.rmse' "
                               "to compare against; recalibrate with `labsat calibrate`") from None


def check_twin(hardware, twin, stored_rmse: float, settings: int = 8, inputs: int = 16,
               factor: float = 2.0, floor: float = 0.0, seed: int | None = None) -> CheckResult:
    """Measure ``settings`` random heater settings x ``inputs`` inputs and judge the twin."""
    if settings < 1 or inputs < 1:
        raise ValueError("--check needs at least one setting and one input")
    if factor <= 1.0:
        raise ValueError(f"the drift factor must be > 1 (a fit is never better than itself), got {factor}")
    if seed is None:
        seed = int(np.random.default_rng().integers(2**31))
    fresh = measure(hardware, settings, inputs, seed=seed)
    r = residual_summary(twin, fresh)
    threshold = max(factor * stored_rmse, floor)
    return CheckResult(valid=bool(r["rmse"] <= threshold), rmse=r["rmse"], stored_rmse=stored_rmse,
                       threshold=threshold, factor=factor, readings=settings * inputs, max_abs=r["max_abs"])
