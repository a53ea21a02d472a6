"""Measure a device, fit its digital twin, and store the fit (versioned, per device and date)."""
from .fit import fit_twin, residual_summary, rmse
from .measure import Measurements, measure
from .store import CalibrationError, check_calibration, latest_calibration, load_calibration, save_calibration

__all__ = ["Measurements", "measure", "fit_twin", "rmse", "residual_summary", "save_calibration",
           "load_calibration", "latest_calibration", "CalibrationError", "check_calibration"]
