"""How to reach one instrument: which VISA library, which serial line settings, which terminators.

instruments.yaml may say, per instrument (all optional; the defaults are those of the virtual lab)::

    heaters:
      address: ASRL/dev/ttyUSB0::INSTR     # or /dev/ttyUSB0, socket://bridge:4001, GPIB0::5::INSTR ...
      visa_library: "@ivi"                 # "@py" (pyvisa-py, default), "@ivi" (NI/Keysight/R&S VISA),
                                           # "@sim" (pyvisa-sim), or the path of a VISA library file
      serial: {baud_rate: 57600, data_bits: 8, parity: even, stop_bits: 1}
      termination: {read: "\\r\\n", write: "\\n"}

The serial settings apply to pyserial addresses (``/dev/...``, ``COM3``, ``socket://``) and to VISA
serial resources (``ASRL...``); the terminators to every address. :func:`labsat.drivers.base.open_configured`
opens an instrument's adapter with them (this module imports nothing of the drivers: base imports it). This module is plain Python (the
station file's pydantic models in :mod:`labsat.config` call its checks), so the drivers keep no
dependency on the config.
"""
from __future__ import annotations

import os

DEFAULT_VISA_LIBRARY = "@py"
VISA_BACKENDS = {"@py": "pyvisa-py (pure Python, the default)", "@ivi": "an installed IVI VISA (NI-VISA, Keysight, R&S)",
                 "@sim": "pyvisa-sim (simulated instruments)"}
PARITIES = ("none", "odd", "even", "mark", "space")
STOP_BITS = (1, 1.5, 2)
DATA_BITS = (5, 6, 7, 8)
TERMINATORS = ("\n", "\r\n", "\r")
LIBRARY_SUFFIXES = (".so", ".dll", ".dylib", ".framework")


def check_visa_library(value: str) -> str:
    """``@py``, ``@ivi``, ``@sim``, or a library path (optionally ``path@ivi``); raise ValueError otherwise."""
    value = str(value).strip()
    if value in VISA_BACKENDS:
        return value
    path, _, backend = value.rpartition("@") if "@" in value else (value, "", "")
    if backend and f"@{backend}" not in VISA_BACKENDS:
        path = value  # an '@' inside a path
    name = os.path.basename(path)
    if path and (name.endswith(LIBRARY_SUFFIXES) or ".so." in name):
        return value
    raise ValueError(f"{value!r} is not a VISA library: use '@py' (pyvisa-py, the default), '@ivi' "
                     "(the installed NI/Keysight/R&S VISA), '@sim', or the path of a VISA library file "
                     "(e.g. /usr/lib/x86_64-linux-gnu/libvisa.so)")


def is_visa_serial(address: str) -> bool:
    return address.upper().startswith("ASRL")


def pyserial_options(baud_rate=115200, data_bits=8, parity="none", stop_bits=1) -> dict:
    """Keyword arguments of ``serial.serial_for_url`` for these line settings."""
    import serial

    return dict(baudrate=int(baud_rate), bytesize=int(data_bits), parity={
        "none": serial.PARITY_NONE, "odd": serial.PARITY_ODD, "even": serial.PARITY_EVEN,
        "mark": serial.PARITY_MARK, "space": serial.PARITY_SPACE}[parity],
        stopbits={1: serial.STOPBITS_ONE, 1.5: serial.STOPBITS_ONE_POINT_FIVE, 2: serial.STOPBITS_TWO}[stop_bits])


def visa_serial_options(baud_rate=115200, data_bits=8, parity="none", stop_bits=1) -> dict:
    """Keyword arguments of pyvisa's ``open_resource`` for a serial (ASRL) resource."""
    from pyvisa.constants import Parity, StopBits

    return dict(baud_rate=int(baud_rate), data_bits=int(data_bits), parity=getattr(Parity, parity),
                stop_bits={1: StopBits.one, 1.5: StopBits.one_and_a_half, 2: StopBits.two}[stop_bits])


def connection_options(cfg) -> dict:
    """The :func:`labsat.drivers.base.open_adapter` keyword arguments an instrument's config asks for
    (duck-typed: a config without these fields gets the defaults)."""
    opts = dict(timeout_s=getattr(cfg, "timeout_s", 2.0),
                visa_library=getattr(cfg, "visa_library", DEFAULT_VISA_LIBRARY) or DEFAULT_VISA_LIBRARY)
    line = getattr(cfg, "serial", None)
    if line is not None:
        opts.update(baudrate=line.baud_rate, data_bits=line.data_bits, parity=line.parity, stop_bits=line.stop_bits)
    term = getattr(cfg, "termination", None)
    if term is not None:
        opts.update(read_termination=term.read, write_termination=term.write)
    return opts
