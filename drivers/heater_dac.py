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

import re
import time

import numpy as np
from pymeasure.instruments import Instrument

from .base import InstrumentError, parse_floats
from .heater_limits import HeaterLimitsMixin
from .transport import TransportMixin


QONTROL_ERRORS = {
    1: "over-voltage", 2: "over-current", 10: "unrecognised command", 11: "bad parameter",
    12: "bad channel", 13: "forbidden", 14: "buffer overflow", 16: "timeout", 90: "powered up",
}
_ERROR_RE = re.compile(r"^[A-Za-z]{1,3}(\d+):(\d+)$")


class HeaterDAC(HeaterLimitsMixin, TransportMixin, Instrument):
    def __init__(self, adapter, name: str = "heater DAC", channels: int = 8, v_max=HeaterLimitsMixin.FULL_SCALE_V,
                 i_max_ma: float = HeaterLimitsMixin.FULL_SCALE_MA, resistance_ohm=600.0, power_max_w=None,
                 total_power_max_w: float | None = None, max_step_v: float = 1.0,
                 step_delay_s: float = 0.0, readback_tolerance_v: float = 0.01, **kwargs):
        super().__init__(adapter, name, includeSCPI=False, **kwargs)
        self.channels = int(channels)
        self._init_limits(v_max, i_max_ma, resistance_ohm, power_max_w, total_power_max_w, max_step_v,
                          step_delay_s, readback_tolerance_v)
        self.writes = 0

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
        with self.transaction():
            self.write(command)
            self.writes += 1
            self._setpoint = None  # unknown after a raw command: the next ramp trusts the read-back alone
            self._check_reply(self._read_lines(1)[0], command)

    @property
    def identity(self) -> str:
        return self.ask("id?").strip()

    def voltages(self) -> np.ndarray:
        """Fresh read-back of every channel's voltage (V)."""
        with self.transaction():
            # read-back: retried (connection reopened) on a timeout or lost connection
            return self.query("VALL?", lambda r: parse_floats(r, self.channels, f"{self.name} VALL?"))

    def current_ma(self, channel: int) -> float:
        self._check_channels([channel])
        with self.transaction():
            return parse_floats(self.ask(f"I{channel}?"), 1, f"{self.name} I{channel}?")[0]

    # --- setting ---
    def set_voltages(self, volts, channels=None) -> None:
        """Ramp ``channels`` (default: all) to ``volts``, validating the target and every step."""
        ch, target = self._target(volts, channels)
        with self.transaction(hold_signals=False):
            present = self.voltages()
            self._check_readback(present)
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
        with self.transaction():
            self.write_bytes(("\n".join(commands) + "\n").encode())
            self.writes += 1  # counted when sent (a Ctrl-C held meanwhile is raised after the replies)
            replies = self._read_lines(len(commands))
        for reply, cmd in zip(replies, commands):
            self._check_reply(reply, cmd)

    def shutdown(self) -> None:
        """Safe state: ramp every channel to 0 V; if that fails, ``VALL=0``. Raises only if both fail."""
        self._shutdown_with("VALL=0")
        super().shutdown()
