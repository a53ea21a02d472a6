"""QCoDeS interface (optional extra: ``pip install 'labsat[qcodes]'``).

- :mod:`labsat.qcodes.instruments`: every labsat driver as a QCoDeS Instrument (limits as validators,
  ramps as step / inter_delay);
- :mod:`labsat.qcodes.station`: a QCoDeS Station built from instruments.yaml (virtual lab or real);
- :mod:`labsat.qcodes.datasets`: calibration sweeps and training/evaluation runs as QCoDeS datasets
  (and from there netCDF), with a snapshot of the instruments.
"""
from __future__ import annotations

try:
    import qcodes  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the install
    raise ImportError("labsat.qcodes needs QCoDeS: pip install 'labsat[qcodes]'") from exc

from .station import QcodesStation

__all__ = ["QcodesStation"]
