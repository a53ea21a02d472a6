"""Simulated LAN block heater DAC (the protocol of ``labsat.drivers.block_dac``) acting on a chip.

Channel ``k`` drives chip heater ``k``; extra channels are unconnected. A block with a value outside the
instrument's range (0..12 V, 24 mA into the chip's heater resistance) or of the wrong length is refused
whole (SCPI error -222 / -109), nothing applied. Like the serial DAC, a watchdog zeroes every output when
the last client disconnects with heaters powered.
"""
from __future__ import annotations

import logging
import threading

import numpy as np

from ..base import encode_block
from .scpi import ScpiErrorQueue

log = logging.getLogger(__name__)


class SimBlockDAC:
    FULL_SCALE_V, FULL_SCALE_MA = 12.0, 24.0

    def __init__(self, chip, channels: int, serial: str = "BDAC-SIM"):
        self.chip, self.channels, self.serial = chip, channels, serial
        self.volts = np.zeros(channels)
        self.resistance = chip.heater_resistance_ohm
        self.errors = ScpiErrorQueue()
        self.blocks_received = 0
        self._lock = threading.Lock()

    def _apply(self) -> None:
        n = min(self.channels, self.chip.n_heaters)
        v = np.zeros(self.chip.n_heaters)
        v[:n] = self.volts[:n]
        self.chip.set_heaters(v)

    def _accept(self, v: np.ndarray) -> bool:
        if len(v) != self.channels:
            self.errors.push(-109, f"Missing parameter: {len(v)} values for {self.channels} channels")
            return False
        if not np.all(np.isfinite(v)) or np.any(v < 0) or np.any(v > self.FULL_SCALE_V) \
                or np.any(1e3 * v / self.resistance > self.FULL_SCALE_MA):
            self.errors.push(-222, "Data out of range")
            return False
        self.volts = v.astype(np.float32).astype(float)
        self._apply()
        return True

    def handle(self, cmd: str, block: bytes | None):
        head = cmd.upper()
        with self._lock:
            if head == "*IDN?":
                return f"labsat,SIM-BDAC{self.channels},{self.serial},1.0"
            if head == "SYST:CHAN?":
                return str(self.channels)
            if head == "SYST:ERR?":
                return self.errors.pop()
            if head == "*OPC?":
                return "1"
            if head == "SOUR:VOLT:BLOC?":
                return encode_block(self.volts)
            if head.startswith("SOUR:VOLT:BLOC"):
                if block is None:
                    self.errors.push(-161, "Invalid block data")
                    return None
                from pyvisa.util import from_ieee_block

                try:
                    v = np.asarray(from_ieee_block(block, "f", False), dtype=float)
                except Exception:
                    self.errors.push(-161, "Invalid block data")
                    return None
                self.blocks_received += 1
                self._accept(v)
                return None
            if head.startswith("SOUR:VOLT:ALL "):
                try:
                    value = float(cmd.split(None, 1)[1])
                except ValueError:
                    self.errors.push(-104, "Data type error")
                    return None
                self._accept(np.full(self.channels, value))
                return None
            self.errors.push(-113, "Undefined header")
            return None

    def client_gone(self) -> None:
        with self._lock:
            if np.any(self.volts):
                log.warning("sim block DAC %s: client gone with heaters on; watchdog zeroes them", self.serial)
                self.volts[:] = 0.0
                self._apply()
                self.watchdog_trips = getattr(self, "watchdog_trips", 0) + 1
