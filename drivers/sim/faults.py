"""Faults on demand and a timing model for the virtual lab's instruments.

Both act between the protocol server and the simulated instrument: :func:`install` wraps a served
instrument (``lab.servers[name].instrument``) in an :class:`InstrumentFront`, which sees every
message before the instrument does and every reply after it.

Faults (``Fault.kind``), each fired on the messages whose command starts with ``match`` (case-blind;
empty: every message), after letting ``after`` of them through, ``count`` times (0: for ever):

=============  ===========================================================================
``timeout``    the message is swallowed: not executed, no reply (the driver's read times out)
``garbled``    the message is executed, its reply is replaced by line noise
``drop``       the connection is closed on receipt; the message is not executed
``error``      not executed; SCPI instruments queue ``-300,"Device-specific error"`` (read by
               ``SYST:ERR?``), Qontrol-style ones reply ``E13:<ch>`` (forbidden)
``refuse``     an over-limit refusal: SCPI ``-222,"Data out of range"``, Qontrol ``E01:<ch>``
=============  ===========================================================================

Timing (:class:`TimingModel`): every message costs ``query_latency_s`` (the round trip of a LAN/USB
instrument) plus, on serial instruments, its bytes at ``baud`` (10 bits a byte, both ways); the
chip adds thermal settling after a heater change and integration time per acquired sample (its
``seconds_per_heater_update`` / ``seconds_per_sample``). All of it advances the chip's virtual clock
(drift follows it) and is summed in :class:`LabClock`; with ``realtime`` the server also *sleeps* it,
so wall-clock benchmarks include the instrument time as a real bench would.
"""
from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass, field

FAULT_KINDS = ("timeout", "garbled", "drop", "error", "refuse")
GARBAGE = "\x15?#@!\x7f"


class DropConnection(Exception):
    """Raised inside a server handler to close the client's connection."""


@dataclass
class Fault:
    kind: str
    match: str = ""
    after: int = 0
    count: int = 1
    seen: int = 0
    fired: int = 0

    def __post_init__(self):
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"fault kind {self.kind!r}: must be one of {', '.join(FAULT_KINDS)}")
        if self.after < 0 or self.count < 0:
            raise ValueError("fault after/count must be >= 0")

    @property
    def spent(self) -> bool:
        return self.count != 0 and self.fired >= self.count

    def matches(self, command: str) -> bool:
        return command.upper().lstrip(":").startswith(self.match.upper().lstrip(":"))


class FaultInjector:
    """The faults armed on one instrument; thread-safe."""

    def __init__(self, faults=()):
        self._lock = threading.Lock()
        self.faults: list[Fault] = []
        self.log: list[tuple[str, str]] = []  # (kind, command) of every fault fired
        for f in faults:
            self.add(**f) if isinstance(f, dict) else self.faults.append(f)

    def add(self, kind: str, match: str = "", after: int = 0, count: int = 1) -> Fault:
        fault = Fault(kind, match, after, count)
        with self._lock:
            self.faults.append(fault)
        return fault

    def clear(self) -> None:
        with self._lock:
            self.faults.clear()

    def pick(self, command: str) -> Fault | None:
        with self._lock:
            for fault in self.faults:
                if fault.spent or not fault.matches(command):
                    continue
                fault.seen += 1
                if fault.seen > fault.after:
                    fault.fired += 1
                    self.log.append((fault.kind, command))
                    return fault
            return None


@dataclass
class TimingModel:
    """Modelled instrument time; defaults are zero so tests stay fast."""

    query_latency_s: float = 0.0  # per message answered (round trip)
    command_latency_s: float = 0.0  # per message not answered
    baud: int = 0  # serial instruments: line rate (0: infinitely fast)
    link_bytes_per_s: float = 0.0  # LAN instruments: effective link rate, every byte of a message and its
    # reply (0: infinitely fast); a 4032-value block is 16 kB, 1.3 ms at 100 Mbit/s
    realtime: bool = False  # sleep the modelled time in the server thread


@dataclass
class LabClock:
    """Modelled instrument time summed over every served instrument of a lab."""

    modelled_s: float = 0.0  # instrument time the model charged (latency, transfer, settling, integration)
    slept_s: float = 0.0  # wall time actually slept for it (realtime mode)
    compute_s: float = 0.0  # wall time the simulator itself spent computing replies (not on a real bench)
    messages: int = 0
    per_instrument: dict = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, name: str, seconds: float) -> None:
        with self._lock:
            self.modelled_s += seconds
            self.messages += 1
            self.per_instrument[name] = self.per_instrument.get(name, 0.0) + seconds

    def add_wall(self, slept: float = 0.0, compute: float = 0.0) -> None:
        with self._lock:
            self.slept_s += slept
            self.compute_s += compute

    def reset(self) -> None:
        with self._lock:
            self.modelled_s, self.messages, self.slept_s, self.compute_s = 0.0, 0, 0.0, 0.0
            self.per_instrument.clear()


def _channel_of(command: str) -> int:
    m = re.search(r"(\d+)", command)
    return int(m.group(1)) if m else 0


class InstrumentFront:
    """Sits between a protocol server and a simulated instrument: faults, then timing."""

    def __init__(self, inner, name: str, chip=None, faults: FaultInjector | None = None,
                 timing: TimingModel | None = None, clock: LabClock | None = None, serial: bool = False):
        self.inner, self.name, self.chip = inner, name, chip
        self.faults = faults or FaultInjector()
        self.timing = timing or TimingModel()
        self.clock = clock or LabClock()
        self.serial = serial

    def __getattr__(self, item):  # the instrument's state stays reachable (tests, scenes)
        return getattr(self.inner, item)

    def _refusal(self, command: str, kind: str):
        errors = getattr(self.inner, "errors", None)
        if errors is not None and hasattr(errors, "push"):  # SCPI error queue
            if kind == "refuse":
                errors.push(-222, "Data out of range")
            else:
                errors.push(-300, "Device-specific error")
            return None
        return f"E{'01' if kind == 'refuse' else '13'}:{_channel_of(command)}"  # Qontrol-style

    def _virtual_now(self) -> float:
        return getattr(self.chip, "virtual_time_s", 0.0) if self.chip is not None else 0.0

    def handle(self, command: str, block: bytes | None):
        fault = self.faults.pick(command) if self.faults.faults else None
        if fault is not None:
            if fault.kind == "drop":
                raise DropConnection(command)
            if fault.kind == "timeout":
                return None
            if fault.kind in ("error", "refuse"):
                reply = self._refusal(command, fault.kind)
                self._account(command, block, reply, 0.0)
                return reply
        t0, w0 = self._virtual_now(), time.perf_counter()
        reply = self.inner.handle(command, block)
        self.clock.add_wall(compute=time.perf_counter() - w0)
        physics = max(0.0, self._virtual_now() - t0)  # settling / integration the chip modelled
        if fault is not None and fault.kind == "garbled" and reply is not None:
            reply = GARBAGE if isinstance(reply, str) else GARBAGE.encode()
        self._account(command, block, reply, physics)
        return reply

    def _account(self, command: str, block, reply, physics: float) -> None:
        t = self.timing
        extra = t.query_latency_s if reply is not None else t.command_latency_s
        if self.serial and t.baud:
            extra += 10.0 * _message_bytes(command, block, reply) / t.baud
        elif not self.serial and t.link_bytes_per_s:
            extra += _message_bytes(command, block, reply) / t.link_bytes_per_s
        if extra and self.chip is not None and hasattr(self.chip, "virtual_time_s"):
            lock = getattr(self.chip, "_lock", None)
            if lock is not None:
                with lock:
                    self.chip.virtual_time_s += extra
            else:
                self.chip.virtual_time_s += extra
        total = extra + physics
        self.clock.add(self.name, total)
        if t.realtime and total > 0:
            w0 = time.perf_counter()
            time.sleep(total)
            self.clock.add_wall(slept=time.perf_counter() - w0)


def _message_bytes(command: str, block, reply) -> int:
    """Bytes on the line for one message, its binary block and its reply (terminators included)."""
    return len(command) + 1 + (len(block) if block else 0) + (len(reply) + 1 if reply is not None else 0)


def _quiet_handle_error(request, client_address):
    import sys

    exc = sys.exc_info()[1]
    if isinstance(exc, (DropConnection, ConnectionError)):
        return
    import traceback

    traceback.print_exc()


def lab_clock(lab) -> LabClock:
    clock = getattr(lab, "clock", None)
    if clock is None:
        clock = LabClock()
        lab.clock = clock
    return clock


def install(lab, name: str, faults=(), timing: TimingModel | None = None,
            serial: bool | None = None) -> InstrumentFront:
    """Put an :class:`InstrumentFront` in front of the served instrument ``name`` (idempotent).

    Returns the front; arm faults later with ``front.faults.add(kind, match=..., after=..., count=...)``.
    """
    server = lab.servers[name]
    if not hasattr(server, "instrument"):  # an HTTP instrument keeps its faults and timing itself
        server.clock = lab_clock(lab)
        if timing is not None:
            server.timing = timing
        for f in faults:
            server.faults.faults.append(f) if isinstance(f, Fault) else server.faults.add(**dict(f))
        return server
    front = server.instrument if isinstance(server.instrument, InstrumentFront) else None
    if front is None:
        if serial is None:  # serial instruments pay the baud rate; guess when the caller does not say
            serial = type(server.instrument).__name__ == "SimHeaterDAC"
        front = InstrumentFront(server.instrument, name, chip=_chip_of(lab, server.instrument),
                                clock=lab_clock(lab), serial=serial)
        server.instrument = front
        server.handle_error = _quiet_handle_error
    if timing is not None:
        front.timing = timing
    for f in faults:
        if isinstance(f, Fault):
            front.faults.faults.append(f)
        else:
            front.faults.add(**(f if isinstance(f, dict) else dict(f)))
    return front


def _chip_of(lab, inst):
    chip = getattr(inst, "chip", None) or getattr(inst, "scene", None)
    if chip is None:
        try:
            chip = lab.chip
        except Exception:  # pragma: no cover
            chip = None
    return chip


def set_chip_timing(chip, settling_s: float | None = None, sample_s: float | None = None) -> None:
    """Thermal settling after a heater change and integration time per acquired sample (virtual s)."""
    if settling_s is not None:
        chip.seconds_per_heater_update = float(settling_s)
    if sample_s is not None:
        chip.seconds_per_sample = float(sample_s)
