"""Instrument addresses: their syntax (checked when instruments.yaml is validated) and, when one cannot be
opened on a real bench, a diagnosis that names the instrument, its key and the address and says what to
check.

Two families of address reach an instrument (drivers/base.py ``open_adapter``):

- pyserial: a port (``/dev/ttyUSB0``, ``COM3``) or a URL (``socket://host:port`` for a raw serial-to-LAN
  bridge, ``rfc2217://host:port`` for a Telnet/RFC 2217 one, ``loop://``, ``spy://``);
- VISA resource strings, parsed by pyvisa's own grammar (``TCPIP0::host::port::SOCKET``,
  ``TCPIP0::host::inst0::INSTR``, ``USB0::0x1AB1::0x0588::SN::INSTR``, ``GPIB0::5::INSTR``,
  ``ASRL/dev/ttyUSB0::INSTR``, ...), opened with pyvisa-py by default.

:func:`diagnose` turns the exception of a failed open (or of the first transfer: pyvisa-py connects a
``::SOCKET`` resource lazily) into one :class:`~labsat.drivers.base.InstrumentError` line.
"""
from __future__ import annotations

import errno
import re
import socket

SERIAL_URL_SCHEMES = ("socket://", "rfc2217://", "loop://", "spy://")
SERIAL_PREFIXES = SERIAL_URL_SCHEMES + ("/dev/", "COM")
_HOST_PORT = re.compile(r"^(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+):(?P<port>\d{1,5})(?P<rest>[/?].*)?$")
# message-based VISA resource classes: the drivers speak text/binary-block protocols over them
_MESSAGE_CLASSES = ("INSTR", "SOCKET")


def is_serial_address(address: str) -> bool:
    return address.startswith(SERIAL_PREFIXES)


def check_address(address: str) -> str | None:
    """``None`` when ``address`` is well formed (or ``auto``), else what is wrong with it, in one line."""
    if address == "auto":
        return None
    if not address or address != address.strip():
        return f"{address!r} is empty or has surrounding spaces; give a port, a serial URL or a VISA resource"
    if address.startswith(("socket://", "rfc2217://")):
        scheme, rest = address.split("://", 1)
        m = _HOST_PORT.match(rest)
        if not m or not 0 < int(m["port"]) < 65536:
            return (f"{address!r}: a serial bridge address is {scheme}://<host>:<port> with a TCP port "
                    "1..65535 (e.g. socket://192.0.2.5:4001)")
        return None
    if address.startswith(("loop://", "spy://", "/dev/")):
        return None
    if address.startswith("COM"):
        return None if re.fullmatch(r"COM\d{1,3}", address) else f"{address!r}: a Windows serial port is COM<n>"
    return _check_visa(address)


def _check_visa(address: str) -> str | None:
    from pyvisa import rname

    examples = ("a serial port (/dev/ttyUSB0, COM3), a serial bridge (socket://host:4001) or a VISA resource "
                "(TCPIP0::192.0.2.10::5025::SOCKET, TCPIP0::host::inst0::INSTR, USB0::0x1AB1::0x0588::SN::INSTR, "
                "GPIB0::5::INSTR, ASRL/dev/ttyUSB0::INSTR)")
    try:
        parsed = rname.parse_resource_name(address)
    except Exception as exc:  # InvalidResourceName, or pyvisa's own errors on odd strings
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return f"{address!r} is not a valid address ({reason}); expected {examples}"
    cls = getattr(parsed, "resource_class", "")
    if cls not in _MESSAGE_CLASSES:
        return (f"{address!r} is a VISA {cls or 'interface'} resource; an instrument is reached through a "
                f"::INSTR or ::SOCKET resource, e.g. {examples}")
    if getattr(parsed, "interface_type", "") == "TCPIP" and cls == "SOCKET":
        port = getattr(parsed, "port", "")
        if not str(port).isdigit() or not 0 < int(port) < 65536:
            return f"{address!r}: the TCP port {port!r} must be a number 1..65535"
    return None


def _interface(address: str) -> str:
    if address.startswith("socket://"):
        return "serial bridge (raw TCP)"
    if address.startswith("rfc2217://"):
        return "serial bridge (RFC 2217)"
    if is_serial_address(address):
        return "serial port"
    head = re.match(r"[A-Za-z]*", address).group(0).upper()
    return {"TCPIP": "VISA LAN", "USB": "VISA USB", "GPIB": "VISA GPIB", "ASRL": "VISA serial",
            "VXI": "VISA VXI", "PXI": "VISA PXI", "VICP": "VISA VICP"}.get(head, "VISA")


def _errno_of(exc: BaseException) -> int | None:
    """The OS error number behind ``exc`` (pyserial wraps it in its message; pyvisa-py in its cause)."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno:
            return exc.errno
        m = re.search(r"\[Errno (-?\d+)\]", str(exc))
        if m:
            return int(m.group(1))
        exc = exc.__cause__ or exc.__context__
    return None


def _advice(address: str, exc: BaseException) -> str:
    """What to check, from the exception text and OS error number."""
    text = str(exc)
    low = text.lower()
    kind = _interface(address)
    num = _errno_of(exc)
    host = ""
    m = re.match(r"^(?:socket|rfc2217)://([^:/]+)", address) or re.match(r"^TCPIP\d*::([^:]+)::", address,
                                                                            re.IGNORECASE)
    if m:
        host = m.group(1)
    if ("could not locate a visa implementation" in low or "no visa library" in low or "wrapper not found" in low
            or "cannot load the visa library" in low or type(exc).__name__ in ("LibraryError", "VisaLibraryError") or ("pyvisa_py" in low and "no module" in low)):
        return (f"the VISA backend is missing ({text.strip().splitlines()[0] if text.strip() else type(exc).__name__}): "
                "install pyvisa-py (pip install pyvisa-py) or a vendor VISA (NI-VISA, Keysight IO Libraries)")
    if "install pyusb" in low or ("no module named 'usb'" in low):
        return "USB support of pyvisa-py is missing: pip install pyusb (and libusb on the system), or use a vendor VISA"
    if "linux-gpib" in low or "gpib-ctypes" in low or "no module named 'gpib'" in low:
        return ("GPIB support is missing: install linux-gpib (Linux) or gpib-ctypes, or a vendor VISA, "
                "and check the GPIB board and primary address")
    if "pyvisa-py" in low and "install" in low:
        return f"pyvisa-py lacks support for this interface: {text.splitlines()[0]}"
    if num in (errno.ENOENT, errno.ENODEV, errno.ENXIO):
        return (f"no such port on this computer: is the USB-serial adapter plugged in, and is the name right? "
                f"(ls /dev/serial/by-id /dev/ttyUSB* /dev/ttyACM*)")
    if num in (errno.EACCES, errno.EPERM):
        return ("permission denied: add your user to the port's group (Linux: sudo usermod -aG dialout $USER, "
                "then log in again) or fix the device's udev rule")
    if num == errno.EBUSY or "resource busy" in low or "locked" in low:
        return "the port is in use by another program (another labsat, a terminal program, ModemManager)"
    if num == errno.ENOTTY or "inappropriate ioctl" in low:
        return "this file is not a serial port"
    if num == errno.ECONNREFUSED or "connection refused" in low:
        if kind == "VISA LAN" and address.upper().endswith("::INSTR"):
            return (f"connection refused by {host or 'the host'}: is the instrument on, and does it serve VXI-11 "
                    "(portmapper, TCP port 111)? Otherwise use its raw socket resource, "
                    "TCPIP0::<host>::<port>::SOCKET (often port 5025)")
        what = "serial-to-LAN bridge" if kind.startswith("serial bridge") else "instrument"
        return (f"connection refused by {host or 'the host'}: is the {what} on, and is the TCP port right "
                f"(nothing listens on it)?")
    if num in (errno.ETIMEDOUT, errno.EHOSTUNREACH, errno.ENETUNREACH) or "timed out" in low or "timeout" in low:
        return (f"no answer from {host or 'the instrument'}: check it is powered, on this network (ping it) and "
                f"that no firewall blocks the port")
    if isinstance(exc, socket.gaierror) or num in (-2, -3, -5) or "name or service not known" in low \
            or "nodename nor servname" in low or "getaddrinfo" in low:
        return f"unknown host name {host!r}: check the spelling or use the instrument's IP address"
    if "rsrc_nfound" in low or "resource not found" in low or "insufficient location information" in low \
            or "no device found" in low:
        return ("no such VISA resource: list what is attached with `python -m pyvisa info` / "
                "pyvisa.ResourceManager('@py').list_resources() and copy its resource string")
    if "is not a valid attribute" in low:
        return ("this VISA resource is not a message-based instrument: use a ::INSTR or ::SOCKET resource "
                "string")
    if "bad file descriptor" in low:
        return "the VISA resource string is incomplete (expected e.g. TCPIP0::192.0.2.10::5025::SOCKET)"
    first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    return f"{type(exc).__name__}: {first}"


def diagnosis(address: str, exc: BaseException, name: str | None = None, key: str | None = None) -> str:
    """One line naming the instrument, its address key and the address, and what to check
    (:func:`labsat.drivers.base.diagnose` makes it the :class:`~labsat.drivers.base.InstrumentError`; this
    module imports nothing of the drivers, so ``base`` can import it)."""
    who = f"{name}: " if name else ""
    where = f" ({key})" if key else (f" (instruments.{name}.address)" if name else "")
    problem = check_address(address)
    if problem:
        return f"{who}cannot open {address!r}{where}: {problem}"
    return f"{who}cannot open {_interface(address)} {address!r}{where}: {_advice(address, exc)}"
