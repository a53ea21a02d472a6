"""Multichannel heater DAC with a Qontrol-style serial ASCII protocol (e.g. Qontrol Q8iv, 12 V / 24 mA).

Commands used (``\\n`` terminated; every set is answered ``OK`` or an error ``E<code>:<channel>``):

======================  ==========================================  =================
command                 meaning                                     reply
======================  ==========================================  =================
``id?``                 identity                                    ``Q8iv-0123``
``nchan?``              number of channels                          ``64``
``V<ch>=<volts>``       set channel voltage                         ``OK`` / ``E01:<ch>``
``V<ch>?``              read back channel voltage                   ``1.2340``
``VALL?``               read back all voltages                      ``v0,v1,...``
``VALL=<volts>``        set all channels to one value (safe state)  ``OK``
``I<ch>?``              read back channel current (mA)              ``2.0567``
======================  ==========================================  =================

Error codes (Qontrol): 1 over-voltage, 2 over-current, 10 unknown command, 11 bad parameter,
12 bad channel, 13 forbidden, 14 buffer overflow, 16 timeout, 90 powered up.

Safety is layered: the instrument's full scale, this driver's strict limits (reject, never truncate;
per-channel voltage, current and power, and total power), and the station's limits, which may only
tighten these. Every change ramps from a fresh read-back in steps of at most ``max_step_v``; a
read-back that disagrees with the last set-point is a fault. :meth:`shutdown` ramps every channel to
0 V and is called by the station on close, on any exception and on Ctrl-C.
"""
from __future__ import annotations

import logging
import re
import threading
import time

import numpy as np
from pymeasure.instruments import Instrument

from .base import InstrumentError, LimitError, deferred_sigint, parse_floats
from .transport import TransportMixin

log = logging.getLogger(__name__)

QONTROL_ERRORS = {
    1: "over-voltage", 2: "over-current", 10: "unrecognised command", 11: "bad parameter",
    12: "bad channel", 13: "forbidden", 14: "buffer overflow", 16: "timeout", 90: "powered up",
}
_ERROR_RE = re.compile(r"^[A-Za-z]{1,3}(\d+):(\d+)$")


class HeaterDAC(TransportMixin, Instrument):
    FULL_SCALE_V = 12.0
    FULL_SCALE_MA = 24.0

    def __init__(self, adapter, name: str = "heater DAC", channels: int = 8, v_max=FULL_SCALE_V,
                 i_max_ma: float = FULL_SCALE_MA, resistance_ohm=600.0, power_max_w=None,
                 total_power_max_w: float | None = None, max_step_v: float = 1.0,
                 step_delay_s: float = 0.0, readback_tolerance_v: float = 0.01, **kwargs):
        super().__init__(adapter, name, includeSCPI=False, **kwargs)
        self.channels = int(channels)
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
        self._setpoint: np.ndarray | None = None
        self._lock = threading.RLock()
        self.writes = 0

    def _per_channel(self, value, what: str) -> np.ndarray:
        try:
            return np.broadcast_to(np.asarray(value, dtype=float), (self.channels,)).copy()
        except ValueError:
            raise ValueError(f"{self.name}: {what} needs one value or {self.channels}, "
                             f"got {np.size(value)}") from None

    # --- protocol ---
    def _check_reply(self, reply: str, command: str) -> None:
        reply = reply.strip()
        if reply == "OK":
            return
        m = _ERROR_RE.match(reply)
        if m:
            code, ch = int(m.group(1)), int(m.group(2))
            raise InstrumentError(f"{self.name} refused '{command}': error {code} "
                                  f"({QONTROL_ERRORS.get(code, 'unknown')}) on channel {ch}")
        raise InstrumentError(f"{self.name}: garbled reply {reply[:60]!r} to '{command}'")

    def _read_lines(self, n: int) -> list[str]:
        lines: list[str] = []
        while len(lines) < n:
            chunk = self.read()
            if chunk == "":
                raise InstrumentError(f"{self.name}: no reply (timeout) after {len(lines)} of {n} replies")
            lines.extend(chunk.splitlines() or [""])
        return lines

    def command(self, command: str) -> None:
        """Send one set command and check its ``OK``."""
        with self._lock, deferred_sigint():
            self.write(command)
            self.writes += 1
            self._setpoint = None  # unknown after a raw command: the next ramp trusts the read-back alone
            self._check_reply(self._read_lines(1)[0], command)

    @property
    def identity(self) -> str:
        with self._lock, deferred_sigint():
            return self.ask("id?").strip()

    def voltages(self) -> np.ndarray:
        """Fresh read-back of every channel's voltage (V)."""
        with self._lock, deferred_sigint():
            # read-back: retried (connection reopened) on a timeout or lost connection
            return self.query("VALL?", lambda r: parse_floats(r, self.channels, f"{self.name} VALL?"))

    def current_ma(self, channel: int) -> float:
        self._check_channels([channel])
        with self._lock, deferred_sigint():
            return parse_floats(self.ask(f"I{channel}?"), 1, f"{self.name} I{channel}?")[0]

    # --- limits ---
    def channel_cap_v(self, channel: int) -> float:
        """The highest voltage channel ``channel`` may hold on its own: the tightest of its voltage,
        current (``i_max_ma`` at its resistance) and power limits (the total-power limit still applies)."""
        r = float(self.resistance_ohm[channel])
        return float(min(self.v_max[channel], 1e-3 * self.i_max_ma * r, np.sqrt(self.power_max_w[channel] * r)))

    def _check_channels(self, channels) -> np.ndarray:
        ch = np.asarray(channels, dtype=int).ravel()
        bad = ch[(ch < 0) | (ch >= self.channels)]
        if bad.size:
            raise LimitError(f"{self.name}: channel {int(bad[0])} does not exist (0..{self.channels - 1})")
        if len(np.unique(ch)) != len(ch):
            raise LimitError(f"{self.name}: a channel is listed twice")
        return ch

    def validate(self, volts: np.ndarray, channels: np.ndarray, others: np.ndarray | None = None) -> None:
        """Raise :class:`LimitError` naming the channel if any limit would be exceeded."""
        v = np.asarray(volts, dtype=float)
        if not np.all(np.isfinite(v)):
            k = int(np.flatnonzero(~np.isfinite(v))[0])
            raise LimitError(f"{self.name}: channel {channels[k]}: voltage is not a finite number: {v[k]}")
        for k, ch in enumerate(channels):
            if v[k] < 0 or v[k] > self.v_max[ch]:
                raise LimitError(f"{self.name}: channel {ch}: {v[k]:.4g} V is outside [0, {self.v_max[ch]:.4g}] V")
            i_ma = 1e3 * v[k] / self.resistance_ohm[ch]
            if i_ma > self.i_max_ma:
                raise LimitError(f"{self.name}: channel {ch}: {v[k]:.4g} V draws {i_ma:.3g} mA "
                                 f"> limit {self.i_max_ma:.3g} mA")
            p = v[k] ** 2 / self.resistance_ohm[ch]
            if p > self.power_max_w[ch]:
                raise LimitError(f"{self.name}: channel {ch}: {v[k]:.4g} V dissipates {1e3 * p:.3g} mW "
                                 f"> limit {1e3 * self.power_max_w[ch]:.3g} mW")
        full = np.zeros(self.channels) if others is None else others.copy()
        full[channels] = v
        total = float(np.sum(full**2 / self.resistance_ohm))
        if total > self.total_power_max_w:
            raise LimitError(f"{self.name}: total heater power {1e3 * total:.4g} mW > limit "
                             f"{1e3 * self.total_power_max_w:.4g} mW")

    # --- setting ---
    def set_voltages(self, volts, channels=None) -> None:
        """Ramp ``channels`` (default: all) to ``volts``, validating the target and every step."""
        ch = self._check_channels(np.arange(self.channels) if channels is None else channels)
        try:
            target = np.broadcast_to(np.asarray(volts, dtype=float), ch.shape).copy()
        except ValueError:
            raise LimitError(f"{self.name}: {np.size(volts)} voltages for {len(ch)} channels") from None
        with self._lock:
            present = self.voltages()
            if self._setpoint is not None:
                err = np.abs(present - self._setpoint)
                if np.any(err > self.readback_tolerance_v):
                    bad = int(np.argmax(err))
                    raise InstrumentError(
                        f"{self.name}: channel {bad} reads {present[bad]:.4g} V but was set to "
                        f"{self._setpoint[bad]:.4g} V; refusing to continue")
            self.validate(target, ch, present)
            start = present[ch]
            n_steps = max(1, int(np.ceil(np.max(np.abs(target - start), initial=0.0) / self.max_step_v)))
            level = present.copy()
            for k in range(1, n_steps + 1):
                step = start + (target - start) * (k / n_steps)
                self.validate(step, ch, level)
                try:
                    self._write_channels(ch, step)
                except KeyboardInterrupt:  # deferred until the transfer was complete: it was sent
                    level[ch] = step
                    self._setpoint = level.copy()
                    raise
                level[ch] = step
                self._setpoint = level.copy()
                if self.step_delay_s and k < n_steps:
                    time.sleep(self.step_delay_s)

    def _write_channels(self, channels: np.ndarray, volts: np.ndarray) -> None:
        """One transfer out (all commands), one in (all replies): the serial line is the bottleneck."""
        if len(channels) == 0:
            return
        commands = [f"V{c}={v:.4f}" for c, v in zip(channels, volts)]
        with deferred_sigint():
            self.write_bytes(("\n".join(commands) + "\n").encode())
            replies = self._read_lines(len(commands))
        self.writes += 1
        for reply, cmd in zip(replies, commands):
            self._check_reply(reply, cmd)

    def shutdown(self) -> None:
        """Safe state: ramp every channel to 0 V; if that fails, ``VALL=0``. Raises only if both fail."""
        with self._lock:
            try:
                self.set_voltages(np.zeros(self.channels))
            except Exception as exc:  # last resort: one command that zeroes everything
                log.error("%s: ramp to 0 V failed (%s); sending VALL=0", self.name, exc)
                try:
                    self.command("VALL=0")
                    self._setpoint = np.zeros(self.channels)
                except Exception as exc2:
                    log.critical("%s: COULD NOT ZERO HEATERS: %s", self.name, exc2)
                    raise InstrumentError(f"{self.name}: could not reach the safe state: {exc2}") from exc2
            super().shutdown()
