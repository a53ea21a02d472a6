"""Multichannel modulator DAC (input encoder) over SCPI: drives one amplitude modulator per mesh input.

Commands used (``\\n`` terminated):

=============================  =====================================================
command                        meaning
=============================  =====================================================
``*IDN?``                      identity
``SOUR:VOLT:ALL v0,v1,...``    DC level on every channel (V)
``SOUR:VOLT:ALL?``             read back DC levels
``SOUR:LIST:VOLT #<block>``    upload a sequence of B vectors (IEEE 488.2 float32, B x N)
``SOUR:LIST:POIN?``            length of the uploaded sequence
``INIT``                       play the sequence once (triggers an armed DAQ)
``*OPC?``                      operation complete (``1``), after the sequence has played
``OUTP ON|OFF`` / ``OUTP?``    output relay
``SYST:ERR?``                  error queue (``0,"No error"`` when empty)
=============================  =====================================================

Every level (DC or in a sequence) is checked against ``[0, v_max]``, and a sequence's length against the
memory depth (``max_points``, instruments.yaml), before anything is sent.
Safe state: all channels 0 V, output off.
"""
from __future__ import annotations


import numpy as np
from pymeasure.instruments import Instrument

from .base import MEMORY_DEPTH, InstrumentError, LimitError, parse_floats, send_block
from .transport import ScpiErrorMixin, TransportMixin


class ModulatorDAC(TransportMixin, ScpiErrorMixin, Instrument):
    FULL_SCALE_V = 10.0

    def __init__(self, adapter, name: str = "modulator DAC", channels: int = 8, v_max: float = FULL_SCALE_V,
                 max_points: int = MEMORY_DEPTH, **kwargs):
        super().__init__(adapter, name, includeSCPI=False, **kwargs)
        if not 0 < v_max <= self.FULL_SCALE_V:
            raise ValueError(f"{name}: v_max must be in (0, {self.FULL_SCALE_V}] V")
        self.channels, self.v_max = int(channels), float(v_max)
        self.max_points = int(max_points)  # memory depth: the longest sequence the instrument holds

    @property
    def identity(self) -> str:
        return self.query("*IDN?").strip()  # read-backs: retried on timeout (transport.py)

    def _validate(self, volts: np.ndarray) -> np.ndarray:
        v = np.asarray(volts, dtype=float)
        if v.shape[-1] != self.channels:
            raise LimitError(f"{self.name}: expected {self.channels} channels, got {v.shape[-1]}")
        if ((v >= 0) & (v <= self.v_max)).all():  # one pass over the sequence (NaN fails it too)
            return v
        if not np.all(np.isfinite(v)):
            ch = int(np.argwhere(~np.isfinite(v))[0][-1])
            raise LimitError(f"{self.name}: channel {ch}: level is not a finite number")
        if np.any(v < 0) or np.any(v > self.v_max):
            where = tuple(np.argwhere((v < 0) | (v > self.v_max))[0])
            raise LimitError(f"{self.name}: channel {where[-1]}: {v[where]:.4g} V is outside [0, {self.v_max:.4g}] V")
        return v

    def set_levels(self, volts) -> None:
        v = self._validate(np.asarray(volts, dtype=float).ravel())
        with self.transaction():
            self.write("SOUR:VOLT:ALL " + ",".join(f"{x:.5f}" for x in v))
            self.check_scpi_errors()

    def levels(self) -> np.ndarray:
        return self.query("SOUR:VOLT:ALL?", lambda r: parse_floats(r, self.channels, f"{self.name} SOUR:VOLT:ALL?"))

    def output(self, on: bool) -> None:
        with self.transaction():
            self.write(f"OUTP {'ON' if on else 'OFF'}")
            self.check_scpi_errors()

    def load_sequence(self, volts: np.ndarray) -> None:
        """Upload a (B, N) sequence in one binary block, then confirm its length."""
        v = self._validate(np.atleast_2d(volts))
        if len(v) > self.max_points:
            raise LimitError(f"{self.name}: a sequence of {len(v)} points exceeds the memory depth "
                             f"({self.max_points} points, instruments.yaml max_points)")
        with self.transaction():
            send_block(self, b"SOUR:LIST:VOLT ", v)
            n = self.ask("SOUR:LIST:POIN?").strip()
        if n != str(len(v)):
            self.check_scpi_errors()
            raise InstrumentError(f"{self.name}: uploaded {len(v)} points, instrument holds {n!r}")

    def play(self) -> None:
        with self.transaction():
            self.write("INIT")
            if self.ask("*OPC?").strip() != "1":  # the sequence has played
                raise InstrumentError(f"{self.name}: did not confirm INIT")

    def shutdown(self) -> None:
        with self.transaction(hold_signals=False):
            try:
                self.set_levels(np.zeros(self.channels))
            finally:
                self.output(False)
            super().shutdown()
