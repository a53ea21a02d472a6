"""Checks that stop a run on bad input, and which failures a resume can get past (issue 14).

- :func:`check_finite_loss`: a NaN or infinite loss stops training at once, before the epoch is
  checkpointed (so no poisoned parameters are kept), with one line saying where and why.
- :func:`resumable`: whether ``labsat train --resume RUN`` can get past a failure. A timeout, a lost
  connection, a full disk or an interruption can be resumed; a bad station file, a bad calibration, a
  value beyond a limit or a non-finite loss would fail the same way again from the same checkpoint, so
  resuming is not suggested for them.
"""
from __future__ import annotations

import math


class NonFiniteLossError(ValueError):
    """The training loss became NaN or infinite."""


def check_finite_loss(loss, epoch: int, step: int, steps: int) -> None:
    """Raise :class:`NonFiniteLossError` when ``loss`` (a tensor or a number) is not finite."""
    value = float(loss.detach()) if hasattr(loss, "detach") else float(loss)
    if not math.isfinite(value):
        raise NonFiniteLossError(
            f"training stopped: the loss is {value} at epoch {epoch}, step {step} of {steps}; the epoch was not "
            "kept. A non-finite loss comes from the twin (check the calibration: `labsat calibrate --check`) or "
            "from too large a step (--lr, --rho); resuming would repeat it")


def resumable(exc: BaseException) -> bool:
    """Can resuming from the last checkpoint get past ``exc``?"""
    from labsat.calibration.store import CalibrationError
    from labsat.config import ConfigError
    from labsat.drivers.base import LimitError

    return not isinstance(exc, (ConfigError, CalibrationError, LimitError, NonFiniteLossError))
