"""Any VISA: visa_library, serial line settings and terminators per instrument, validated, applied."""
from __future__ import annotations

import numpy as np
import pytest
import serial
import yaml
from pyvisa.constants import Parity, StopBits

from labsat.config import ConfigError, load_config
from labsat.drivers.base import InstrumentError, open_adapter
from labsat.drivers.connection import check_visa_library, connection_options
from labsat.drivers.heater_dac import HeaterDAC
from labsat.drivers.sim.servers import VirtualLab
from labsat.station import Station


def _station(tmp_path, **heater_fields):
    data = yaml.safe_load(open("instruments.yaml"))
    data["instruments"]["heaters"].update(heater_fields)
    path = tmp_path / "station.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_defaults_are_pyvisa_py_and_the_virtual_labs_line():
    cfg = load_config("instruments.yaml").instruments["heaters"]
    assert cfg.visa_library == "@py"
    assert (cfg.serial.baud_rate, cfg.serial.data_bits, cfg.serial.parity, cfg.serial.stop_bits) == (115200, 8, "none", 1)
    assert (cfg.termination.read, cfg.termination.write) == ("\n", "\n")


@pytest.mark.parametrize("fields, key, words", [
    (dict(visa_library="@nivisa"), "instruments.heaters.visa_library", "is not a VISA library"),
    (dict(visa_library="C:/VISA/notalibrary.txt"), "instruments.heaters.visa_library", "path of a VISA library"),
    (dict(serial=dict(parity="sometimes")), "instruments.heaters.serial.parity", "'none'"),
    (dict(serial=dict(baud_rate=0)), "instruments.heaters.serial.baud_rate", "greater than 0"),
    (dict(serial=dict(stop_bits=3)), "instruments.heaters.serial.stop_bits", "1.5"),
    (dict(serial=dict(baud=9600)), "instruments.heaters.serial.baud", "Extra inputs"),
    (dict(termination=dict(read="EOS")), "instruments.heaters.termination.read", "'\\r\\n'"),
])
def test_bad_connection_settings_name_the_key(tmp_path, fields, key, words):
    with pytest.raises(ConfigError) as err:
        load_config(_station(tmp_path, **fields))
    assert key in str(err.value) and words in str(err.value)


@pytest.mark.parametrize("lib", ["@py", "@ivi", "@sim", "/usr/lib/x86_64-linux-gnu/libvisa.so",
                                 "/usr/lib/libvisa.so.25.0", "C:\\Windows\\System32\\visa64.dll",
                                 "/Library/Frameworks/VISA.framework@ivi"])
def test_accepted_visa_libraries(lib):
    assert check_visa_library(lib) == lib


def test_station_applies_the_serial_line_to_its_serial_instrument(tmp_path):
    path = _station(tmp_path, serial=dict(baud_rate=57600, data_bits=7, parity="even", stop_bits=2))
    with Station(path) as st:
        conn = st.instruments["heaters"].adapter.connection  # auto address: socket:// (pyserial)
        assert (conn.baudrate, conn.bytesize, conn.parity, conn.stopbits) == (57600, 7, serial.PARITY_EVEN, 2)
        heaters = st.instruments["heaters"]
        heaters.set_voltages(np.full(heaters.channels, 0.25))
        assert np.allclose(st.lab.chip.heater_v, 0.25)
        heaters.reconnect()  # a reconnect keeps the settings
        assert heaters.adapter.connection.baudrate == 57600
        assert np.allclose(heaters.voltages(), 0.25)


def test_visa_serial_resource_with_line_settings(tmp_path):
    """A VISA ASRL resource (pyvisa-py over pyserial's socket:// URL) reaches the simulated heater DAC."""
    cfg = load_config(_station(tmp_path, serial=dict(baud_rate=9600, parity="odd", stop_bits=1.5))).instruments["heaters"]
    lab = VirtualLab(seed=3)
    try:
        address = "ASRL" + lab.serve("heaters", "heater_dac", 4) + "::INSTR"
        opts = connection_options(cfg)
        adapter = open_adapter(address, **opts)
        res = adapter.connection
        assert (res.baud_rate, res.parity, res.stop_bits) == (9600, Parity.odd, StopBits.one_and_a_half)
        dac = HeaterDAC(adapter, name="heaters", channels=4, resistance_ohm=600.0)
        assert dac.identity.startswith("Q")
        dac.set_voltages([0.5, 1.0, 1.5, 2.0])
        assert np.allclose(dac.voltages(), [0.5, 1.0, 1.5, 2.0])
        dac.shutdown()
        adapter.close()
    finally:
        lab.close()


def test_unloadable_visa_library_is_one_clear_error():
    with pytest.raises(InstrumentError, match=r"cannot load the VISA library '/nonexistent/libvisa.so' "
                                              r"\(instruments.yaml visa_library\)"):
        open_adapter("TCPIP0::127.0.0.1::5025::SOCKET", visa_library="/nonexistent/libvisa.so")
