"""Issue 14, item 2: real-bench connection errors name the instrument, its key and the address, and say
what to check; a refused instrument is reported as itself, once.

Every case here fails for real on this machine: closed loopback ports (found by binding and releasing
one), a serial port that does not exist, a file that is not a serial port, a host name that does not
resolve (.invalid is reserved), VISA interfaces whose pyvisa-py support is not installed, a VISA library
that does not exist, malformed addresses. Only the permission case is simulated (tests may run as root,
who is never refused), with pyserial's exact exception.
"""
from __future__ import annotations

import errno
import socket

import pytest
import serial
import yaml
from typer.testing import CliRunner

from conftest import INSTRUMENTS_YAML
from labsat.drivers.addresses import check_address
from labsat.drivers.base import InstrumentError, open_adapter


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens once the socket is closed


def _error(address: str, **kwargs) -> str:
    with pytest.raises(InstrumentError) as info:
        open_adapter(address, timeout_s=0.5, name="heaters", **kwargs)
    msg = str(info.value)
    assert msg.startswith("heaters: cannot open ") and repr(address) in msg, msg
    assert "(instruments.heaters.address)" in msg, msg
    assert "\n" not in msg
    return msg


def test_refused_visa_socket_is_reported_at_open():
    port = _closed_port()
    msg = _error(f"TCPIP0::127.0.0.1::{port}::SOCKET")
    assert "VISA LAN" in msg and "connection refused by 127.0.0.1" in msg and "TCP port" in msg


def test_refused_vxi11_instr_says_what_to_try():
    msg = _error("TCPIP0::127.0.0.1::inst0::INSTR")  # nothing serves the portmapper (111) on loopback
    assert ("VXI-11" in msg and "::SOCKET" in msg) or "no answer" in msg, msg


@pytest.mark.parametrize("scheme, label", [("socket", "serial bridge (raw TCP)"), ("rfc2217", "serial bridge (RFC 2217)")])
def test_refused_serial_bridge(scheme, label):
    msg = _error(f"{scheme}://127.0.0.1:{_closed_port()}")
    assert label in msg and "connection refused" in msg and "serial-to-LAN bridge" in msg


@pytest.mark.parametrize("address", ["/dev/ttyLABSAT_NOPE", "ASRL/dev/ttyLABSAT_NOPE::INSTR"])
def test_missing_serial_port(address):
    msg = _error(address)
    assert "no such port on this computer" in msg and "/dev/serial/by-id" in msg


def test_not_a_serial_port():
    assert "this file is not a serial port" in _error("/dev/null")


def test_unknown_bridge_host():
    assert "unknown host name 'nonexistent.invalid'" in _error("socket://nonexistent.invalid:4001")


def test_permission_denied(monkeypatch):
    def refuse(url, **kwargs):  # pyserial's own message for EACCES
        raise serial.SerialException(errno.EACCES, f"could not open port {url}: [Errno 13] Permission denied: "
                                                    f"'{url}'")

    monkeypatch.setattr(serial, "serial_for_url", refuse)
    msg = _error("/dev/ttyUSB0")
    assert "permission denied" in msg and "dialout" in msg


@pytest.mark.parametrize("address, advice", [
    ("USB0::0x1AB1::0x0588::DS1ED1::INSTR", ("pyusb", "no such VISA resource")),
    ("GPIB0::5::INSTR", ("GPIB support is missing", "no such VISA resource", "GPIB")),
])
def test_visa_interfaces_without_support_say_what_to_install(address, advice):
    msg = _error(address)
    assert any(a in msg for a in advice), msg


@pytest.mark.parametrize("library", ["@labsat_missing_backend", "/nonexistent/libvisa.so"])
def test_missing_visa_backend(library):
    msg = _error("TCPIP0::127.0.0.1::5025::SOCKET", visa_library=library)
    assert "the VISA backend is missing" in msg and "pyvisa-py" in msg


@pytest.mark.parametrize("address, problem", [
    ("garbage", "is not a valid address"),
    ("GPIB0::INTFC", "INTFC resource"),
    ("socket://192.0.2.5", "socket://<host>:<port>"),
    ("socket://192.0.2.5:99999", "socket://<host>:<port>"),
    ("COMX", "COM<n>"),
    (" /dev/ttyUSB0", "surrounding spaces"),
])
def test_malformed_addresses(address, problem):
    assert problem in check_address(address)
    assert problem in _error(address)  # open_adapter says the same if it is ever reached


@pytest.mark.parametrize("address", ["auto", "/dev/ttyUSB0", "COM3", "socket://bridge.lab:4001",
                                     "rfc2217://192.0.2.5:2217?logging=debug", "loop://",
                                     "TCPIP0::192.0.2.10::5025::SOCKET", "TCPIP0::host.lab::inst0::INSTR",
                                     "TCPIP::192.0.2.10::INSTR", "USB0::0x1AB1::0x0588::DS1ED1::INSTR",
                                     "GPIB0::5::INSTR", "ASRL/dev/ttyUSB0::INSTR", "ASRL3::INSTR"])
def test_well_formed_addresses_pass(address):
    assert check_address(address) is None


def test_refused_heater_dac_is_reported_as_itself_once(tmp_path, monkeypatch):
    """The issue's case: a refused TCPIP heater DAC was blamed on the modulator after nine lines of retries."""
    from labsat import cli

    monkeypatch.setattr(cli.console, "width", 10_000)
    doc = yaml.safe_load(INSTRUMENTS_YAML.read_text())
    doc["station"].update(backend="real", calibration_dir=str(tmp_path / "cal"), runs_dir=str(tmp_path / "runs"))
    ports = [_closed_port() for _ in range(3)]
    for name, port in zip(("heaters", "modulator", "detectors"), ports):
        doc["instruments"][name]["address"] = f"TCPIP0::127.0.0.1::{port}::SOCKET"
    doc["layers"]["mesh"]["device"] = "chipA"
    path = tmp_path / "real.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))  # heaters first, as in the file
    result = CliRunner().invoke(cli.app, ["calibrate", "--station", str(path)])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert lines == [f"error: heaters: cannot open VISA LAN 'TCPIP0::127.0.0.1::{ports[0]}::SOCKET' "
                     f"(instruments.heaters.address): connection refused by 127.0.0.1: is the instrument on, "
                     f"and is the TCP port right (nothing listens on it)?"], result.output


def test_missing_serial_heater_port_through_the_cli(tmp_path, monkeypatch):
    from labsat import cli

    monkeypatch.setattr(cli.console, "width", 10_000)
    doc = yaml.safe_load(INSTRUMENTS_YAML.read_text())
    doc["station"].update(backend="real", calibration_dir=str(tmp_path / "cal"), runs_dir=str(tmp_path / "runs"))
    doc["instruments"]["heaters"]["address"] = "/dev/ttyLABSAT_NOPE"
    for name in ("modulator", "detectors"):
        doc["instruments"][name]["address"] = f"TCPIP0::127.0.0.1::{_closed_port()}::SOCKET"
    doc["layers"]["mesh"]["device"] = "chipA"
    path = tmp_path / "real.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))  # heaters first, as in the file
    result = CliRunner().invoke(cli.app, ["calibrate", "--station", str(path)])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert result.output.startswith("error: heaters: cannot open serial port '/dev/ttyLABSAT_NOPE' "
                                    "(instruments.heaters.address): no such port"), result.output
