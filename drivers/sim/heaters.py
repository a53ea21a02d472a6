"""What the simulated heater DACs share, whatever their protocol (the serial ASCII DAC in ``servers.py``, the
LAN block DAC in ``block_dac.py``): the output voltages, the instrument's full scale (12 V, 24 mA into the
chip's heater resistance), the hand-off of the outputs to the chip (channel ``k`` drives chip heater ``k``;
extra channels are unconnected), and the connection watchdog that zeroes every output when the last client
disconnects with heaters powered.

A simulated heater DAC is :class:`SimHeaterOutputs` plus its protocol; the protocol decides what a refusal
looks like on its wire (:meth:`~SimHeaterOutputs.refusal` says why). Below every simulated instrument module
that uses it (imports run one way: tests/test_import_graph.py).
"""
from __future__ import annotations

import logging

import numpy as np

log = logging.getLogger(__name__)


class SimHeaterOutputs:
    """The outputs of a simulated heater DAC acting on ``chip``. A subclass (or a base after this one) gives
    the instrument's lock, ``self._lock``, which :meth:`client_gone` holds; :meth:`output` is called under it."""

    FULL_SCALE_V, FULL_SCALE_MA = 12.0, 24.0
    label = "heater DAC"  # for the watchdog's log line

    def __init__(self, chip, channels: int, serial: str):
        super().__init__()  # the protocol's base (SimScpiInstrument) when there is one
        self.chip, self.channels, self.serial = chip, channels, serial
        self.volts = np.zeros(channels)
        self.resistance = chip.heater_resistance_ohm
        self.watchdog_trips = 0

    def refusal(self, volts) -> str | None:
        """Why the instrument would refuse to output ``volts`` (one value or a vector): ``"voltage"`` (not a
        finite number in ``0..FULL_SCALE_V``), ``"current"`` (over ``FULL_SCALE_MA`` into the heater), or
        ``None`` when it accepts them."""
        v = np.asarray(volts, dtype=float)
        if not np.all(np.isfinite(v)) or np.any(v < 0) or np.any(v > self.FULL_SCALE_V):
            return "voltage"
        if np.any(1e3 * v / self.resistance > self.FULL_SCALE_MA):
            return "current"
        return None

    def output(self, volts, channels=slice(None)) -> None:
        """Put ``volts`` out on ``channels`` (default: all) and hand the heater vector to the chip."""
        self.volts[channels] = volts
        self._apply()

    def _apply(self) -> None:
        """The outputs, as they are, to the chip's heaters."""
        n = min(self.channels, self.chip.n_heaters)
        v = np.zeros(self.chip.n_heaters)
        v[:n] = self.volts[:n]
        self.chip.set_heaters(v)

    def client_gone(self) -> None:
        """Watchdog: the last client disconnected (killed, cable pulled) with heaters still powered,
        i.e. without its safe shutdown: zero every output, as a connection watchdog would."""
        with self._lock:
            if np.any(self.volts):
                log.warning("sim %s %s: client gone with heaters on; watchdog zeroes them", self.label, self.serial)
                self.output(0.0)
                self.watchdog_trips += 1
