"""Per-channel and total limits of a multichannel heater DAC, checked on whole vectors (numpy).

Shared by the serial heater DAC (``heater_dac.py``) and the LAN block DAC (``block_dac.py``): the two
speak different protocols but refuse the same voltages with the same messages. Limits are layered: the
instrument's full scale (``FULL_SCALE_V``, ``FULL_SCALE_MA``), per-channel voltage, current (at the
channel's resistance) and power, and the total power of all channels. Reject, never truncate.
"""
from __future__ import annotations

import logging

import numpy as np

from .base import InstrumentError, LimitError

log = logging.getLogger(__name__)


class HeaterLimitsMixin:
    """Limit state and checks for a driver with ``name`` and ``channels``; call :meth:`_init_limits`."""

    FULL_SCALE_V = 12.0
    FULL_SCALE_MA = 24.0

    def _init_limits(self, v_max, i_max_ma, resistance_ohm, power_max_w, total_power_max_w, max_step_v,
                     step_delay_s, readback_tolerance_v) -> None:
        name = self.name
        self.v_max = self._per_channel(v_max, "v_max")
        self.resistance_ohm = self._per_channel(resistance_ohm, "resistance_ohm")
        if np.any(self.v_max > self.FULL_SCALE_V) or np.any(self.v_max <= 0):
            raise ValueError(f"{name}: v_max must be in (0, {self.FULL_SCALE_V}] V (instrument full scale)")
        if not 0 < i_max_ma <= self.FULL_SCALE_MA:
            raise ValueError(f"{name}: i_max_ma must be in (0, {self.FULL_SCALE_MA}] mA")
        if np.any(self.resistance_ohm <= 0):
            raise ValueError(f"{name}: resistance_ohm must be positive")
        self.i_max_ma = float(i_max_ma)
        self.power_max_w = self._per_channel(np.inf if power_max_w is None else power_max_w, "power_max_w")
        self.total_power_max_w = np.inf if total_power_max_w is None else float(total_power_max_w)
        if max_step_v <= 0:
            raise ValueError(f"{name}: max_step_v must be positive")
        self.max_step_v = float(max_step_v)
        self.step_delay_s = float(step_delay_s)
        self.readback_tolerance_v = float(readback_tolerance_v)
        # every channel's voltage ceiling, all limits combined (V = min(v_max, R i_max, sqrt(P_max R)))
        self._ceiling = np.minimum.reduce([self.v_max, self.resistance_ohm * self.i_max_ma / 1e3,
                                           np.sqrt(self.power_max_w * self.resistance_ohm)])
        self._setpoint: np.ndarray | None = None

    def _per_channel(self, value, what: str) -> np.ndarray:
        try:
            return np.broadcast_to(np.asarray(value, dtype=float), (self.channels,)).copy()
        except ValueError:
            raise ValueError(f"{self.name}: {what} needs one value or {self.channels}, "
                             f"got {np.size(value)}") from None

    def channel_cap_v(self, channel: int) -> float:
        """The highest voltage channel ``channel`` may hold on its own: the tightest of its voltage,
        current (``i_max_ma`` at its resistance) and power limits (the total-power limit still applies)."""
        return float(self._ceiling[channel])

    def _check_channels(self, channels) -> np.ndarray:
        ch = np.asarray(channels, dtype=int).ravel()
        bad = ch[(ch < 0) | (ch >= self.channels)]
        if bad.size:
            raise LimitError(f"{self.name}: channel {int(bad[0])} does not exist (0..{self.channels - 1})")
        if len(np.unique(ch)) != len(ch):
            raise LimitError(f"{self.name}: a channel is listed twice")
        return ch

    def validate(self, volts: np.ndarray, channels: np.ndarray, others: np.ndarray | None = None) -> None:
        """Raise :class:`LimitError` naming the first bad channel; all checks are whole-vector numpy.
        ``others``: the voltages of every channel (the total-power check sees them with ``channels`` set)."""
        v = np.asarray(volts, dtype=float)
        ch = np.asarray(channels, dtype=int)
        bad = ~np.isfinite(v)
        if bad.any():
            k = int(np.flatnonzero(bad)[0])
            raise LimitError(f"{self.name}: channel {ch[k]}: voltage is not a finite number: {v[k]}")
        bad = (v < 0) | (v > self._ceiling[ch])
        if bad.any():
            k = int(np.flatnonzero(bad)[0])
            c = ch[k]
            i_ma, p = 1e3 * v[k] / self.resistance_ohm[c], v[k] ** 2 / self.resistance_ohm[c]
            if v[k] < 0 or v[k] > self.v_max[c]:
                why = f"is outside [0, {self.v_max[c]:.4g}] V"
            elif i_ma > self.i_max_ma:
                why = f"draws {i_ma:.3g} mA > limit {self.i_max_ma:.3g} mA"
            else:
                why = f"dissipates {1e3 * p:.3g} mW > limit {1e3 * self.power_max_w[c]:.3g} mW"
            raise LimitError(f"{self.name}: channel {c}: {v[k]:.4g} V {why}")
        full = np.zeros(self.channels) if others is None else np.array(others, dtype=float)
        full[ch] = v
        total = float(np.sum(full**2 / self.resistance_ohm))
        if total > self.total_power_max_w:
            raise LimitError(f"{self.name}: total heater power {1e3 * total:.4g} mW > limit "
                             f"{1e3 * self.total_power_max_w:.4g} mW")

    def _target(self, volts, channels) -> tuple[np.ndarray, np.ndarray]:
        """(channels, voltages) of a set request, checked for existence and length."""
        ch = self._check_channels(np.arange(self.channels) if channels is None else channels)
        try:
            target = np.broadcast_to(np.asarray(volts, dtype=float), ch.shape).copy()
        except ValueError:
            raise LimitError(f"{self.name}: {np.size(volts)} voltages for {len(ch)} channels") from None
        return ch, target

    def _check_readback(self, present: np.ndarray) -> None:
        """A read-back that disagrees with the last set-point is a fault: refuse to ramp from it."""
        if self._setpoint is None:
            return
        err = np.abs(present - self._setpoint)
        if np.any(err > self.readback_tolerance_v):
            bad = int(np.argmax(err))
            raise InstrumentError(f"{self.name}: channel {bad} reads {present[bad]:.4g} V but was set to "
                                  f"{self._setpoint[bad]:.4g} V; refusing to continue")

    def _shutdown_with(self, zero_all: str) -> None:
        """Safe state: ramp every channel to 0 V; if that fails, the one command ``zero_all`` that zeroes
        every channel. Raises only if both fail."""
        with self.transaction(hold_signals=False):
            try:
                self.set_voltages(np.zeros(self.channels))
            except Exception as exc:  # last resort: one command that zeroes everything
                log.error("%s: ramp to 0 V failed (%s); sending %s", self.name, exc, zero_all)
                try:
                    self.command(zero_all)
                    self._setpoint = np.zeros(self.channels)
                except Exception as exc2:
                    log.critical("%s: COULD NOT ZERO HEATERS: %s", self.name, exc2)
                    raise InstrumentError(f"{self.name}: could not reach the safe state: {exc2}") from exc2
