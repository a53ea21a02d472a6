"""Instrument I/O trace: every message to and from every instrument, timestamped, through Python logging.

One logger, ``labsat.io``, gets one record per message from one place: the transport
(:class:`labsat.drivers.transport.TransportMixin` for the PyMeasure drivers, the HTTP request of the
pulse shaper). It is silent unless someone listens: :func:`start_trace` writes it to a file
(``labsat --trace FILE ...``), and any logging handler may subscribe (the GUI's log pane).

A trace line::

    2026-12-03T03:41:07.512345Z heaters > 'V0=1.0000\\nV1=1.0000\\n'
    2026-12-03T03:41:07.512890Z heaters < 'OK'
"""
from __future__ import annotations

import datetime as _dt
import logging
from pathlib import Path

io_log = logging.getLogger("labsat.io")
BLOCK_HEAD = 48  # a binary block is traced by its first bytes and its length, not in full


class _UTCFormatter(logging.Formatter):
    def formatTime(self, record, datefmt=None):  # noqa: N802 - logging's name
        t = _dt.datetime.fromtimestamp(record.created, _dt.timezone.utc)
        return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def tracing() -> bool:
    return io_log.isEnabledFor(logging.DEBUG)


def trace(instrument: str, direction: str, payload) -> None:
    """One message: ``direction`` is ``>`` (sent) or ``<`` (received); str or bytes. Text is traced in
    full; a binary block by its first bytes and its length."""
    if not io_log.isEnabledFor(logging.DEBUG):
        return
    if isinstance(payload, (bytes, bytearray)):
        try:
            text = bytes(payload).decode("ascii")
            binary = not all(c.isprintable() or c in "\r\n\t" for c in text)
        except UnicodeDecodeError:
            binary = True
        if binary:
            io_log.debug("%s %s %r ... (%d bytes)", instrument, direction, bytes(payload[:BLOCK_HEAD]), len(payload))
            return
        payload = text
    io_log.debug("%s %s %r", instrument, direction, payload)


def start_trace(path: str | Path) -> logging.Handler:
    """Append the I/O trace to ``path`` (created with its folder); returns the handler (stop_trace)."""
    path = Path(path).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(_UTCFormatter("%(asctime)s %(message)s"))
    handler.setLevel(logging.DEBUG)
    io_log.addHandler(handler)
    io_log.setLevel(logging.DEBUG)
    io_log.propagate = False  # the trace goes to its file, not to the console
    return handler


def stop_trace(handler: logging.Handler) -> None:
    io_log.removeHandler(handler)
    handler.close()
    if not io_log.handlers:
        io_log.setLevel(logging.NOTSET)
        io_log.propagate = True
