"""What every simulated SCPI instrument shares: the error queue (``SYST:ERR?``), one lock, SCPI headers in
their short form, the common queries (``*IDN?``, ``*OPC?``, ``SYST:ERR?``), "Undefined header" for
anything else, number parsing that queues the instrument's error instead of raising, and the
arm / fetch-once buffer of an acquiring instrument.

:class:`SimScpiInstrument` is the base; a simulated instrument gives :meth:`~SimScpiInstrument.identity`
and :meth:`~SimScpiInstrument.answer`. This module sits below every simulated instrument module, so
none of them imports another for it (imports run one way: tests/test_import_graph.py).
"""
from __future__ import annotations

import threading

import numpy as np

_LONG = {
    "SOURCE": "SOUR", "SENSE": "SENS", "CURRENT": "CURR", "VOLTAGE": "VOLT", "PROTECTION": "PROT",
    "OUTPUT": "OUTP", "FUNCTION": "FUNC", "MEASURE": "MEAS", "FORMAT": "FORM", "ELEMENTS": "ELEM",
    "SYSTEM": "SYST", "ERROR": "ERR", "TRIPPED": "TRIP", "CORRECTION": "CORR", "WAVELENGTH": "WAV",
    "AVERAGE": "AVER", "COUNT": "COUN", "POWER": "POW", "RANGE": "RANG", "CONFIGURE": "CONF",
    "INITIATE": "INIT", "FETCH": "FETC", "IMMEDIATE": "IMM", "RESISTANCE": "RES",
}


def normalise(command: str) -> tuple[str, str]:
    """SCPI header in short upper-case form without the leading colon, and the argument text."""
    head, _, arg = command.strip().partition(" ")
    parts = [_LONG.get(p, p) for p in head.upper().lstrip(":").split(":")]
    return ":".join(parts), arg.strip()


class ScpiErrorQueue:
    def __init__(self):
        self.errors: list[str] = []

    def push(self, code: int, message: str) -> None:
        self.errors.append(f'{code},"{message}"')

    def pop(self) -> str:
        return self.errors.pop(0) if self.errors else '0,"No error"'


UNDEFINED = object()  # what answer() returns for a header the instrument does not know


class SimScpiInstrument:
    """Base of the simulated SCPI instruments. :meth:`handle` (called by the protocol server with each
    message) answers the common queries and hands the rest, as ``(head, arg, block)`` with ``head`` in
    short upper-case form, to :meth:`answer` under the instrument's lock. ``answer`` returns the reply,
    ``None`` for a command without one, or :data:`UNDEFINED` (queued as ``-113,"Undefined header"``)."""

    def __init__(self):
        self.errors = ScpiErrorQueue()
        self._lock = threading.RLock()
        self.armed = 0  # an acquiring instrument: points armed for (:meth:`arm`) ...
        self.data = None  # ... and the last acquisition, fetched once (:meth:`fetch`)

    def identity(self) -> str:  # pragma: no cover - every instrument says who it is
        raise NotImplementedError

    def answer(self, head: str, arg: str, block: bytes | None):  # pragma: no cover
        return UNDEFINED

    def handle(self, command: str, block: bytes | None):
        head, arg = normalise(command)
        with self._lock:
            if head == "*IDN?":
                return self.identity()
            if head == "*OPC?":
                return "1"
            if head in ("SYST:ERR?", "SYST:ERR:NEXT?"):
                return self.errors.pop()
            reply = self.answer(head, arg, block)
            if reply is UNDEFINED:
                self.errors.push(-113, "Undefined header")
                return None
            return reply

    def arm(self, arg: str) -> None:
        """``ACQ:... <n>``: armed for ``n`` points; the previous acquisition is dropped."""
        try:
            self.armed = int(arg.split()[0])
        except (ValueError, IndexError):
            self.errors.push(-104, "Data type error")
        self.data = None

    def triggered(self, points: int) -> bool:
        """A trigger carrying ``points`` arrived: True (and disarmed) when armed for exactly that many, else
        ``-211 Trigger ignored`` queued and nothing recorded."""
        if self.armed != points:
            self.errors.push(-211, f"Trigger ignored: armed for {self.armed}, got {points}")
            return False
        self.armed = 0
        return True

    def fetch(self):
        """The last acquisition, once; ``None`` with ``-230 Data stale`` queued when there is none."""
        if self.data is None:
            self.errors.push(-230, "Data stale: no acquisition")
            return None
        data, self.data = self.data, None
        return data

    def answer_averaging(self, head: str, arg: str):
        """``SENS:AVER:COUN <n>`` (an integer in 1..10000, else the error queued) and its query, on
        ``self.averages``; :data:`UNDEFINED` for any other header (power meter, spectrometer)."""
        if head == "SENS:AVER:COUN":
            v = self.number(arg, 1, 10000)
            if v is not None:
                if v != int(v):
                    self.errors.push(-104, "Data type error")
                else:
                    self.averages = int(v)
            return None
        if head == "SENS:AVER:COUN?":
            return str(self.averages)
        return UNDEFINED

    def number(self, arg: str, lo: float = -np.inf, hi: float = np.inf) -> float | None:
        """``arg`` as a finite number in ``[lo, hi]`` (``MIN`` / ``MAX`` name the ends), or ``None`` with
        the error queued: ``-104 Data type error`` (not a finite number), ``-222 Data out of range``."""
        word = arg.strip().upper()
        if word in ("MIN", "MINIMUM") and np.isfinite(lo):
            return float(lo)
        if word in ("MAX", "MAXIMUM") and np.isfinite(hi):
            return float(hi)
        try:
            value = float(arg)
        except ValueError:
            self.errors.push(-104, "Data type error")
            return None
        if not np.isfinite(value):
            self.errors.push(-104, "Data type error")
            return None
        if not lo <= value <= hi:
            self.errors.push(-222, "Data out of range")
            return None
        return value
