"""Paper-scale transfers (issue 12, round 5): the batch in chunks of the instruments' declared memory depth,
big float32 blocks straight between numpy memory and pyvisa-py's socket, glibc's malloc keeping freed
pages. The protocol on the wire is unchanged (the transcript tests in test_drivers_protocol.py and
test_block_dac.py run the fallback path and still see the same bytes)."""
from __future__ import annotations

import inspect
import socket
import subprocess
import sys

import numpy as np
import pytest
import yaml
from pymeasure.test import expected_protocol

from labsat.config import MEMORY_DEPTH_DEFAULT, parse_config
from labsat.drivers import base
from labsat.drivers.base import InstrumentError, LimitError, encode_block, open_adapter
from labsat.drivers.block_dac import BlockHeaterDAC
from labsat.drivers.daq import PhotodetectorDAQ
from labsat.drivers.modulator import ModulatorDAC
from labsat.drivers.sim.servers import VirtualLab
from labsat.drivers.transport import ConnectionLost, InstrumentTimeout, TransportMixin
from labsat.station import Station

ROOT = __import__("pathlib").Path(__file__).resolve().parents[1]


# --- memory depth ---
def test_the_station_file_and_the_drivers_default_to_one_memory_depth():
    """An entry without max_points means the depth a driver opened without one assumes."""
    assert MEMORY_DEPTH_DEFAULT == base.MEMORY_DEPTH
    for driver in (ModulatorDAC, PhotodetectorDAQ):
        assert inspect.signature(driver.__init__).parameters["max_points"].default == base.MEMORY_DEPTH


def test_modulator_refuses_a_sequence_beyond_its_memory_with_nothing_sent():
    with expected_protocol(ModulatorDAC, [], channels=2, v_max=2.0, max_points=4) as mod:
        with pytest.raises(LimitError, match="5 points exceeds the memory depth \\(4 points"):
            mod.load_sequence(np.full((5, 2), 0.5))


def test_daq_refuses_to_arm_beyond_its_memory_with_nothing_sent():
    with expected_protocol(PhotodetectorDAQ, [], channels=2, max_points=4) as daq:
        with pytest.raises(LimitError, match="5 points to acquire; the memory holds 1..4"):
            daq.arm(5)


def test_the_virtual_instruments_hold_only_their_depth():
    """A driver told more than the instrument holds: the instrument refuses (-223 / -222), the driver
    reports it as one error naming the instrument."""
    lab = VirtualLab(seed=1)
    cfg = lambda kind: type("Cfg", (), dict(kind=kind, channels=2, max_points=3))()  # noqa: E731
    mod = ModulatorDAC(open_adapter(lab.serve("mod", "modulator_dac", cfg=cfg("modulator_dac"))), name="mod",
                       channels=2, v_max=2.0, max_points=100)
    daq = PhotodetectorDAQ(open_adapter(lab.serve("daq", "photodetector_daq", cfg=cfg("photodetector_daq"))),
                           name="daq", channels=2, max_points=100)
    try:
        mod.load_sequence(np.full((3, 2), 0.5))  # fits
        with pytest.raises(InstrumentError, match="mod reported.*-223.*Too much data"):
            mod.load_sequence(np.full((4, 2), 0.5))
        with pytest.raises(InstrumentError, match="daq: did not confirm|daq reported.*-222"):
            daq.arm(4)
            daq.check_scpi_errors()
    finally:
        mod.adapter.close()
        daq.adapter.close()
        lab.close()


def small_paper_station(tmp_path, depth: int, modes: int = 4):
    data = yaml.safe_load((ROOT / "stations" / "paper-mzi.yaml").read_text())
    h = modes * (modes - 1)
    data["instruments"]["heaters"]["channels"] = h
    for name in ("modulator", "detectors"):
        data["instruments"][name].update(channels=modes, max_points=depth)
    data["layers"]["mesh"].update(modes=modes, heaters={"instrument": "heaters", "channels": f"0-{h - 1}"},
                                  inputs={"instrument": "modulator", "channels": f"0-{modes - 1}"},
                                  outputs={"instrument": "detectors", "channels": f"0-{modes - 1}"})
    data["station"]["sim"]["timing"]["realtime"] = False
    data["station"]["runs_dir"] = str(tmp_path)
    data["station"]["calibration_dir"] = str(tmp_path / "cal")
    return parse_config(data, "paper-mzi.yaml at 4 modes")


@pytest.mark.parametrize("depth, chunks", [(3, 3), (7, 1), (65536, 1)])
def test_the_batch_goes_in_chunks_of_the_declared_memory_depth(tmp_path, depth, chunks):
    rng = np.random.default_rng(0)
    x, u = rng.uniform(0.1, 1.0, (7, 4)), rng.uniform(0.2, 0.8, 12)
    with Station(small_paper_station(tmp_path, depth)) as st:
        mesh = st.mesh()
        assert mesh.max_batch == min(depth, 65536)
        y = mesh.forward(x, u)
        assert mesh.batches == chunks and mesh.samples == 7
        assert y.shape == (7, 4) and np.all(np.isfinite(y))
        st.mesh().forward(x, u)  # a second adapter, same controls: the same chip state
        ref = st.mesh()
        ref.max_batch = 1        # one input per sequence
        y1 = ref.forward(x, u)
        assert ref.batches == 7
        np.testing.assert_allclose(y, y1, atol=0.02 * np.abs(y).max())  # detector noise only


# --- big blocks straight to / from the socket ---
@pytest.fixture
def lab_dac(monkeypatch):
    monkeypatch.setattr(base, "RAW_SOCKET_MIN_BYTES", 1)  # every block on the socket path
    lab = VirtualLab(seed=3)
    dac = BlockHeaterDAC(open_adapter(lab.serve("heaters", "block_dac", 4096), timeout_s=2), channels=4096,
                         v_max=6.0, max_step_v=6.0)
    yield lab, dac
    dac.adapter.close()
    lab.close()


def test_blocks_go_straight_through_pyvisa_py_socket_and_round_trip(lab_dac):
    lab, dac = lab_dac
    volts = np.random.default_rng(1).uniform(0, 5, 4096)
    dac.set_voltages(volts)
    assert dac._visa_socket() is not None  # the socket path, not pyvisa's loops
    np.testing.assert_allclose(dac.voltages(), volts.astype(np.float32), rtol=0, atol=0)
    np.testing.assert_allclose(lab.instruments["heaters"].volts, volts, atol=1e-6)
    assert dac.identity.startswith("labsat,SIM-BDAC4096")  # ordinary messages still go through pyvisa


def test_the_socket_path_and_pyvisas_agree_bit_for_bit(lab_dac, monkeypatch):
    lab, dac = lab_dac
    volts = np.random.default_rng(2).uniform(0, 5, 4096)
    dac.set_voltages(volts)
    fast = dac.voltages()
    monkeypatch.setattr(base, "RAW_SOCKET_MIN_BYTES", 1 << 62)
    slow = dac.voltages()
    assert fast.dtype == slow.dtype == np.float64
    np.testing.assert_array_equal(fast, slow)
    np.testing.assert_array_equal(fast, base.decode_block(encode_block(volts)))


class _Wire(TransportMixin):
    """A TransportMixin instrument over one end of a socket pair (the session pyvisa-py would hold)."""

    name = "wire"

    def __init__(self, sock, pending: bytes = b"", timeout: float = 0.3):
        super().__init__()
        self.session = type("Session", (), {})()
        self.session.interface, self.session._pending_buffer, self.session.timeout = sock, bytearray(pending), timeout
        self._labsat_socket = (None, self.session)  # what _visa_socket() found under a pyvisa-py adapter


@pytest.fixture
def pair():
    """A connected pair of sockets: the instrument's end (``a``) and the test's (``b``), closed afterwards."""
    a, b = socket.socketpair()
    yield a, b
    a.close()
    b.close()


def test_a_body_read_takes_pyvisas_buffered_bytes_first(pair):
    a, b = pair
    wire = _Wire(a, pending=b"#14ab")
    b.sendall(b"cdef")
    assert bytes(wire.recv_raw(3)) == b"#14"
    assert bytes(wire.recv_raw(6)) == b"abcdef"
    assert not wire.session._pending_buffer


def test_a_body_is_sent_whole_in_three_parts_without_joining(pair):
    a, b = pair
    wire = _Wire(a)
    body = np.arange(5000, dtype="<f4")
    assert wire.send_raw(b"X #520000", memoryview(body).cast("B"), b"\n")
    got = bytearray()
    while len(got) < 9 + 20000 + 1:
        got += b.recv(1 << 16)
    assert bytes(got) == b"X " + encode_block(body) + b"\n"
    wire._labsat_socket = (None, None)  # no pyvisa-py socket (serial, a test adapter): the callers fall back
    assert wire.send_raw(b"X ", b"ab", b"\n") is False and wire.recv_raw(2) is None
    b.setblocking(False)
    with pytest.raises(BlockingIOError):
        b.recv(1)  # nothing was sent


def test_a_short_body_is_a_timeout_and_a_closed_peer_a_lost_connection(pair):
    a, b = pair
    wire = _Wire(a)
    b.sendall(b"abc")
    with pytest.raises(InstrumentTimeout, match="wire: short read \\(3 of 8 bytes\\)"):
        wire.recv_raw(8)
    b.close()
    with pytest.raises(ConnectionLost, match="wire: connection lost"):
        wire.recv_raw(8)


# --- glibc keeps freed pages ---
FAULTS = """
import resource, sys
import numpy as np
from labsat.hardware import memory
if sys.argv[1] == "reuse":
    assert memory.reuse_freed_memory()
x = np.random.default_rng(0).uniform(size=(6000, 64))


def step():  # a step's arrays: several 3 MB ones alive at once, all freed at its end (as in a forward)
    held = [np.arcsin(x) for _ in range(4)]
    return sum(float(h[0, 0]) for h in held)


for _ in range(3):
    step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    step()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_freed_multi_megabyte_arrays_are_reused_not_faulted_in_again():
    faults = {how: int(subprocess.run([sys.executable, "-c", FAULTS, how], capture_output=True, text=True,
                                      check=True).stdout.strip()) for how in ("default", "reuse")}
    # glibc's own thresholds: the heap top (12 MB free > twice the 3 MB mmap threshold) is trimmed after
    # each step and faulted in again by the next (750 pages per 3 MB array)
    assert faults["default"] > 10 * 1000, faults
    assert faults["reuse"] < 100, faults
