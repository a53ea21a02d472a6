"""SIGTERM is held like Ctrl-C while a transfer is in flight, then delivered to the station's handler."""
from __future__ import annotations

import os
import signal

import numpy as np
import pytest

from labsat.drivers.base import deferred_sigint


def test_sigterm_is_held_until_the_transfer_ends_then_delivered():
    calls = []

    def handler(signum, frame):
        calls.append(signum)
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        reached_end = False
        with pytest.raises(SystemExit) as info:
            with deferred_sigint():
                os.kill(os.getpid(), signal.SIGTERM)
                for _ in range(1000):  # give the interpreter every chance to run a handler
                    pass
                assert calls == []  # held
                reached_end = True
        assert reached_end and calls == [signal.SIGTERM]
        assert info.value.code == 128 + signal.SIGTERM
        assert signal.getsignal(signal.SIGTERM) is handler  # the station's handler is back
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_sigterm_mid_transfer_through_a_station_finishes_the_message_then_goes_safe(small_station_yaml):
    """A SIGTERM arriving while the heater DAC is being written: the whole vector is set (no message cut
    in half), then the station's orderly exit puts every heater at 0 V."""
    from labsat.station import Station

    with pytest.raises(SystemExit):
        with Station(small_station_yaml) as st:
            heaters = st.instruments["heaters"]
            chip = st.lab.chip
            original = type(heaters).write_bytes
            sent = {"n": 0}

            def write_bytes(self, content, **kw):
                if sent["n"] == 0:
                    os.kill(os.getpid(), signal.SIGTERM)  # arrives as the set-voltage block starts
                sent["n"] += 1
                return original(self, content, **kw)

            type(heaters).write_bytes = write_bytes
            try:
                target = np.full(12, 1.5)
                heaters.set_voltages(target, channels=np.arange(12))
                raise AssertionError("the SIGTERM was not delivered after the transfer")
            except SystemExit:
                seen = chip.heater_v[:12].copy()
                raise
            finally:
                type(heaters).write_bytes = original
    assert sent["n"] == 1  # nothing was sent after the signal was delivered
    # the block in flight (the first ramp step, every channel) arrived whole before the exit
    assert seen[0] > 0 and np.allclose(seen, seen[0]), seen
    assert np.all(st.lab.chip.heater_v == 0.0)  # then the orderly exit zeroed every heater
