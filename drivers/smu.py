"""Source-measure unit driving one heater, Keithley 2400-style SCPI (e.g. Keithley 2400/2401).

Commands used (``\\n`` terminated; sets are silent, errors go to the queue):

================================  ===========================================  ==================
command                           meaning                                      reply
================================  ===========================================  ==================
``*IDN?``                         identity                                     ``KEITHLEY...,2400``
``:SOUR:FUNC VOLT``               source voltage                               -
``:SOUR:FUNC?``                   source function                              ``VOLT``
``:SENS:CURR:PROT <A>``           current compliance (the hardware limit)      -
``:SENS:CURR:PROT?``              read back the compliance                     ``1.000000E-02``
``:FORM:ELEM VOLT,CURR``          readings are ``volts,amps``                  -
``:SOUR:VOLT <V>``                source level                                 -
``:SOUR:VOLT?``                   read back the source level                   ``1.200000E+00``
``:OUTP ON`` / ``:OUTP OFF``      output relay                                 -
``:OUTP?``                        output state                                 ``1`` / ``0``
``:READ?``                        one measurement (output on)                  ``1.2,2.0E-03``
``:MEAS:CURR?``                   configure current and measure (output on)    ``1.2,2.0E-03``
``:SENS:CURR:PROT:TRIP?``         in compliance (current limited)              ``1`` / ``0``
``SYST:ERR?``                     error queue                                  ``0,"No error"``
================================  ===========================================  ==================

Safety (as for the heater DAC): the instrument's full scale, this driver's strict limits (voltage
window, current via the heater resistance, power; reject, never truncate), and the compliance current
set in the instrument itself (:meth:`configure`), so a heater that is not what the config says is
current-limited by the hardware. Every change ramps from a fresh read-back of ``:SOUR:VOLT?`` in steps
of at most ``max_step_v``; a read-back that disagrees with the last set-point, an error in the queue,
or the compliance tripping is a fault: the driver goes to the safe state (ramp to 0 V, output off) and
raises :class:`InstrumentError`. :meth:`shutdown` does the same and is called by the station on close,
on any exception and on Ctrl-C. Read-back queries are retried on timeouts and garbled replies
(:class:`~labsat.drivers.transport.TransportMixin`); set commands never are.

Unlike PyMeasure's ``Keithley2400.ramp_to_voltage`` (which ramps from the last cached value in a fixed
number of steps), the ramp here starts from a fresh read-back and its step is bounded in volts.

Why this is not a subclass of PyMeasure's ``Keithley2400``: its ``source_voltage`` control *truncates*
a value to the instrument's range (``truncated_range``) where labsat must reject it, and sets the level
in one jump (no ramp, no read-back check, no power limit); every knob of this driver is such a guarded
output, so none is a plain declarative control (the read-only ones are, through the retried query).
"""
from __future__ import annotations

import logging
import time

import numpy as np
from pymeasure.instruments import Instrument

from .base import InstrumentError, LimitError
from .transport import ScpiErrorMixin, TransportMixin, floats, one_float, scpi_bool

log = logging.getLogger(__name__)


class SourceMeterHeater(TransportMixin, ScpiErrorMixin, Instrument):
    FULL_SCALE_V = 210.0
    FULL_SCALE_A = 1.05

    def __init__(self, adapter, name: str = "SMU", v_max: float = 10.0, v_min: float = 0.0,
                 i_max_a: float = 0.02, resistance_ohm: float | None = None, power_max_w: float | None = None,
                 max_step_v: float = 0.5, step_delay_s: float = 0.0, readback_tolerance_v: float = 1e-3,
                 **kwargs):
        super().__init__(adapter, name, includeSCPI=False, **kwargs)
        if not (-self.FULL_SCALE_V <= v_min < v_max <= self.FULL_SCALE_V):
            raise ValueError(f"{name}: need -{self.FULL_SCALE_V} <= v_min < v_max <= {self.FULL_SCALE_V} V")
        if not 0 < i_max_a <= self.FULL_SCALE_A:
            raise ValueError(f"{name}: i_max_a must be in (0, {self.FULL_SCALE_A}] A")
        if resistance_ohm is not None and resistance_ohm <= 0:
            raise ValueError(f"{name}: resistance_ohm must be positive")
        if max_step_v <= 0:
            raise ValueError(f"{name}: max_step_v must be positive")
        self.v_min, self.v_max, self.i_max_a = float(v_min), float(v_max), float(i_max_a)
        self.resistance_ohm = resistance_ohm
        self.power_max_w = np.inf if power_max_w is None else float(power_max_w)
        self.max_step_v, self.step_delay_s = float(max_step_v), float(step_delay_s)
        self.readback_tolerance_v = float(readback_tolerance_v)
        self._setpoint: float | None = None
        self._output_on: bool | None = None
        self.faulted: str | None = None  # latched fault message; cleared by configure()

    # --- identity and configuration ---
    @property
    def identity(self) -> str:
        return self.query("*IDN?").strip()

    def configure(self) -> None:
        """Voltage source, readings ``volts,amps``, hardware compliance = ``i_max_a``; verified."""
        with self.transaction():
            self.write(":SOUR:FUNC VOLT")
            self.write(":FORM:ELEM VOLT,CURR")
            self.write(f":SENS:CURR:PROT {self.i_max_a:.6g}")
            self.raise_scpi_errors("configure")
        func = self.query(":SOUR:FUNC?").strip().strip('"').upper()
        if not func.startswith("VOLT"):
            raise InstrumentError(f"{self.name}: source function is {func!r}, expected VOLT")
        comp = self.query(":SENS:CURR:PROT?", one_float)
        if not np.isclose(comp, self.i_max_a, rtol=1e-3):
            raise InstrumentError(f"{self.name}: compliance reads {comp:.4g} A, set {self.i_max_a:.4g} A")
        self.faulted = None

    # --- read-backs (retried) ---
    @property
    def source_voltage(self) -> float:
        """Fresh read-back of the source level (V)."""
        return self.query(":SOUR:VOLT?", one_float)

    @property
    def compliance_current(self) -> float:
        return self.query(":SENS:CURR:PROT?", one_float)

    @property
    def output_enabled(self) -> bool:
        with self.transaction(hold_signals=False):
            self._output_on = self.query(":OUTP?", scpi_bool)
            return self._output_on

    @property
    def in_compliance(self) -> bool:
        return self.query(":SENS:CURR:PROT:TRIP?", scpi_bool)

    def measure(self) -> tuple[float, float]:
        """One ``(volts, amps)`` reading at the terminals; the output must be on."""
        with self.transaction(hold_signals=False):
            if not self.output_enabled:
                raise InstrumentError(f"{self.name}: output is off; nothing to measure")
            v, i = self.query(":READ?", floats(2))
            return v, i

    def measure_current(self) -> float:
        """Current (A) through the heater (``:MEAS:CURR?``); the output must be on."""
        with self.transaction(hold_signals=False):
            if not self.output_enabled:
                raise InstrumentError(f"{self.name}: output is off; nothing to measure")
            return self.query(":MEAS:CURR?", floats(2))[1]

    # --- limits ---
    def validate(self, volts: float) -> None:
        """Raise :class:`LimitError` if ``volts`` breaks a limit; nothing is sent."""
        v = float(volts)
        if not np.isfinite(v):
            raise LimitError(f"{self.name}: voltage is not a finite number: {volts!r}")
        if not self.v_min <= v <= self.v_max:
            raise LimitError(f"{self.name}: {v:.4g} V is outside [{self.v_min:.4g}, {self.v_max:.4g}] V")
        if self.resistance_ohm is not None:
            i = abs(v) / self.resistance_ohm
            if i > self.i_max_a:
                raise LimitError(f"{self.name}: {v:.4g} V draws {1e3 * i:.3g} mA through "
                                 f"{self.resistance_ohm:g} ohm > limit {1e3 * self.i_max_a:.3g} mA")
            p = v * v / self.resistance_ohm
            if p > self.power_max_w:
                raise LimitError(f"{self.name}: {v:.4g} V dissipates {1e3 * p:.3g} mW > limit "
                                 f"{1e3 * self.power_max_w:.3g} mW")

    # --- output ---
    def set_voltage(self, volts: float) -> None:
        """Ramp to ``volts`` from a fresh read-back; any fault goes safe and raises."""
        self.validate(volts)
        with self.transaction(hold_signals=False):
            if self.faulted:
                raise InstrumentError(f"{self.name}: latched fault ({self.faulted}); call configure() first")
            try:
                self._ramp(float(volts))
                if self._output_on and self.in_compliance:
                    raise InstrumentError(f"{self.name}: current compliance ({1e3 * self.i_max_a:.3g} mA) "
                                          f"tripped at {volts:.4g} V: heater shorted or not as configured")
            except LimitError:
                raise
            except (InstrumentError, OSError) as exc:
                self._fault(str(exc))
                raise

    def _ramp(self, target: float, check: bool = True) -> None:
        present = self.source_voltage
        if check:
            try:
                self.validate(present)
            except LimitError as exc:
                raise InstrumentError(f"{self.name}: the source is already outside the limits: {exc}") from None
        if self._setpoint is not None and abs(present - self._setpoint) > self.readback_tolerance_v:
            raise InstrumentError(f"{self.name}: source reads {present:.4g} V but was set to "
                                  f"{self._setpoint:.4g} V; refusing to continue")
        n_steps = max(1, int(np.ceil(abs(target - present) / self.max_step_v)))
        for k in range(1, n_steps + 1):
            level = present + (target - present) * k / n_steps
            if check:
                self.validate(level)
            with self.transaction():
                self.write(f":SOUR:VOLT {level:.6g}")
                self._setpoint = level
                self.raise_scpi_errors(f":SOUR:VOLT {level:.6g}")
            if self.step_delay_s and k < n_steps:
                time.sleep(self.step_delay_s)

    def output(self, on: bool) -> None:
        """Switch the output relay; switching on needs a verified level inside the limits."""
        with self.transaction(hold_signals=False):
            if on:
                if self.faulted:
                    raise InstrumentError(f"{self.name}: latched fault ({self.faulted}); call configure() first")
                level = self.source_voltage
                self.validate(level)
                self._setpoint = level
            with self.transaction():
                self.write(f":OUTP {'ON' if on else 'OFF'}")
                self.raise_scpi_errors(f":OUTP {'ON' if on else 'OFF'}")
            state = self.output_enabled
            if state != on:
                raise InstrumentError(f"{self.name}: output reads {'on' if state else 'off'} after switching "
                                      f"it {'on' if on else 'off'}")

    def _fault(self, message: str) -> None:
        self.faulted = message
        log.error("%s: fault: %s; going to the safe state", self.name, message)
        try:
            self.shutdown()
        except Exception as exc:  # shutdown logged it; the original fault is what the caller sees
            log.critical("%s: safe state after fault failed: %s", self.name, exc)

    def shutdown(self) -> None:
        """Safe state: ramp to 0 V, then output off (verified). Raises only if the output stays on."""
        with self.transaction(hold_signals=False):
            ramped = False
            try:
                self._setpoint = None  # a fault may have left the set-point unknown: ramp from read-back
                self._ramp(0.0, check=False)
                ramped = True
            except Exception as exc:
                log.error("%s: ramp to 0 V failed (%s); setting 0 V directly", self.name, exc)
                try:
                    self.reconnect()
                    self.write(":SOUR:VOLT 0")
                except Exception as exc2:
                    log.error("%s: could not set 0 V: %s", self.name, exc2)
            last: Exception | None = None
            for attempt in range(3):  # switching off is idempotent: safe to repeat
                try:
                    self.write(":OUTP OFF")
                    if not self.output_enabled:
                        self._setpoint = 0.0 if ramped else None
                        break
                except Exception as exc:
                    last = exc
                    try:
                        self.reconnect()
                    except Exception:
                        pass
            else:
                log.critical("%s: COULD NOT SWITCH THE OUTPUT OFF: %s", self.name, last)
                raise InstrumentError(f"{self.name}: could not reach the safe state: {last}")
            super().shutdown()
