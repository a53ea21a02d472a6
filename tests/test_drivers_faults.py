"""Faults on demand in the virtual lab (from instruments.yaml and from a test): drivers retry where safe,
raise a clear InstrumentError naming the instrument otherwise, and no fault leaves an output on."""
from __future__ import annotations

import numpy as np
import pytest

from labsat.config import ConfigError, parse_config
from labsat.drivers.base import InstrumentError
from labsat.drivers.sim import faults as sim_faults
from labsat.drivers.sim.faults import FaultInjector, TimingModel
from labsat.drivers.transport import InstrumentTimeout
from labsat.station import Station


def station_with(config_dict, faults=(), timing=None, extra=None, timeout_s=0.3) -> Station:
    cfg = config_dict
    for inst in cfg["instruments"].values():
        inst["timeout_s"] = timeout_s
    cfg["station"]["sim"]["faults"] = list(faults)
    if timing:
        cfg["station"]["sim"]["timing"] = timing
    cfg["instruments"].update(extra or {})
    return Station(parse_config(cfg))


def assert_all_safe(station: Station) -> None:
    chip = station.lab.chip
    assert np.all(chip.heater_v == 0.0), "a heater was left powered"
    mod = station.lab.instruments["modulator"]
    assert not mod.output_on and np.all(mod.levels == 0.0)


# --- the injector itself ---
def test_injector_after_count_and_match():
    inj = FaultInjector()
    inj.add("timeout", match="vall?", after=1, count=2)
    fired = [inj.pick(c) for c in ["V0=1", "VALL?", "VALL?", "VALL?", "VALL?"]]
    assert [f.kind if f else None for f in fired] == [None, None, "timeout", "timeout", None]
    with pytest.raises(ValueError, match="fault kind"):
        inj.add("explode")


# --- from instruments.yaml ---
def test_yaml_faults_are_validated(config_dict):
    config_dict["station"]["sim"]["faults"] = [{"instrument": "nosuch", "kind": "timeout"}]
    with pytest.raises(ConfigError, match=r"station.sim.faults.0.instrument: no instrument named 'nosuch'"):
        parse_config(config_dict)
    config_dict["station"]["sim"]["faults"] = [{"instrument": "heaters", "kind": "melt"}]
    with pytest.raises(ConfigError, match=r"station.sim.faults.0.kind"):
        parse_config(config_dict)


def test_heater_readback_timeout_is_retried(config_dict):
    """Serial heater DAC: a swallowed VALL? read-back is retried on a fresh connection (opened before
    the old one closes, so the instrument's connection watchdog does not trip)."""
    with station_with(config_dict) as st:
        dac = st.instruments["heaters"]
        dac.set_voltages([1.0, 2.0], channels=[0, 1])
        front = st.lab.servers["heaters"].instrument
        front.faults.add("timeout", match="VALL?", count=2)
        dac.set_voltages([0.5, 0.5], channels=[0, 1])
        np.testing.assert_allclose(st.lab.chip.heater_v[:2], [0.5, 0.5])
        assert [k for k, _ in front.faults.log] == ["timeout", "timeout"]
        assert getattr(st.lab.instruments["heaters"], "watchdog_trips", 0) == 0
    assert_all_safe(st)


def test_heater_dropped_connection_is_refused_after_reconnect(config_dict):
    """A dropped serial link: the instrument's watchdog zeroes the heaters; the driver reconnects,
    reads 0 V where it set 1 V, and refuses to go on instead of ramping from a wrong start."""
    with station_with(config_dict) as st:
        dac = st.instruments["heaters"]
        dac.set_voltages([1.0, 1.0], channels=[0, 1])
        st.lab.servers["heaters"].instrument.faults.add("drop", match="VALL?")
        with pytest.raises(InstrumentError, match="reads 0 V but was set to 1 V"):
            dac.set_voltages([0.5, 0.5], channels=[0, 1])
    assert_all_safe(st)


def test_daq_timeout_is_an_instrument_error_naming_it_and_everything_goes_safe(config_dict):
    """A swallowed fetch (not safe to repeat: the data are consumed) raises; the station goes safe."""
    faults = [{"instrument": "detectors", "kind": "timeout", "match": "FETC", "count": 0}]
    st = station_with(config_dict, faults)
    with pytest.raises(InstrumentTimeout, match="detectors: .*timeout"):
        with st:
            mesh = st.mesh()
            mesh.forward(np.full((3, 4), 0.5), np.full(mesh.n_controls, 0.4))
    assert np.any(mesh.control_voltages(np.full(mesh.n_controls, 0.4)) > 0)
    assert_all_safe(st)


def test_garbled_set_reply_raises_and_heaters_end_at_zero(config_dict):
    faults = [{"instrument": "heaters", "kind": "garbled", "match": "V3=", "count": 1}]
    st = station_with(config_dict, faults)
    with pytest.raises(InstrumentError, match="heaters: garbled reply"):
        with st:
            st.instruments["heaters"].set_voltages(np.full(12, 1.5), channels=np.arange(12))
    assert_all_safe(st)


def test_overlimit_refusal_by_the_instrument(config_dict):
    faults = [{"instrument": "heaters", "kind": "refuse", "match": "V2=", "count": 1}]
    st = station_with(config_dict, faults)
    with pytest.raises(InstrumentError, match="error 1 \\(over-voltage\\) on channel 2"):
        with st:
            st.instruments["heaters"].set_voltages(np.full(4, 2.0), channels=np.arange(4))
    assert_all_safe(st)


def test_error_queue_entry_on_the_modulator(config_dict):
    faults = [{"instrument": "modulator", "kind": "error", "match": "SOUR:VOLT:ALL ", "count": 1}]
    st = station_with(config_dict, faults)
    with pytest.raises(InstrumentError, match="-300: Device-specific error"):
        with st:
            st.instruments["modulator"].set_levels(np.full(4, 1.0))
    assert_all_safe(st)


def test_smu_and_meter_and_shaper_in_a_station_go_safe(config_dict):
    """The new kinds in instruments.yaml: SMU wired to heater 11, a meter on port 2, a shaper."""
    extra = {
        "bias": {"kind": "smu", "limits": {"v_max": 5.0, "i_max_ma": 10, "resistance_ohm": 600},
                 "sim_heater": 11},
        "meter": {"kind": "power_meter", "averages": 4, "sim_port": 2},
        "shaper": {"kind": "pulse_shaper"},
    }
    faults = [{"instrument": "bias", "kind": "garbled", "match": ":SOUR:VOLT?", "count": 1},
              {"instrument": "meter", "kind": "timeout", "match": "MEAS:POW?", "count": 1}]
    st = station_with(config_dict, faults, extra=extra)
    with pytest.raises(RuntimeError, match="training blew up"):
        with st:
            smu, meter, shaper = st.instruments["bias"], st.instruments["meter"], st.instruments["shaper"]
            assert "2400" in st.identities()["bias"] and "PM100" in st.identities()["meter"]
            smu.output(True)
            smu.set_voltage(3.0)  # first read-back garbled: retried
            assert st.lab.chip.heater_v[11] == pytest.approx(3.0)
            st.instruments["modulator"].set_levels(np.full(4, 2.0))
            assert meter.power() > 0  # first measurement swallowed: retried after reconnect
            shaper.transmit(1)
            assert np.all(st.lab.instruments["shaper"].port == 1)
            raise RuntimeError("training blew up")
    assert_all_safe(st)
    assert not st.lab.instruments["bias"].output_on
    assert np.all(st.lab.instruments["shaper"].port == 0)


def test_timing_model_accounts_instrument_time(config_dict):
    """Latency per answered message, serial bytes at the baud rate, settling and integration on the chip."""
    timing = {"query_latency_s": 1e-3, "serial_baud": 115200, "settling_s": 2e-3, "sample_s": 1e-4}
    with station_with(config_dict, timing=timing) as st:
        clock = st.lab.clock
        mesh = st.mesh()
        clock.reset()
        t0 = st.lab.chip.virtual_time_s
        mesh.forward(np.full((10, 4), 0.5), np.full(mesh.n_controls, 0.3))
        spent = clock.modelled_s
        # at least: one settling, 10 samples, a few answered queries, >= 12 serial commands of 11 bytes
        assert spent > 2e-3 + 10 * 1e-4 + 3 * 1e-3 + 12 * 11 * 10 / 115200
        assert st.lab.chip.virtual_time_s - t0 == pytest.approx(spent, rel=1e-6)
        assert set(clock.per_instrument) == {"heaters", "modulator", "detectors"}
        assert clock.per_instrument["heaters"] > 12 * 11 * 10 / 115200


def test_front_can_be_armed_from_a_test(lab):
    """A bare lab: install a front on one instrument and arm a fault directly."""
    from labsat.drivers.base import open_adapter
    from labsat.drivers.daq import PhotodetectorDAQ

    address = lab.serve("pd", "photodetector_daq", 4)
    front = sim_faults.install(lab, "pd", timing=TimingModel())
    front.faults.add("garbled", match="*IDN?", count=0)
    daq = PhotodetectorDAQ(open_adapter(address, timeout_s=0.3), name="pd", channels=4)
    assert daq.identity == sim_faults.GARBAGE
    front.faults.clear()
    assert daq.identity.startswith("labsat")
    daq.adapter.close()


def test_lab_in_a_child_process_serves_a_station(config_dict):
    """LabProcess: the same instruments from a spawned process; the station opens them as a real bench
    (backend real, explicit addresses) and leaves the heaters at 0 V."""
    from labsat.lab_process import LabProcess

    config_dict["station"]["sim"]["timing"] = {"query_latency_s": 1e-4}
    with LabProcess(parse_config(config_dict)) as lab:
        assert lab.config.station.backend == "real"
        assert lab.addresses["heaters"].startswith("socket://")
        with Station(lab.config) as st:
            st.instruments["heaters"].set_voltages([1.0, 2.0], channels=[0, 1])
            assert lab.heaters()[:2] == [1.0, 2.0]
            assert lab.clock()["modelled_s"] > 0
        assert not any(lab.heaters())


def test_serial_line_reads_keep_what_arrived_after_the_first_line():
    """The buffered serial read: several replies in one TCP segment come back one line per read; a
    read with nothing arriving is an InstrumentTimeout naming the instrument and the command."""
    import socket
    import threading

    from pymeasure.instruments import Instrument

    from labsat.drivers.base import open_adapter
    from labsat.drivers.transport import TransportMixin

    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)

    def serve():
        conn, _ = srv.accept()
        conn.recv(100)
        conn.sendall(b"OK\nE01:3\n12.5")  # two lines and a half
        conn.recv(100)
        conn.sendall(b"00\n")
        conn.recv(100)  # then silence until the test is done
        done.wait(5)
        conn.close()

    done = threading.Event()
    threading.Thread(target=serve, daemon=True).start()

    class Line(TransportMixin, Instrument):
        pass

    inst = Line(open_adapter(f"socket://127.0.0.1:{srv.getsockname()[1]}", timeout_s=0.3), "bench",
                includeSCPI=False)
    inst.write("A")
    assert inst.read() == "OK"
    assert inst.read() == "E01:3"
    inst.write("B")
    assert inst.read() == "12.500"
    inst.write("C")
    with pytest.raises(InstrumentTimeout, match="bench: no reply \\(timeout\\) to 'C'"):
        inst.read()
    done.set()
    inst.adapter.close()
    srv.close()
