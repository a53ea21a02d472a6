"""WaveShaper-style pulse shaper over HTTP, against the loopback simulated device."""
from __future__ import annotations

import numpy as np
import pytest

from labsat.drivers.base import InstrumentError, LimitError
from labsat.drivers.pulse_shaper import PulseShaper
from labsat.drivers.sim.waveshaper import WaveShaperServer


@pytest.fixture
def shaper():
    # a narrow device (201 bins) keeps every upload small
    server = WaveShaperServer(start_thz=193.000, stop_thz=193.200, portcount=2, hang_s=0.4)
    drv = PulseShaper(server.url, name="ws", timeout_s=0.25)
    yield server, drv
    server.stop()


def test_devinfo_and_grid(shaper):
    server, ws = shaper
    assert ws.identity.startswith("WS-04000A-C SN-SIM0001")
    f = ws.frequencies()
    assert len(f) == 201 and f[0] == 193.0 and f[-1] == 193.2 and ws.portcount == 2


def test_whole_mask_in_one_upload_and_read_back(shaper):
    server, ws = shaper
    f = ws.frequencies()
    amp = np.linspace(0.05, 1.0, len(f))
    phase = np.linspace(-7.0, 7.0, len(f))
    before = server.device.uploads
    ws.set_mask(amp, phase, port=2)
    assert server.device.uploads == before + 1
    dev = server.device
    np.testing.assert_allclose(dev.attn_db, -20 * np.log10(amp), atol=1e-3)
    np.testing.assert_allclose(np.exp(1j * dev.phase_rad), np.exp(1j * phase), atol=1e-3)
    assert np.all(dev.port == 2)
    np.testing.assert_allclose(np.abs(dev.transfer(2)), amp, rtol=1e-3)
    rf, ra, rp, rq = ws.profile()
    np.testing.assert_allclose(rf, f)
    np.testing.assert_allclose(ra, -20 * np.log10(amp), atol=1e-3)


def test_bins_not_given_are_blocked(shaper):
    server, ws = shaper
    f = ws.frequencies()[50:60]
    ws.load_profile(f, np.full(10, 3.0), np.zeros(10), port=1)
    assert np.all(server.device.port[50:60] == 1) and np.count_nonzero(server.device.port) == 10


@pytest.mark.parametrize("change, message", [
    (dict(attn=41.0), "outside \\[0, 40\\] dB"),
    (dict(attn=-0.5), "outside \\[0, 40\\] dB"),
    (dict(freq=193.5), "outside the device"),
    (dict(freq=193.0005), "not on the 0.001 THz grid"),
    (dict(freq=193.001), "listed twice"),
    (dict(port=3), "port must be"),
    (dict(phase=float("nan")), "not a finite number"),
])
def test_limits_refused_before_anything_is_sent(shaper, change, message):
    server, ws = shaper
    f = ws.frequencies()[:3].copy()
    a, p = np.zeros(3), np.zeros(3)
    if "attn" in change:
        a[1] = change["attn"]
    if "freq" in change:
        f[2] = change["freq"]
    if "phase" in change:
        p[0] = change["phase"]
    before = server.device.uploads
    with pytest.raises(LimitError, match=message):
        ws.load_profile(f, a, p, port=change.get("port", 1))
    assert server.device.uploads == before


def test_amplitude_outside_the_attenuation_range_is_refused(shaper):
    server, ws = shaper
    n = len(ws.frequencies())
    with pytest.raises(LimitError, match="amplitude"):
        ws.set_mask(np.full(n, 1.2), np.zeros(n))
    with pytest.raises(LimitError, match="amplitude"):
        ws.set_mask(np.full(n, 1e-3), np.zeros(n))  # 60 dB
    with pytest.raises(LimitError, match="0..20 dB"):
        PulseShaper(server.url, attn_max_db=20).set_mask(np.full(n, 0.05), np.zeros(n))  # 26 dB > 20


def test_device_refusal_raises_and_blocks(shaper):
    server, ws = shaper
    ws.transmit(1)
    assert np.all(server.device.port == 1)
    server.faults.add("refuse", match="/waveshaper/loadprofile")
    f = ws.frequencies()
    with pytest.raises(InstrumentError, match="rc -31"):
        ws.load_profile(f, np.zeros(len(f)), np.zeros(len(f)))
    assert np.all(server.device.port == 0)  # safe state: nothing passes


def test_transmit_safe_state(shaper):
    server, _ = shaper
    ws = PulseShaper(server.url, safe_state="transmit", safe_port=2)
    ws.shutdown()
    assert np.all(server.device.port == 2) and np.all(server.device.attn_db == 0)
    PulseShaper(server.url).shutdown()
    assert np.all(server.device.port == 0)


def test_timeouts_drops_and_garbage_are_retried(shaper):
    server, ws = shaper
    f = ws.frequencies()
    server.faults.add("garbled", match="/waveshaper/devinfo")
    assert ws.devinfo(refresh=True)["portcount"] == 2
    server.faults.add("drop", match="/waveshaper/loadprofile")
    server.faults.add("timeout", match="/waveshaper/getprofile")
    ws.load_profile(f, np.full(len(f), 1.0), np.zeros(len(f)), port=1)
    assert np.all(server.device.port == 1)
    assert [k for k, _ in server.faults.log] == ["garbled", "drop", "timeout"]


def test_persistent_timeout_gives_up_with_clear_error(shaper):
    server, ws = shaper
    ws.devinfo()
    server.hang_s = 0.3
    server.faults.add("timeout", match="/waveshaper/getprofile", count=0)
    with pytest.raises(InstrumentError, match="timeout.*gave up after 3 attempts"):
        ws.profile()


def test_bad_address_is_refused():
    with pytest.raises(ValueError, match="http"):
        PulseShaper("TCPIP0::1.2.3.4::INSTR")
