"""Transport faults made clear, and retried where that is safe.

A driver that mixes in :class:`TransportMixin` (before PyMeasure's ``Instrument``) gets:

- every message atomic: ``write``, ``write_bytes``, ``read``, ``read_bytes`` and ``ask`` each hold the
  instrument's one lock (no other thread's message interleaves) and hold a Ctrl-C or SIGTERM until the
  message is complete (:func:`~labsat.drivers.base.deferred_sigint`); an exchange of several messages
  (a command and its reply, a block and its error-queue check, a whole ramp) is one
  :meth:`~TransactionMixin.transaction`. This is the only place drivers take a lock or defer a signal;
- every pyvisa ``VisaIOError`` (a timeout, a lost session), pyserial ``SerialException`` and socket
  ``OSError`` raised by a transfer turned into an :class:`InstrumentError` subclass that names the
  instrument and the command: :class:`InstrumentTimeout`, :class:`ConnectionLost`; a reply that does
  not parse is a :class:`GarbledReply`;
- :meth:`~TransportMixin.query`, a read-back query that is retried (after reopening the connection,
  when the adapter's address is known) on a timeout, a lost connection or a garbled reply. Only
  queries without side effects go through it; set commands are never re-sent blindly, and the error
  queue (``SYST:ERR?``, which pops) is read once.

What is *not* retried raises; the drivers then put their outputs in the safe state (see each
driver's ``shutdown``) and re-raise, so no fault leaves an output on.
"""
from __future__ import annotations

import logging
import select
import socket
import threading
import time
from typing import Callable, TypeVar

from . import base
from .base import InstrumentError, deferred_sigint, is_serial_address
from .trace import trace
from .trace import tracing as trace_on

log = logging.getLogger(__name__)
T = TypeVar("T")


class InstrumentTimeout(InstrumentError):
    """The instrument did not answer within the timeout."""


class ConnectionLost(InstrumentError):
    """The connection to the instrument was dropped or could not be used."""


class GarbledReply(InstrumentError):
    """The instrument answered something that does not parse."""


RETRYABLE = (InstrumentTimeout, ConnectionLost, GarbledReply)


def adapter_address(adapter) -> tuple[str, float] | None:
    """``(address, timeout_s)`` of a PyMeasure adapter opened by :func:`open_adapter`, else ``None``."""
    from pymeasure.adapters import SerialAdapter, VISAAdapter

    try:
        if isinstance(adapter, VISAAdapter) and isinstance(getattr(adapter, "resource_name", None), str):
            return adapter.resource_name, float(adapter.connection.timeout or 2000) / 1e3
        if isinstance(adapter, SerialAdapter):
            port = adapter.connection.port
            if isinstance(port, str) and is_serial_address(port):
                return port, float(adapter.connection.timeout or 2.0)
    except Exception:  # pragma: no cover - exotic adapters
        return None
    return None


def _translate(name: str, what: str, exc: BaseException) -> InstrumentError:
    import pyvisa
    import serial

    if isinstance(exc, pyvisa.errors.VisaIOError):
        if exc.error_code == pyvisa.constants.StatusCode.error_timeout:
            return InstrumentTimeout(f"{name}: no reply (timeout) to {what!r}")
        return ConnectionLost(f"{name}: VISA error on {what!r}: {exc.description}")
    if isinstance(exc, pyvisa.errors.InvalidSession):
        return ConnectionLost(f"{name}: connection closed before {what!r}")
    if isinstance(exc, serial.SerialTimeoutException):
        return InstrumentTimeout(f"{name}: no reply (timeout) to {what!r}")
    if isinstance(exc, (serial.SerialException, OSError)):
        return ConnectionLost(f"{name}: connection lost on {what!r}: {exc}")
    return InstrumentError(f"{name}: {what!r} failed: {exc}")  # pragma: no cover


def _transport_errors():
    import pyvisa
    import serial

    return (pyvisa.errors.VisaIOError, pyvisa.errors.InvalidSession, serial.SerialException, OSError)


def _close_quietly(adapter) -> None:
    try:
        adapter.close()
    except Exception:
        pass


class TransactionMixin:
    """One lock per instrument, and Ctrl-C / SIGTERM held while an exchange is on the wire.

    ``with self.transaction():`` makes the messages inside one exchange: no other thread's message
    interleaves, and a signal that arrives meanwhile is delivered when it ends (so no message is cut in
    half). ``with self.transaction(hold_signals=False):`` keeps the exchange exclusive but lets a signal
    land between its own transactions: a ramp is interruptible between steps, never inside one.
    Transactions nest (the lock is re-entrant; signals are held until the outermost holding one ends).
    """

    def __init__(self, *args, **kwargs):
        self._lock = threading.RLock()
        super().__init__(*args, **kwargs)

    def transaction(self, hold_signals: bool = True) -> "_Exchange":
        return _Exchange(self._lock, hold_signals)


class _Exchange:
    """The context of :meth:`TransactionMixin.transaction` (a small class, not a generator: every message
    enters one, and a nested one, the common case, costs only the re-entrant lock)."""

    __slots__ = ("_lock", "_hold", "_held")

    def __init__(self, lock, hold_signals: bool):
        self._lock, self._hold, self._held = lock, hold_signals, None

    def __enter__(self) -> None:
        self._lock.acquire()
        if self._hold and not base._sigint_depth:  # the outermost holding transaction defers the signals
            try:
                self._held = deferred_sigint()
                self._held.__enter__()
            except BaseException:
                self._lock.release()
                raise

    def __exit__(self, exc_type, exc, tb) -> bool:
        try:
            if self._held is not None:
                return bool(self._held.__exit__(exc_type, exc, tb))  # delivers a held Ctrl-C / SIGTERM
            return False
        finally:
            self._lock.release()


class TransportMixin(TransactionMixin):
    """Mix in before ``Instrument``: atomic messages, clear transport errors and safe read-back retries."""

    retries: int = 2  # extra attempts of a read-back query
    retry_delay_s: float = 0.0

    _last_command: str = ""

    def _guard(self, fn: Callable[[], T], what: str) -> T:
        try:
            return fn()
        except InstrumentError:
            raise
        except _transport_errors() as exc:
            raise _translate(self.name, what, exc) from exc

    def write(self, command: str, **kwargs) -> None:
        with self.transaction():
            self._last_command = command
            trace(self.name, ">", command)  # the I/O trace (drivers/trace.py): every message, one place
            self._guard(lambda: super(TransportMixin, self).write(command, **kwargs), command)

    def write_bytes(self, content: bytes, **kwargs) -> None:
        with self.transaction():
            what = content[:40].decode(errors="replace").strip()
            self._last_command = what
            trace(self.name, ">", content)
            self._guard(lambda: super(TransportMixin, self).write_bytes(content, **kwargs), what)

    def ask(self, command: str, query_delay: float | None = None) -> str:
        """A command and its reply, as one transaction."""
        with self.transaction():
            return super().ask(command, query_delay)

    def read(self, **kwargs) -> str:
        with self.transaction():
            if self._is_serial() and not kwargs:
                reply = self._guard(self._serial_readline, self._last_command)
            else:
                reply = self._guard(lambda: super(TransportMixin, self).read(**kwargs), self._last_command)
        trace(self.name, "<", reply)
        if reply == "" and self._is_serial():  # pyserial returns what it has when the timeout expires
            raise InstrumentTimeout(f"{self.name}: no reply (timeout) to {self._last_command!r}")
        return reply

    # pyserial's read_until asks for one byte at a time (a select and a recv per byte); on a 64-channel
    # read-back that is most of the Python time of a heater update. Read what has arrived instead, and
    # keep what follows the first line for the next read.
    _rx: bytes = b""

    def _serial_recv(self, conn, timeout: float | None) -> bytes:
        sock = getattr(conn, "_socket", None)  # socket:// (serial-to-LAN bridge)
        if sock is not None:
            ready, _, _ = select.select([sock], [], [], timeout)
            if not ready:
                return b""
            data = sock.recv(1 << 16)
            if not data:
                import serial

                raise serial.SerialException("socket disconnected")
            return data
        n = conn.in_waiting
        return conn.read(n if n > 0 else 1)

    def _serial_readline(self) -> str:
        conn = self.adapter.connection
        term = (self.adapter.read_termination or "\n").encode()
        buf = self._rx
        deadline = None if conn.timeout is None else time.monotonic() + conn.timeout
        while term not in buf:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            chunk = self._serial_recv(conn, left)
            if not chunk and (deadline is None or time.monotonic() >= deadline):
                break
            buf += chunk
        line, sep, rest = buf.partition(term)
        self._rx = rest
        return line.decode(errors="replace")

    def read_bytes(self, count: int, **kwargs) -> bytes:
        with self.transaction():
            return self._read_bytes(count, **kwargs)

    def _read_bytes(self, count: int, **kwargs) -> bytes:
        if self._rx and self._is_serial():
            if count < 0:
                head, self._rx = self._rx, b""
                return head
            head, self._rx = self._rx[:count], self._rx[count:]
            if len(head) == count:
                return head
            return head + self._read_bytes(count - len(head), **kwargs)
        # (not traced here: a binary block is read in pieces and traced whole by base.read_block)
        data = self._guard(lambda: super(TransportMixin, self).read_bytes(count, **kwargs), self._last_command)
        if count > 0 and len(data) < count:
            raise InstrumentTimeout(f"{self.name}: short read ({len(data)} of {count} bytes) after "
                                    f"{self._last_command!r}")
        return data

    # Large binary blocks straight through pyvisa-py's socket (base.send_block, base.read_float_block):
    # pyvisa-py sends and receives in 4 KiB pieces, a select() and a copy each (issue 12, round 5).
    def _visa_socket(self):
        """The pyvisa-py ``TCPIP::SOCKET`` session under this instrument's adapter (its socket and pyvisa-py's
        read-ahead buffer), or None (serial, another VISA library, a protocol test adapter); looked up once
        per adapter (a reconnect replaces the adapter)."""
        adapter = getattr(self, "adapter", None)
        cached = getattr(self, "_labsat_socket", None)
        if cached is not None and cached[0] is adapter:
            return cached[1]
        session = None
        try:
            found = adapter.manager.visalib.sessions[adapter.connection.session]
            if (isinstance(getattr(found, "interface", None), socket.socket)
                    and isinstance(getattr(found, "_pending_buffer", None), bytearray)):
                session = found
        except Exception:
            session = None
        self._labsat_socket = (adapter, session)
        return session

    def send_raw(self, head: bytes, body, tail: bytes) -> bool:
        """One message of three parts, ``body`` (any buffer, e.g. a numpy array's memory) not copied, sent
        with ``sendall`` on the pyvisa-py socket; False, with nothing sent, when there is none."""
        session = self._visa_socket()
        if session is None:
            return False
        what = head[:40].decode(errors="replace").strip()
        with self.transaction():
            self._last_command = what
            if trace_on():
                trace(self.name, ">", head + bytes(body) + tail)
            sock = session.interface

            def send() -> None:
                sock.sendall(head)
                sock.sendall(body)
                sock.sendall(tail)
            self._guard(send, what)
        return True

    def recv_raw(self, count: int) -> bytearray | None:
        """``count`` bytes from the pyvisa-py socket into one buffer: first what pyvisa-py has already
        buffered, then ``recv_into`` until complete, within the session's timeout (else
        :class:`InstrumentTimeout`); None, with nothing read, when there is no such socket."""
        session = self._visa_socket()
        if session is None:
            return None
        body = bytearray(count)
        view = memoryview(body)

        def recv() -> int:
            pending = session._pending_buffer
            got = min(len(pending), count)
            if got:
                view[:got] = pending[:got]
                del pending[:got]
            sock = session.interface
            deadline = None if session.timeout is None else time.monotonic() + session.timeout
            while got < count:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    break
                ready, _, _ = select.select([sock], [], [], left)
                if ready:
                    k = sock.recv_into(view[got:], count - got)
                    if k == 0:
                        raise ConnectionResetError("the instrument closed the connection")
                    got += k
            return got

        with self.transaction():
            got = self._guard(recv, self._last_command)
        if got < count:
            raise InstrumentTimeout(f"{self.name}: short read ({got} of {count} bytes) after {self._last_command!r}")
        return body

    def _is_serial(self) -> bool:
        from pymeasure.adapters import SerialAdapter

        return isinstance(self.adapter, SerialAdapter)

    def reconnect(self) -> bool:
        """Close and reopen the connection (a fresh TCP / serial session drops any stale reply).

        Returns False when the adapter's address is unknown (e.g. a test's protocol adapter).
        """
        from .base import open_adapter

        where = adapter_address(self.adapter)
        if where is None:
            return False
        address, timeout_s = where
        old = self.adapter
        self._rx = b""
        try:
            self.adapter = open_adapter(address, **getattr(old, "labsat_open_kwargs", {"timeout_s": timeout_s}))
        except Exception as exc:
            _close_quietly(old)
            raise ConnectionLost(f"{self.name}: cannot reopen {address}: {exc}") from exc
        # The old session is closed only once the new one has carried a reply (close_stale), so an
        # instrument that watches its connections (and goes safe when none is left) never sees none.
        self._stale = getattr(self, "_stale", []) + [old]
        log.warning("%s: reconnected to %s", self.name, address)
        return True

    def close_stale(self) -> None:
        """Close the sessions replaced by :meth:`reconnect`."""
        for old in getattr(self, "_stale", ()):
            _close_quietly(old)
        self._stale = []

    def query(self, command: str, parse: Callable[[str], T] = str, retries: int | None = None) -> T:
        """A read-back query without side effects: retried on timeout, lost connection or garbage."""
        with self.transaction(hold_signals=False):  # retries and reconnects: no other thread in between
            return self._query(command, parse, 1 + (self.retries if retries is None else retries))

    def _query(self, command: str, parse: Callable[[str], T], attempts: int) -> T:
        last: InstrumentError | None = None
        for attempt in range(attempts):
            try:
                reply = self.ask(command)
                self.close_stale()
                try:
                    return parse(reply)
                except InstrumentError:
                    raise
                except (ValueError, TypeError, IndexError) as exc:
                    raise GarbledReply(f"{self.name}: garbled reply to {command!r}: {reply[:60]!r}") from exc
            except RETRYABLE as exc:
                last = exc
                log.warning("%s (attempt %d of %d)", exc, attempt + 1, attempts)
                if attempt + 1 < attempts:
                    if self.retry_delay_s:
                        time.sleep(self.retry_delay_s)
                    if isinstance(exc, (InstrumentTimeout, ConnectionLost)):
                        self.reconnect()
        assert last is not None
        self.close_stale()
        raise type(last)(f"{last} (gave up after {attempts} attempts)") from last


def floats(n: int | None = None) -> Callable[[str], list[float]]:
    """Parser: a comma-separated list of ``n`` numbers (any count when ``n`` is None)."""

    def parse(reply: str) -> list[float]:
        values = [float(x) for x in reply.strip().split(",")]
        if n is not None and len(values) != n:
            raise ValueError(f"{len(values)} values, expected {n}")
        return values

    return parse


def one_float(reply: str) -> float:
    return float(reply.strip())


def scpi_bool(reply: str) -> bool:
    r = reply.strip().upper()
    if r in ("1", "ON"):
        return True
    if r in ("0", "OFF"):
        return False
    raise ValueError(reply)


class ScpiErrorMixin:
    """The SCPI error queue: drain ``SYST:ERR?`` (each entry read once, never retried: it pops) and raise
    one :class:`InstrumentError` listing every entry. The one error-queue mechanism of the SCPI drivers."""

    ERROR_QUEUE_DEPTH = 32  # at most this many entries read per drain

    def scpi_errors(self) -> list[tuple[int, str]]:
        errors = []
        with self.transaction(hold_signals=False):  # no other thread's command between the reads
            for _ in range(self.ERROR_QUEUE_DEPTH):
                reply = self.ask("SYST:ERR?").strip()
                code, _, msg = reply.partition(",")
                try:
                    code_i = int(code)
                except ValueError:
                    raise GarbledReply(f"{self.name}: garbled reply to SYST:ERR?: {reply[:60]!r}") from None
                if code_i == 0:
                    break
                errors.append((code_i, msg.strip().strip('"')))
        return errors

    def raise_scpi_errors(self, context: str = "") -> None:
        """Raise on any queued error; ``context`` (the command) is named in the message."""
        errors = self.scpi_errors()
        if errors:
            text = "; ".join(f"{c}: {m}" for c, m in errors)
            raise InstrumentError(f"{self.name} reported{' after ' + context if context else ''}: {text}")

    def check_scpi_errors(self) -> None:
        self.raise_scpi_errors()

    def check_set_errors(self) -> list:  # PyMeasure's hook for check_set_errors=True
        self.raise_scpi_errors()
        return []
