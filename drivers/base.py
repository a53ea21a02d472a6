"""What every labsat driver shares: errors, connection by address, atomic transfers, binary blocks.

Drivers are PyMeasure :class:`~pymeasure.instruments.Instrument` subclasses. The adapter is picked from
the address: a pyserial URL or port (``socket://host:port``, ``/dev/ttyUSB0``, ``COM3``) opens a
:class:`~pymeasure.adapters.SerialAdapter`; anything else is a VISA resource opened with pyvisa-py
(``TCPIP0::host::port::SOCKET``, ``USB0::...::INSTR``, ``GPIB0::5::INSTR``).
"""
from __future__ import annotations

import contextlib
import signal
import socket
import threading

import numpy as np
from pyvisa.util import from_ieee_block, to_ieee_block


class InstrumentError(RuntimeError):
    """An instrument refused a command, replied garbage, or could not be reached."""


class LimitError(ValueError):
    """A requested output is outside a limit; nothing was sent to the instrument."""


SERIAL_PREFIXES = ("socket://", "rfc2217://", "loop://", "/dev/", "COM", "spy://")


def is_serial_address(address: str) -> bool:
    return address.startswith(SERIAL_PREFIXES)


def open_adapter(address: str, timeout_s: float = 2.0, baudrate: int = 115200, visa_library: str = "@py"):
    """Open the PyMeasure adapter for ``address`` with ``\\n`` terminations."""
    from pymeasure.adapters import SerialAdapter, VISAAdapter

    if is_serial_address(address):
        import serial

        port = serial.serial_for_url(address, baudrate=baudrate, timeout=timeout_s)
        sock = getattr(port, "_socket", None)
        if sock is not None:  # serial-to-LAN bridge: no Nagle delay on short commands
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return SerialAdapter(port, write_termination="\n", read_termination="\n")
    adapter = VISAAdapter(address, visa_library=visa_library, read_termination="\n",
                          write_termination="\n", timeout=int(timeout_s * 1000))
    if address.upper().endswith("::SOCKET"):
        # A write followed by a query would otherwise wait ~40 ms for a delayed ACK (Nagle).
        # pyvisa-py 0.8 has a setter for VI_ATTR_TCPIP_NODELAY but does not dispatch to it, so set
        # the option on its socket; harmless where the backend is another VISA.
        try:
            session = adapter.manager.visalib.sessions[adapter.connection.session]
            session.interface.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except Exception:  # pragma: no cover - other VISA backends
            pass
    return adapter


_sigint_depth = 0  # deferred_sigint nesting on the main thread


@contextlib.contextmanager
def deferred_sigint():
    """Hold a Ctrl-C (SIGINT) or a SIGTERM until the enclosed transfer is complete, so no message is cut
    in half; then deliver it: SIGINT as ``KeyboardInterrupt``, SIGTERM to the handler that was installed
    (the station's turns it into an orderly exit; with none, the default: the process ends).

    Only the main thread receives signals, so elsewhere this is a no-op. Nested uses hold the signals
    until the outermost one ends (an inner one must not raise while the outer transfer goes on).
    """
    global _sigint_depth
    if threading.current_thread() is not threading.main_thread() or _sigint_depth:
        yield
        return
    received: list[int] = []
    previous: dict[int, object] = {}
    try:
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, lambda s, f: received.append(s))
    except ValueError:  # not in the main interpreter
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        yield
        return
    _sigint_depth += 1
    try:
        yield
    finally:
        _sigint_depth -= 1
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if signal.SIGTERM in received:
            handler = previous[signal.SIGTERM]
            if callable(handler):
                handler(signal.SIGTERM, None)
            elif handler == signal.SIG_DFL:
                import os

                os.kill(os.getpid(), signal.SIGTERM)
        if signal.SIGINT in received:
            raise KeyboardInterrupt


def encode_block(values: np.ndarray) -> bytes:
    """IEEE 488.2 definite-length block of little-endian float32."""
    return bytes(to_ieee_block(np.asarray(values, dtype=np.float32).ravel().tolist(), "f", False))


def decode_block(raw: bytes) -> np.ndarray:
    """Parse an IEEE 488.2 definite-length block of little-endian float32."""
    try:
        return np.asarray(from_ieee_block(raw, "f", False), dtype=np.float64)
    except Exception as exc:
        raise InstrumentError(f"malformed binary block ({len(raw)} bytes): {exc}") from exc


def read_block(instrument) -> bytes:
    """Read one IEEE 488.2 definite-length block (and its terminator) through a PyMeasure instrument."""
    head = instrument.read_bytes(2)
    if len(head) != 2 or head[:1] != b"#" or not head[1:2].isdigit() or head[1:2] == b"0":
        raise InstrumentError(f"expected a binary block header '#<n>', got {head!r}")
    ndigits = int(head[1:2])
    digits = instrument.read_bytes(ndigits)
    if not digits.isdigit():
        raise InstrumentError(f"malformed binary block length {digits!r}")
    body = instrument.read_bytes(int(digits))
    instrument.read_bytes(1)  # terminator
    return head + digits + body


class ScpiErrorMixin:
    """Drains ``SYST:ERR?`` after a command and raises on any queued error."""

    def check_scpi_errors(self) -> None:
        errors = []
        for _ in range(16):
            reply = self.ask("SYST:ERR?").strip()
            code, _, msg = reply.partition(",")
            try:
                code_i = int(code)
            except ValueError:
                raise InstrumentError(f"{self.name}: garbled reply to SYST:ERR?: {reply!r}")
            if code_i == 0:
                break
            errors.append(f"{code_i}: {msg.strip(chr(34))}")
        if errors:
            raise InstrumentError(f"{self.name} reported: " + "; ".join(errors))


def parse_floats(reply: str, expected: int, what: str) -> np.ndarray:
    """Parse a comma-separated reply of ``expected`` numbers, or raise a clear error."""
    parts = reply.strip().split(",")
    try:
        values = np.array([float(p) for p in parts])
    except ValueError:
        raise InstrumentError(f"garbled reply to {what}: {reply[:80]!r}") from None
    if len(values) != expected:
        raise InstrumentError(f"{what} returned {len(values)} values, expected {expected}")
    return values
