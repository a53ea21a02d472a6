"""LAN multichannel heater DAC that takes the whole voltage vector in one SCPI binary block.

Large meshes (a 64-mode Clements mesh has 4032 heaters) are driven by LAN DAC racks that load every
channel in one transfer; a channel-by-channel serial protocol (``heater_dac.py``) would take seconds per
forward. Commands used (SCPI over a raw socket, ``\\n`` terminated; blocks are IEEE 488.2
definite-length, little-endian float32, one value per channel in channel order):

=================================  =========================================================  ==============
command                            meaning                                                    reply
=================================  =========================================================  ==============
``*IDN?``                          identity                                                   ``maker,model,serial,fw``
``SYST:CHAN?``                     number of channels                                         ``4096``
``SOUR:VOLT:BLOC #<block>``        set every channel at once; refused whole if any value is   (none)
                                   out of the instrument's range or the length is wrong
``SOUR:VOLT:BLOC?``                read back every channel                                    ``#<block>``
``SOUR:VOLT:ALL <v>``              every channel to one value (the last-resort safe state)    (none)
``SYST:ERR?``                      error queue (``0,"No error"`` when empty)                  ``code,"msg"``
=================================  =========================================================  ==============

Safety, as for the serial DAC: the instrument's full scale, this driver's limits (per channel: voltage,
current, power; in total: power), checked on the whole vector with numpy before anything is sent
(:meth:`BlockHeaterDAC.validate` names the first bad channel), and the station's limits, which may only
tighten these. A change ramps from a fresh read-back in whole-vector steps of at most ``max_step_v`` on
any channel, each step validated; the final read-back must equal the target (a refused block is
caught there and the error queue read). :meth:`shutdown` ramps to 0 V, else sends ``SOUR:VOLT:ALL 0``.

Cost of one :meth:`set_voltages` within one ramp step: one write (the block) and two queries (the
read-back before and after), whatever the channel count.
"""
from __future__ import annotations

import time

import numpy as np
from pymeasure.instruments import Instrument

from .base import InstrumentError, read_float_block, send_block
from .heater_limits import HeaterLimitsMixin
from .transport import ScpiErrorMixin, TransportMixin



class BlockHeaterDAC(HeaterLimitsMixin, TransportMixin, ScpiErrorMixin, Instrument):
    def __init__(self, adapter, name: str = "block heater DAC", channels: int = 4096,
                 v_max=HeaterLimitsMixin.FULL_SCALE_V, i_max_ma: float = HeaterLimitsMixin.FULL_SCALE_MA,
                 resistance_ohm=600.0, power_max_w=None, total_power_max_w: float | None = None,
                 max_step_v: float = 1.0, step_delay_s: float = 0.0, readback_tolerance_v: float = 1e-3,
                 **kwargs):
        super().__init__(adapter, name, includeSCPI=False, **kwargs)
        self.channels = int(channels)
        self._init_limits(v_max, i_max_ma, resistance_ohm, power_max_w, total_power_max_w, max_step_v,
                          step_delay_s, readback_tolerance_v)
        self.writes = 0

    # --- protocol ---
    @property
    def identity(self) -> str:
        return self.query("*IDN?").strip()

    def voltages(self) -> np.ndarray:
        """Fresh read-back of every channel's voltage (V), one binary block."""
        with self.transaction():
            self.write("SOUR:VOLT:BLOC?")
            values = read_float_block(self)
        if len(values) != self.channels:
            raise InstrumentError(f"{self.name}: read-back block holds {len(values)} values, "
                                  f"expected {self.channels}")
        return values

    def command(self, command: str) -> None:
        """Send one set command, then read the error queue."""
        with self.transaction():
            self.write(command)
            self.writes += 1
            self._setpoint = None  # unknown after a raw command: the next ramp trusts the read-back alone
            self.check_scpi_errors()

    # --- setting ---
    def set_voltages(self, volts, channels=None) -> None:
        """Ramp ``channels`` (default: all) to ``volts`` in whole-vector steps, each validated first."""
        ch, target = self._target(volts, channels)
        self.validate(target, ch)  # per-channel limits (and total, others at 0 V) before anything is sent
        with self.transaction(hold_signals=False):
            present = self.voltages()
            self._check_readback(present)
            self.validate(target, ch, present)
            goal = present.copy()
            goal[ch] = target
            n_steps = max(1, int(np.ceil(np.max(np.abs(goal - present), initial=0.0) / self.max_step_v)))
            steps = present + (goal - present) * (np.arange(1, n_steps + 1)[:, None] / n_steps)
            for k, step in enumerate(steps):
                self.validate(step, np.arange(self.channels))
                self._write_block(step)
                if self.step_delay_s and k < n_steps - 1:
                    time.sleep(self.step_delay_s)
            got = self.voltages()
            if np.any(np.abs(got - goal) > self.readback_tolerance_v):
                self._setpoint = None
                self.check_scpi_errors()
                bad = int(np.argmax(np.abs(got - goal)))
                raise InstrumentError(f"{self.name}: channel {bad} reads {got[bad]:.4g} V after setting "
                                      f"{goal[bad]:.4g} V")

    def _write_block(self, volts: np.ndarray) -> None:
        """One transfer: the whole vector."""
        try:
            with self.transaction():
                send_block(self, b"SOUR:VOLT:BLOC ", volts)
        finally:
            self.writes += 1
            self._setpoint = np.asarray(volts, dtype=np.float32).astype(float)

    def shutdown(self) -> None:
        """Safe state: ramp every channel to 0 V; if that fails, ``SOUR:VOLT:ALL 0``."""
        self._shutdown_with("SOUR:VOLT:ALL 0")
        super().shutdown()


def open_block_dac(name: str, cfg, address: str) -> BlockHeaterDAC:
    """The driver for a ``block_dac`` entry of instruments.yaml, its channel count checked."""
    from .base import open_configured

    adapter = open_configured(address, cfg)  # VISA library, serial line, terminators of the config
    lim = cfg.limits
    try:
        dac = BlockHeaterDAC(adapter, name=name, channels=cfg.channels, v_max=lim.v_max, i_max_ma=lim.i_max_ma,
                             resistance_ohm=lim.resistance_ohm,
                             power_max_w=None if lim.power_max_mw is None else lim.power_max_mw / 1e3,
                             total_power_max_w=lim.total_power_max_w, max_step_v=cfg.ramp.max_step_v,
                             step_delay_s=cfg.ramp.step_delay_s)
        n = dac.query("SYST:CHAN?").strip()
        if n != str(cfg.channels):
            raise InstrumentError(f"instruments.{name}.channels: {cfg.channels} configured, the instrument "
                                  f"has {n}")
    except Exception:
        adapter.close()
        raise
    return dac
