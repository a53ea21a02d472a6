"""What every labsat driver shares: errors, connection by address, atomic transfers, binary blocks.

Drivers are PyMeasure :class:`~pymeasure.instruments.Instrument` subclasses. The adapter is picked from
the address: a pyserial URL or port (``socket://host:port``, ``/dev/ttyUSB0``, ``COM3``) opens a
:class:`~pymeasure.adapters.SerialAdapter`; anything else is a VISA resource opened with pyvisa-py
(``TCPIP0::host::port::SOCKET``, ``USB0::...::INSTR``, ``GPIB0::5::INSTR``).
"""
from __future__ import annotations

import contextlib
import os
import signal
import socket
import threading

import numpy as np
from pyvisa.util import from_ieee_block, to_ieee_block

from .addresses import SERIAL_PREFIXES, diagnosis, is_serial_address  # noqa: F401 (SERIAL_PREFIXES: public here too)


class InstrumentError(RuntimeError):
    """An instrument refused a command, replied garbage, or could not be reached."""


class LimitError(ValueError):
    """A requested output is outside a limit; nothing was sent to the instrument."""


class VisaLibraryError(RuntimeError):
    """The VISA library an instrument names (instruments.yaml ``visa_library``) cannot be loaded; turned
    into the instrument's one-line :class:`InstrumentError` by :func:`open_adapter`."""


def diagnose(address: str, exc: BaseException, name: str | None = None, key: str | None = None) -> InstrumentError:
    """One :class:`InstrumentError` naming the instrument, its address key and the address, and what to check."""
    return InstrumentError(diagnosis(address, exc, name=name, key=key))


def open_adapter(address: str, timeout_s: float = 2.0, baudrate: int = 115200, visa_library: str = "@py",
                 data_bits: int = 8, parity: str = "none", stop_bits: float = 1,
                 read_termination: str = "\n", write_termination: str = "\n",
                 name: str | None = None, key: str | None = None):
    """Open the PyMeasure adapter for ``address``.

    Serial line settings (``baudrate``, ``data_bits``, ``parity``, ``stop_bits``) apply to pyserial
    addresses and to VISA serial (``ASRL``) resources; ``visa_library`` picks the VISA implementation
    (``@py`` pyvisa-py, ``@ivi`` an installed NI/Keysight VISA, or a library path). See
    :mod:`labsat.drivers.connection` for the instruments.yaml fields that set them.

    Any failure to reach the instrument (port missing, permission, refused, unknown host or VISA resource,
    missing or unloadable VISA library, malformed address) is raised as one :class:`InstrumentError` that
    names the instrument ``name``, its address ``key`` and the address, and says what to check
    (drivers/addresses.py). A ``::SOCKET`` resource, which pyvisa-py connects lazily, is probed here,
    so a refused instrument is reported as itself when it is opened, not at some later transfer.
    """
    try:
        return _open_adapter(address, timeout_s, baudrate, visa_library, data_bits, parity, stop_bits,
                             read_termination, write_termination)
    except InstrumentError:
        raise
    except Exception as exc:
        raise diagnose(address, exc, name=name, key=key) from exc


def _open_adapter(address: str, timeout_s: float, baudrate: int, visa_library: str, data_bits: int, parity: str,
                  stop_bits: float, read_termination: str, write_termination: str):
    from pymeasure.adapters import SerialAdapter, VISAAdapter

    from .connection import is_visa_serial, pyserial_options, visa_serial_options

    line = dict(baud_rate=baudrate, data_bits=data_bits, parity=parity, stop_bits=stop_bits)
    reopen = dict(timeout_s=timeout_s, baudrate=baudrate, visa_library=visa_library, data_bits=data_bits,
                  parity=parity, stop_bits=stop_bits, read_termination=read_termination,
                  write_termination=write_termination)
    if is_serial_address(address):
        import serial

        port = serial.serial_for_url(address, timeout=timeout_s, **pyserial_options(**line))
        sock = getattr(port, "_socket", None)
        if sock is not None:  # serial-to-LAN bridge: no Nagle delay on short commands
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        adapter = SerialAdapter(port, write_termination=write_termination, read_termination=read_termination)
        adapter.labsat_open_kwargs = reopen  # a reconnect reopens with the same settings
        return adapter
    extra = visa_serial_options(**line) if is_visa_serial(address) else {}
    try:
        import pyvisa

        pyvisa.ResourceManager(visa_library)  # shared per library; fails here if it cannot be loaded
    except (pyvisa.errors.LibraryError, OSError, ValueError) as exc:
        raise VisaLibraryError(f"cannot load the VISA library {visa_library!r} (instruments.yaml visa_library): "
                               f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
    adapter = VISAAdapter(address, visa_library=visa_library, read_termination=read_termination,
                          write_termination=write_termination, timeout=int(timeout_s * 1000), **extra)
    if address.upper().endswith("::SOCKET"):
        try:
            session = adapter.manager.visalib.sessions[adapter.connection.session]
            sock = session.interface
        except Exception:  # pragma: no cover - other VISA backends
            sock = None
        if sock is not None:
            try:
                # pyvisa-py connects without blocking and reports success once the socket is ready, even
                # when the connection was refused: ask the socket, and fail now, naming this instrument.
                err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err:
                    raise OSError(err, os.strerror(err))
                sock.getpeername()  # ENOTCONN: never connected (no answer within the open timeout)
                # A write followed by a query would otherwise wait ~40 ms for a delayed ACK (Nagle).
                # pyvisa-py 0.8 has a setter for VI_ATTR_TCPIP_NODELAY but does not dispatch to it.
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                adapter.close()
                raise
    adapter.labsat_open_kwargs = reopen
    return adapter


def open_configured(address: str, cfg, name: str | None = None):
    """Open the PyMeasure adapter for ``address`` with the connection settings of ``cfg`` (an instrument's
    instruments.yaml entry: VISA library, serial line, terminators; :mod:`labsat.drivers.connection`);
    a failure to connect is one line naming instrument ``name`` (:func:`open_adapter`)."""
    from .connection import connection_options

    return open_adapter(address, name=name, **connection_options(cfg))


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
    # a numpy array, not a list: pyvisa then writes it with one tobytes() (same bytes, ~50x faster at 4096)
    return bytes(to_ieee_block(np.ascontiguousarray(values, dtype=np.float32).ravel(), "f", False))


def decode_block(raw: bytes) -> np.ndarray:
    """Parse an IEEE 488.2 definite-length block of little-endian float32."""
    try:
        return np.asarray(from_ieee_block(raw, "f", False, np.array), dtype=np.float64)  # np.frombuffer inside
    except Exception as exc:
        raise InstrumentError(f"malformed binary block ({len(raw)} bytes): {exc}") from exc


def read_block(instrument) -> bytes:
    """Read one IEEE 488.2 definite-length block (and its terminator) through a PyMeasure instrument."""
    head, body = _read_block_parts(instrument)
    return head + bytes(body)


def read_float_block(instrument) -> np.ndarray:
    """Read one IEEE 488.2 block of little-endian float32 (as :func:`read_block`) and return its values as
    float64, decoded straight from the bytes received (no copy of the block in between)."""
    head, body = _read_block_parts(instrument)
    if len(body) % 4:
        raise InstrumentError(f"malformed binary block ({len(head) + len(body)} bytes): {len(body)} bytes of "
                              f"data is not a whole number of float32 values")
    return np.frombuffer(body, dtype="<f4").astype(np.float64)


def _read_block_parts(instrument) -> tuple[bytes, bytearray | bytes]:
    """``(header, body)`` of one IEEE 488.2 definite-length block, its terminator consumed. On a
    pyvisa-py TCPIP socket a large body is received straight into one buffer
    (:meth:`~labsat.drivers.transport.TransportMixin.recv_raw`); elsewhere through ``read_bytes``."""
    from .trace import trace, tracing

    name = getattr(instrument, "name", "instrument")
    head = instrument.read_bytes(2)
    if len(head) != 2 or head[:1] != b"#" or not head[1:2].isdigit() or head[1:2] == b"0":
        trace(name, "<", head)
        raise InstrumentError(f"expected a binary block header '#<n>', got {head!r}")
    ndigits = int(head[1:2])
    digits = instrument.read_bytes(ndigits)
    if not digits.isdigit():
        trace(name, "<", head + digits)
        raise InstrumentError(f"malformed binary block length {digits!r}")
    n = int(digits)
    recv_raw = getattr(instrument, "recv_raw", None) if n >= RAW_SOCKET_MIN_BYTES else None
    body = None if recv_raw is None else recv_raw(n)  # None: no pyvisa-py socket under this instrument
    if body is None:
        with _binary_reads(instrument):
            body = instrument.read_bytes(n)
    instrument.read_bytes(len(_read_termination(instrument)))  # the terminator after the block
    if tracing():  # the I/O trace: one line per block (built only when someone listens)
        trace(name, "<", head + digits + bytes(body))
    return head + digits, body


def send_block(instrument, command: bytes, values) -> None:
    """Send ``command`` followed by ``values`` as one IEEE 488.2 definite-length block of little-endian
    float32 and ``\n``: one message, the bytes :func:`encode_block` makes. A block of
    :data:`RAW_SOCKET_MIN_BYTES` or more on a pyvisa-py TCPIP socket goes from the array's memory to the
    socket as it is (:meth:`~labsat.drivers.transport.TransportMixin.send_raw`; pyvisa-py would copy it in
    4 KiB slices, each sent after a ``select``: ~5 ms of Python for 1.5 MB); else through ``write_bytes``."""
    data = np.ascontiguousarray(values, dtype="<f4").reshape(-1)
    size = str(data.nbytes).encode()
    head = command + b"#" + str(len(size)).encode() + size
    send_raw = getattr(instrument, "send_raw", None) if data.nbytes >= RAW_SOCKET_MIN_BYTES else None
    if send_raw is None or not send_raw(head, memoryview(data).cast("B"), b"\n"):
        instrument.write_bytes(head + data.tobytes() + b"\n")


# Blocks of at least this many bytes go straight to / from a pyvisa-py TCPIP socket (send_block,
# read_float_block); smaller ones keep pyvisa's path, which moves them in one 4 KiB piece anyway. (4 KiB rather
# than 64 KiB: the block DAC's 16 kB read-backs too, 0.2-0.4 ms less per forward at N = 64, batch 64.)
RAW_SOCKET_MIN_BYTES = 1 << 12

# Points per channel a sequence / acquisition instrument holds when its station entry does not say
# (instruments.yaml ``max_points``; labsat.config keeps the same default for the file)
MEMORY_DEPTH = 1024


@contextlib.contextmanager
def _binary_reads(instrument):
    """The VISA session's termination character off while a block body is read: binary data holds
    ``\n`` bytes, at each of which pyvisa-py would end a read (and copy what it has buffered), so a
    1.5 MB block came in ~6000 pieces of ~256 bytes (issue 12: 150 ms of client CPU per forward at batch
    6000, 64 modes). A serial or test adapter has no VISA session: nothing to switch."""
    conn = getattr(getattr(instrument, "adapter", None), "connection", None)
    term = getattr(conn, "read_termination", None)
    if not term or not hasattr(conn, "set_visa_attribute"):
        yield
        return
    conn.read_termination = ""
    try:
        yield
    finally:
        conn.read_termination = term


def _read_termination(instrument) -> str:
    """The adapter's read terminator (``\\n`` when it does not say, e.g. a protocol test adapter)."""
    adapter = getattr(instrument, "adapter", None)
    for holder in (adapter, getattr(adapter, "connection", None)):
        term = getattr(holder, "read_termination", None)
        if isinstance(term, str) and term:
            return term
    return "\n"


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


# --- declarative knobs: PyMeasure's Instrument.control with labsat's rules ---
class ControlsMixin:
    """Makes PyMeasure's declarative ``Instrument.control`` / ``measurement`` getters read through the
    transport's retried :meth:`~labsat.drivers.transport.TransportMixin.query` (a timeout or a garbled
    reply is retried, then one clear error), which holds the instrument's lock."""

    def values(self, command, separator=",", cast=float, preprocess_reply=None, maxsplit=-1, **kwargs):
        def parse(reply: str) -> list:
            reply = reply.strip()
            if callable(preprocess_reply):
                reply = preprocess_reply(reply)
            return [item.strip() if cast is str else cast(item.strip())
                    for item in reply.split(separator, maxsplit)]

        return self.query(command, parse)


def in_range(what: str, unit: str = "", integer: bool = False, where: str = ""):
    """A PyMeasure validator that rejects (never truncates): ``LimitError`` naming the knob and its range.
    ``values`` is ``(lo, hi)``; ``where`` reads e.g. "the sensor's" in the message."""
    def validator(value, values):
        lo, hi = values
        try:
            v = float(value)
        except (TypeError, ValueError):
            v = float("nan")
        if integer and v == v and int(v) != v:
            v = float("nan")
        if not (np.isfinite(v) and lo <= v <= hi):
            kind = "an integer" if integer else "a number"
            span = f"{where + ' ' if where else ''}{lo:g}..{hi:g}{(' ' + unit) if unit else ''}"
            if integer:
                raise LimitError(f"{what} {value} must be {kind} in {span}")
            raise LimitError(f"{what} {value}{(' ' + unit) if unit else ''} is outside {span}")
        return int(v) if integer else v
    return validator


def positive(what: str, unit: str):
    def validator(value, values):
        try:
            v = float(value)
        except (TypeError, ValueError):
            v = float("nan")
        if not (np.isfinite(v) and v > 0):
            raise LimitError(f"{what} must be a positive number of {unit}, got {value!r}")
        return v
    return validator


def checked_control(get_command: str, set_command: str, docs: str, *, validator, values=(), what: str,
                    readback="equal", map_values: bool = False, dynamic: bool = False, cast=float):
    """PyMeasure's :meth:`Instrument.control`, with labsat's rules for a setting:

    - ``validator`` runs before anything is sent and raises :class:`LimitError` (reject, never truncate);
    - the instrument's error queue is drained after the set and any error raised (``SYST:ERR?``);
    - the value is read back (``readback="equal"``: equal to what was sent; a callable
      ``(got, sent) -> bool`` for other rules; ``None``: not read back) and a mismatch is an error;
    - the getter goes through :class:`ControlsMixin` (retried read-back).
    """
    from pymeasure.instruments import Instrument
    from pymeasure.instruments.common_base import DynamicProperty

    prop = Instrument.control(get_command, set_command, docs, validator=validator, values=values,
                              map_values=map_values, dynamic=dynamic, cast=cast, check_set_errors=False)
    inner_get, inner_set = prop.fget, prop.fset

    def fset(self, value, **kwargs):
        with self.transaction(hold_signals=False):
            try:
                with self.transaction():  # the set and its error check: one exchange
                    inner_set(self, value, **kwargs)
                    self.raise_scpi_errors(what)
            except LimitError as exc:
                raise LimitError(f"{self.name}: {exc}") from None
            if readback is None:
                return
            got = inner_get(self)
            sent = validator(value, kwargs.get("values", values))
            sent_text = (set_command % (values[sent] if map_values else sent)).split()[-1]
            if map_values:
                ok = got == value
            elif callable(readback):
                ok = readback(got, sent)
            else:
                ok = bool(np.isclose(float(got), float(sent_text), rtol=1e-6))
            if not ok:
                raise InstrumentError(f"{self.name}: {what} reads {got:g} after setting {sent_text}")

    if isinstance(prop, DynamicProperty):
        return DynamicProperty(fget=inner_get, fset=fset, doc=prop.__doc__, fget_params_list=prop.fget_params_list,
                               fset_params_list=prop.fset_params_list, prefix=prop.prefix)
    return property(inner_get, fset, doc=docs)
