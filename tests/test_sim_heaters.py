"""The two simulated heater DACs share one set of outputs (drivers/sim/heaters.py): the same full scale, the
same hand-off to the chip and the same watchdog, each refusing on its own wire (serial ``E01``/``E02``, SCPI
``-222``). Messages go straight to ``handle``, as the socket server hands them."""
from __future__ import annotations

import numpy as np
import pytest

from labsat.drivers.base import encode_block
from labsat.drivers.sim.block_dac import SimBlockDAC
from labsat.drivers.sim.chip import ChipSpec, VirtualChip
from labsat.drivers.sim.servers import SimHeaterDAC


def chip(resistance_ohm=600.0):
    return VirtualChip(ChipSpec(heater_resistance_ohm=resistance_ohm))


@pytest.mark.parametrize("volts, why", [(5.0, None), (7.0, None), (12.5, "voltage"), (-0.1, "voltage"),
                                        (float("nan"), "voltage"), (9.0, "current")])
def test_both_dacs_refuse_the_same_values_each_on_its_own_wire(volts, why):
    serial, block = SimHeaterDAC(chip(300.0), 8), SimBlockDAC(chip(300.0), 8)  # 300 ohm: 24 mA at 7.2 V
    assert serial.refusal(volts) == block.refusal(volts) == why
    code = {None: "OK", "voltage": "E01", "current": "E02"}[why]
    assert serial.handle(f"V2={volts}", None) == (code if why is None else f"{code}:2")
    assert serial.handle(f"VALL={volts}", None) == (code if why is None else f"{code}:0")
    block.handle(f"SOUR:VOLT:ALL {volts}", None)
    assert block.handle("SYST:ERR?", None) == ('0,"No error"' if why is None else '-222,"Data out of range"')
    expected = np.full(8, 0.0 if why else volts)
    np.testing.assert_allclose(serial.volts, expected)
    np.testing.assert_allclose(block.volts, expected)


@pytest.mark.parametrize("make", [lambda c: SimHeaterDAC(c, 64), lambda c: SimBlockDAC(c, 64)])
def test_outputs_reach_the_chip_and_the_watchdog_zeroes_them(make):
    c = chip()
    dac = make(c)
    volts = np.linspace(0.5, 6.0, 64)
    if isinstance(dac, SimHeaterDAC):
        for k, v in enumerate(volts):
            assert dac.handle(f"V{k}={v:.4f}", None) == "OK"
    else:
        dac.handle("SOUR:VOLT:BLOC", encode_block(volts))
    np.testing.assert_allclose(c.heater_v, volts[:c.n_heaters], atol=1e-4)  # extra channels unconnected
    dac.client_gone()
    assert dac.watchdog_trips == 1 and not np.any(c.heater_v) and not np.any(dac.volts)
    dac.client_gone()  # nothing powered: no trip
    assert dac.watchdog_trips == 1
