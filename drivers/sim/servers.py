"""Simulated instruments: the virtual chip's bench, served over real protocols on loopback.

Each simulated instrument is a TCP server on 127.0.0.1 speaking exactly what the real instrument
speaks: the heater DAC its serial ASCII protocol (reached through pyserial's ``socket://`` URL, the way
a serial-to-LAN bridge is), the modulator and the DAQ SCPI over a raw socket (reached through
pyvisa-py's ``TCPIP0::127.0.0.1::<port>::SOCKET``). All of them act on one :class:`VirtualChip`.
"""
from __future__ import annotations

import logging
import re
import socket
import socketserver
import threading

import numpy as np

from ..base import encode_block
from .chip import ChipSpec, VirtualChip
from .scpi import UNDEFINED, SimScpiInstrument

log = logging.getLogger(__name__)


_clients_lock = threading.Lock()


def split_message(buf: bytearray):
    """Take one complete message off ``buf``: ``(command, block_or_None)``, or ``None`` if incomplete.

    A message is a line, or a command followed by an IEEE 488.2 definite-length block and ``\\n``.
    """
    nl = buf.find(b"\n")
    h = buf.find(b"#")
    if h != -1 and (nl == -1 or h < nl):
        if len(buf) < h + 2:
            return None
        ndig = buf[h + 1] - 48
        if not 1 <= ndig <= 9:
            raise ValueError("bad block header")
        if len(buf) < h + 2 + ndig:
            return None
        length = int(buf[h + 2:h + 2 + ndig])
        end = h + 2 + ndig + length
        if len(buf) < end + 1:
            return None
        command, block = bytes(buf[:h]).decode(errors="replace").strip(), bytes(buf[h:end])
        del buf[:end + 1]
        return command, block
    if nl == -1:
        return None
    line = bytes(buf[:nl]).decode(errors="replace").strip()
    del buf[:nl + 1]
    return line, None


class _Handler(socketserver.BaseRequestHandler):
    def setup(self):
        with _clients_lock:
            self.server.clients = getattr(self.server, "clients", 0) + 1

    def finish(self):  # runs however handle() ended: client closed, killed, dropped, server stopped
        with _clients_lock:
            self.server.clients -= 1
            last = self.server.clients == 0
        gone = getattr(self.server.instrument, "client_gone", None)
        if last and gone is not None:
            gone()

    def handle(self):
        server: InstrumentServer = self.server  # type: ignore[assignment]
        sock: socket.socket = self.request
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        buf = bytearray()
        while not server.stopping:
            try:
                data = sock.recv(1 << 16)
            except OSError:
                return
            if not data:
                return
            buf += data
            out = bytearray()
            while True:
                try:
                    msg = split_message(buf)
                except ValueError:
                    buf.clear()
                    break
                if msg is None:
                    break
                if not msg[0] and msg[1] is None:
                    continue
                reply = server.instrument.handle(*msg)
                if reply is None:
                    continue
                out += (reply.encode() if isinstance(reply, str) else reply) + b"\n"
            if out:
                sock.sendall(out)


class InstrumentServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, instrument, port: int = 0):
        self.instrument = instrument
        self.stopping = False
        super().__init__(("127.0.0.1", port), _Handler)
        self.thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05},
                                       name=f"sim-{type(instrument).__name__}", daemon=True)
        self.thread.start()

    @property
    def port(self) -> int:
        return self.server_address[1]

    def stop(self) -> None:
        self.stopping = True
        self.shutdown()
        self.server_close()


# --- the simulated instruments ---
class SimHeaterDAC:
    """Qontrol-style heater DAC; channel k drives chip heater k (extra channels are unconnected)."""

    FULL_SCALE_V, FULL_SCALE_MA = 12.0, 24.0
    _SET = re.compile(r"^V(\d+)=(\S+)$")
    _GET = re.compile(r"^([VI])(\d+)\?$")

    def __init__(self, chip: VirtualChip, channels: int, serial: str = "Q64iv-SIM"):
        self.chip, self.channels, self.serial = chip, channels, serial
        self.volts = np.zeros(channels)
        self.resistance = chip.heater_resistance_ohm
        self._lock = threading.Lock()

    def _apply(self) -> None:
        n = min(self.channels, self.chip.n_heaters)
        v = np.zeros(self.chip.n_heaters)
        v[:n] = self.volts[:n]
        self.chip.set_heaters(v)

    def handle(self, line: str, block: bytes | None):
        with self._lock:
            if line == "id?":
                return self.serial
            if line == "nchan?":
                return str(self.channels)
            if line == "VALL?":
                return ",".join(f"{v:.4f}" for v in self.volts)
            if line.startswith("VALL="):
                try:
                    value = float(line[5:])
                except ValueError:
                    return "E11:0"
                if not 0 <= value <= self.FULL_SCALE_V:
                    return "E01:0"
                self.volts[:] = value
                self._apply()
                return "OK"
            m = self._SET.match(line)
            if m:
                ch = int(m.group(1))
                if ch >= self.channels:
                    return f"E12:{ch}"
                try:
                    value = float(m.group(2))
                except ValueError:
                    return f"E11:{ch}"
                if not (np.isfinite(value) and 0 <= value <= self.FULL_SCALE_V):
                    return f"E01:{ch}"
                if 1e3 * value / self.resistance > self.FULL_SCALE_MA:
                    return f"E02:{ch}"
                self.volts[ch] = round(value, 4)
                self._apply()
                return "OK"
            m = self._GET.match(line)
            if m:
                ch = int(m.group(2))
                if ch >= self.channels:
                    return f"E12:{ch}"
                if m.group(1) == "V":
                    return f"{self.volts[ch]:.4f}"
                return f"{1e3 * self.volts[ch] / self.resistance:.4f}"
            return "E10:0"

    def client_gone(self) -> None:
        """Watchdog: the last client disconnected (killed, cable pulled) with heaters still powered,
        i.e. without its safe shutdown: zero every output, as a connection watchdog would."""
        with self._lock:
            if np.any(self.volts):
                log.warning("sim heater DAC %s: client gone with heaters on; watchdog zeroes them", self.serial)
                self.volts[:] = 0.0
                self._apply()
                self.watchdog_trips = getattr(self, "watchdog_trips", 0) + 1


class SimModulatorDAC(SimScpiInstrument):
    def __init__(self, chip: VirtualChip, channels: int, bus: "TriggerBus"):
        super().__init__()
        self.chip, self.channels, self.bus = chip, channels, bus
        self.levels = np.zeros(channels)
        self.sequence = np.zeros((0, channels))
        self.output_on = False

    def _mesh_inputs(self, v: np.ndarray) -> np.ndarray:
        out = np.zeros((len(v), self.chip.n_inputs))
        n = min(self.channels, self.chip.n_inputs)
        out[:, :n] = v[:, :n] if self.output_on else 0.0
        return out

    def identity(self) -> str:
        return "labsat,SIM-MOD8,0001,1.0"

    def answer(self, head: str, arg: str, block: bytes | None):
        if head == "*RST":
            self.levels[:] = 0
            self.output_on = False
            self.chip.set_modulators(self._mesh_inputs(self.levels[None])[0])
            return None
        if head == "SOUR:VOLT:ALL?":
            return ",".join(f"{v:.5f}" for v in self.levels)
        if head == "SOUR:VOLT:ALL":
            try:
                v = np.array([float(x) for x in arg.split(",")])
            except ValueError:
                self.errors.push(-104, "Data type error")
                return None
            if len(v) != self.channels:
                self.errors.push(-109, "Missing parameter")
                return None
            self.levels = v
            self.chip.set_modulators(self._mesh_inputs(v[None])[0])
            return None
        if head == "SOUR:LIST:VOLT":
            if block is None:
                self.errors.push(-161, "Invalid block data")
                return None
            from pyvisa.util import from_ieee_block

            vals = np.asarray(from_ieee_block(block, "f", False), dtype=float)
            if vals.size % self.channels:
                self.errors.push(-161, "Invalid block data")
                return None
            self.sequence = vals.reshape(-1, self.channels)
            return None
        if head == "SOUR:LIST:POIN?":
            return str(len(self.sequence))
        if head == "OUTP" and arg.upper() in ("ON", "1", "OFF", "0"):
            self.output_on = arg.upper() in ("ON", "1")
            self.chip.set_modulators(self._mesh_inputs(self.levels[None])[0])  # the relay drives the chip
            return None
        if head == "OUTP?":
            return "1" if self.output_on else "0"
        if head in ("INIT", "INIT:IMM"):
            self.bus.fire(self._mesh_inputs(self.sequence))
            return None
        return UNDEFINED


class SimPhotodetectorDAQ(SimScpiInstrument):
    def __init__(self, chip: VirtualChip, channels: int, bus: "TriggerBus"):
        super().__init__()
        self.chip, self.channels, self.bus = chip, channels, bus
        self.armed = 0
        self.data: np.ndarray | None = None
        bus.daq = self

    def _channels(self, p: np.ndarray) -> np.ndarray:
        out = np.zeros((len(p), self.channels))
        n = min(self.channels, p.shape[1])
        out[:, :n] = p[:, :n]
        return out

    def receive(self, powers: np.ndarray) -> None:
        if self.armed != len(powers):
            self.errors.push(-211, f"Trigger ignored: armed for {self.armed}, got {len(powers)}")
            return
        self.data, self.armed = self._channels(powers), 0

    def identity(self) -> str:
        return "labsat,SIM-PD8,0001,1.0"

    def answer(self, head: str, arg: str, block: bytes | None):
        if head == "SENS:POW:RANG?":
            return f"{self.chip.detector_range_w:.6g}"
        if head == "SENS:POW:RANG":
            try:
                self.chip.detector_range_w = float(arg.split()[0])
            except (ValueError, IndexError):
                self.errors.push(-104, "Data type error")
            return None
        if head == "MEAS:POW:ALL?":
            p = self.chip.output_powers(self.chip.modulator_v[None])
            return ",".join(f"{x:.6e}" for x in self._channels(p)[0])
        if head == "ACQ:POIN":
            try:
                self.armed = int(arg.split()[0])
            except (ValueError, IndexError):
                self.errors.push(-104, "Data type error")
            self.data = None
            return None
        if head == "FETC:ARR?":
            if self.data is None:
                self.errors.push(-230, "Data stale: no acquisition")
                return None
            data, self.data = self.data, None
            return encode_block(data)
        return UNDEFINED


class TriggerBus:
    """The trigger cable: a modulator sequence plays into the chip and the armed DAQ records it."""

    def __init__(self, chip: VirtualChip):
        self.chip = chip
        self.daq: SimPhotodetectorDAQ | None = None

    def fire(self, modulator_volts: np.ndarray) -> None:
        if len(modulator_volts) == 0:
            return
        powers = self.chip.output_powers(modulator_volts)
        if self.daq is not None:
            self.daq.receive(powers)


def line_server(transport: str, make):
    """A simulated instrument served over a line protocol: ``transport`` is ``serial`` (reached through
    pyserial's ``socket://`` URL) or ``scpi`` (reached through pyvisa-py's ``TCPIP0::...::SOCKET``).
    ``make(lab, scene, name, channels)`` builds the instrument object that answers each message."""

    def start(lab: "VirtualLab", scene, name: str, channels: int):
        inst = make(lab, scene, name, channels)
        server = InstrumentServer(inst)
        if transport == "serial":
            return inst, server, f"socket://127.0.0.1:{server.port}"
        return inst, server, f"TCPIP0::127.0.0.1::{server.port}::SOCKET"

    return start


# instrument kind (as in instruments.yaml) -> start(lab, scene, name, channels) -> (instrument, server, address)
SIM_INSTRUMENTS = {
    "heater_dac": line_server("serial", lambda lab, scene, name, ch: SimHeaterDAC(
        scene, ch, serial=f"Q{ch}iv-SIM{lab.seed:04d}")),
    "modulator_dac": line_server("scpi", lambda lab, scene, name, ch: SimModulatorDAC(scene, ch, lab.bus(scene))),
    "photodetector_daq": line_server("scpi", lambda lab, scene, name, ch: SimPhotodetectorDAQ(
        scene, ch, lab.bus(scene))),
    "block_dac": line_server("scpi", lambda lab, scene, name, ch: _sim_block_dac(lab, scene, ch)),
}


def _sim_block_dac(lab, scene, channels):
    from .block_dac import SimBlockDAC  # LAN heater DAC, whole vector per block (issue 12)

    return SimBlockDAC(scene, channels, serial=f"BDAC-SIM{lab.seed:04d}")


class VirtualLab:
    """The virtual lab: scenes (a chip, an optical bench) and their simulated instruments on loopback.

    Each instrument acts on one scene. ``VirtualLab(seed)`` alone makes one MZI-mesh chip, ``chip``,
    used by :meth:`serve` when no scene is given.
    """

    def __init__(self, seed: int = 0, spec: ChipSpec | None = None):
        self.seed = seed
        self._spec = spec
        self._chip: VirtualChip | None = None
        self.scenes: dict[str, object] = {}
        self._buses: dict[int, TriggerBus] = {}
        self.servers: dict[str, object] = {}
        self.instruments: dict[str, object] = {}
        self.instrument_scenes: dict[str, object] = {}  # instrument name -> the scene it acts on

    @property
    def chip(self) -> VirtualChip:
        """The (first) MZI-mesh chip of this lab."""
        if self._chip is None:
            self._chip = VirtualChip(self._spec or ChipSpec(), seed=self.seed)
        return self._chip

    def add_scene(self, name: str, scene) -> None:
        self.scenes[name] = scene
        if isinstance(scene, VirtualChip) and self._chip is None:
            self._chip = scene

    def bus(self, scene) -> "TriggerBus":
        """The trigger cable between a scene's modulator and its DAQ."""
        if id(scene) not in self._buses:
            self._buses[id(scene)] = TriggerBus(scene)
        return self._buses[id(scene)]

    def serve(self, name: str, kind: str, channels: int, scene=None) -> str:
        """Start the simulated ``kind`` instrument on ``scene`` and return the address a driver opens."""
        if kind not in SIM_INSTRUMENTS:
            raise ValueError(f"the virtual lab has no '{kind}' instrument (has: {', '.join(SIM_INSTRUMENTS)})")
        scene = scene if scene is not None else self.instrument_scenes.get(name, None)
        inst, server, address = SIM_INSTRUMENTS[kind](self, self.chip if scene is None else scene, name, channels)
        self.servers[name], self.instruments[name] = server, inst
        return address

    def close(self) -> None:
        for server in self.servers.values():
            server.stop()
        self.servers.clear()
