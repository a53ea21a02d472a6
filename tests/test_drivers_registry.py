"""One registration per instrument kind names its driver and its simulated counterpart (no second table in
the virtual lab); every simulated SCPI instrument shares one base (error queue, common queries)."""
from __future__ import annotations

import importlib

import pytest

from labsat.drivers import registry
from labsat.drivers.sim import scpi, servers


def test_every_simulated_counterpart_resolves_to_a_start_function():
    sims = registry.simulated_counterparts()
    assert set(sims) == set(registry.driver_kinds())  # every driver kind has a virtual instrument
    for kind, where in sims.items():
        module, _, function = where.partition(":")
        start = getattr(importlib.import_module(f"labsat.drivers.sim.{module}"), function)
        assert callable(start), kind
    assert not hasattr(servers, "SIM_INSTRUMENTS")  # the registry is the one table


def test_a_kind_registered_once_is_served_by_the_virtual_lab():
    """A new kind names an existing counterpart in its registration; the lab serves it with no other edit."""
    @registry.register_driver("test_daq_alias", simulated="servers:photodetector_daq")
    def _open(name, cfg, address):  # pragma: no cover - not opened here
        raise AssertionError

    lab = servers.VirtualLab(seed=0)
    try:
        address = lab.serve("pd", "test_daq_alias", 4)
        assert address.startswith("TCPIP0::127.0.0.1::") and address.endswith("::SOCKET")
        assert lab.instruments["pd"].channels == 4
        with pytest.raises(ValueError, match="no 'laser' instrument .*test_daq_alias"):
            lab.serve("x", "laser", 1)
    finally:
        lab.close()
        registry._DRIVERS.pop("test_daq_alias")


@pytest.mark.parametrize("kind", ["modulator_dac", "photodetector_daq", "spectrometer", "smu", "power_meter",
                                  "slm", "camera"])
def test_every_simulated_scpi_instrument_shares_the_base(kind):
    from labsat.drivers.sim.freespace import FreeSpaceScene
    from labsat.drivers.sim.shg import ShgScene

    lab = servers.VirtualLab(seed=1)
    scene = {"slm": FreeSpaceScene(), "camera": FreeSpaceScene(), "spectrometer": ShgScene()}.get(kind)
    if scene is not None and kind == "slm":
        scene.roles = {"s": "masks"}
    cfg = type("Cfg", (), dict(kind=kind, channels=4, width=scene.spec.grid * scene.spec.masks if kind == "slm"
                               else 0, height=scene.spec.grid if kind == "slm" else 0))()
    if kind == "camera":
        cfg.height, cfg.width = scene.spec.camera_shape
    try:
        lab.serve("s", kind, 4, scene=scene, cfg=cfg)
        inst = lab.instruments["s"]
        assert isinstance(inst, scpi.SimScpiInstrument)
        assert inst.handle("*IDN?", None)
        assert inst.handle("*OPC?", None) == "1"
        assert inst.handle("NO:SUCH:HEADER 1", None) is None
        assert inst.handle("SYST:ERR?", None) == '-113,"Undefined header"'
        assert inst.handle("SYST:ERR?", None) == '0,"No error"'
    finally:
        lab.close()


def test_number_queues_the_scpi_errors():
    inst = scpi.SimScpiInstrument()
    assert inst.number("2.5", 0, 10) == 2.5
    assert inst.number("MAX", 0, 10) == 10.0
    assert inst.number("abc", 0, 10) is None and inst.number("inf", 0, 10) is None
    assert inst.number("11", 0, 10) is None
    assert [inst.errors.pop() for _ in range(4)] == ['-104,"Data type error"', '-104,"Data type error"',
                                                     '-222,"Data out of range"', '0,"No error"']


def test_the_acquisition_buffer_records_one_armed_trigger_and_fetches_it_once():
    inst = scpi.SimScpiInstrument()
    inst.arm("x")  # not a count
    assert inst.triggered(3) is False  # not armed for 3: ignored, nothing recorded
    inst.arm("3")
    assert inst.triggered(2) is False and inst.armed == 3
    assert inst.triggered(3) is True and inst.armed == 0
    inst.data = "frames"
    assert inst.fetch() == "frames" and inst.fetch() is None  # once
    assert [inst.errors.pop() for _ in range(5)] == ['-104,"Data type error"', '-211,"Trigger ignored: armed for 0, got 3"',
                                                     '-211,"Trigger ignored: armed for 3, got 2"',
                                                     '-230,"Data stale: no acquisition"', '0,"No error"']
