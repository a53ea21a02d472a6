"""Simulated instruments: the virtual chip's bench, served over real protocols on loopback.

Each simulated instrument is a TCP server on 127.0.0.1 speaking exactly what the real instrument
speaks: the heater DAC its serial ASCII protocol (reached through pyserial's ``socket://`` URL, the way
a serial-to-LAN bridge is), the modulator and the DAQ SCPI over a raw socket (reached through
pyvisa-py's ``TCPIP0::127.0.0.1::<port>::SOCKET``). All of them act on one :class:`VirtualChip`.
"""
from __future__ import annotations

import re
import threading
from types import SimpleNamespace

import numpy as np

from ..base import MEMORY_DEPTH, encode_block
from .chip import ChipSpec, VirtualChip
from .heaters import SimHeaterOutputs
from .scpi import UNDEFINED, SimScpiInstrument
from .wire import InstrumentServer, line_server, split_message  # noqa: F401 (public here too)


# --- the simulated instruments ---
class SimHeaterDAC(SimHeaterOutputs):
    """Qontrol-style heater DAC on a serial ASCII protocol; its outputs, limits and watchdog:
    :class:`~.heaters.SimHeaterOutputs`."""

    _SET = re.compile(r"^V(\d+)=(\S+)$")
    _GET = re.compile(r"^([VI])(\d+)\?$")

    def __init__(self, chip: VirtualChip, channels: int, serial: str = "Q64iv-SIM"):
        super().__init__(chip, channels, serial)
        self._lock = threading.Lock()

    def _set(self, value: str, channels, ch: int) -> str:
        """``V<ch>=`` / ``VALL=``: the value on ``channels``, or the error naming ``ch``."""
        try:
            v = float(value)
        except ValueError:
            return f"E11:{ch}"
        why = self.refusal(v)
        if why is not None:
            return f"{'E01' if why == 'voltage' else 'E02'}:{ch}"
        self.output(round(v, 4), channels)
        return "OK"

    def handle(self, line: str, block: bytes | None):
        with self._lock:
            if line == "id?":
                return self.serial
            if line == "nchan?":
                return str(self.channels)
            if line == "VALL?":
                return ",".join(f"{v:.4f}" for v in self.volts)
            if line.startswith("VALL="):
                return self._set(line[5:], slice(None), 0)
            m = self._SET.match(line)
            if m:
                ch = int(m.group(1))
                if ch >= self.channels:
                    return f"E12:{ch}"
                return self._set(m.group(2), ch, ch)
            m = self._GET.match(line)
            if m:
                ch = int(m.group(2))
                if ch >= self.channels:
                    return f"E12:{ch}"
                if m.group(1) == "V":
                    return f"{self.volts[ch]:.4f}"
                return f"{1e3 * self.volts[ch] / self.resistance:.4f}"
            return "E10:0"


class SimModulatorDAC(SimScpiInstrument):
    def __init__(self, chip: VirtualChip, channels: int, bus: "TriggerBus", max_points: int = MEMORY_DEPTH):
        super().__init__()
        self.chip, self.channels, self.bus = chip, channels, bus
        self.max_points = int(max_points)  # memory depth (instruments.yaml max_points)
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
            if vals.size // self.channels > self.max_points:
                self.errors.push(-223, f"Too much data: memory holds {self.max_points} points")
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
    def __init__(self, chip: VirtualChip, channels: int, bus: "TriggerBus", max_points: int = MEMORY_DEPTH):
        super().__init__()
        self.chip, self.channels, self.bus = chip, channels, bus
        self.max_points = int(max_points)  # memory depth (instruments.yaml max_points)
        bus.daq = self

    def _channels(self, p: np.ndarray) -> np.ndarray:
        out = np.zeros((len(p), self.channels))
        n = min(self.channels, p.shape[1])
        out[:, :n] = p[:, :n]
        return out

    def receive(self, powers: np.ndarray) -> None:
        if self.triggered(len(powers)):
            self.data = self._channels(powers)

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
            if self.number(arg, 1, self.max_points) is None:  # beyond the memory: -222, not armed
                self.armed, self.data = 0, None
                return None
            return self.arm(arg)
        if head == "FETC:ARR?":
            data = self.fetch()
            return None if data is None else encode_block(data)
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


# the start functions that drivers/registry.py names for these kinds (``simulated="servers:..."``)
heater_dac = line_server("serial", lambda lab, scene, name, cfg: SimHeaterDAC(
    scene, cfg.channels, serial=f"Q{cfg.channels}iv-SIM{lab.seed:04d}"))
modulator_dac = line_server("scpi", lambda lab, scene, name, cfg: SimModulatorDAC(
    scene, cfg.channels, lab.bus(scene), max_points=getattr(cfg, "max_points", MEMORY_DEPTH)))
photodetector_daq = line_server("scpi", lambda lab, scene, name, cfg: SimPhotodetectorDAQ(
    scene, cfg.channels, lab.bus(scene), max_points=getattr(cfg, "max_points", MEMORY_DEPTH)))


def _block_dac(lab, scene, name, cfg):
    from .block_dac import SimBlockDAC  # LAN heater DAC, whole vector per block

    return SimBlockDAC(scene, cfg.channels, serial=f"BDAC-SIM{lab.seed:04d}")


block_dac = line_server("scpi", _block_dac)


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

    def serve(self, name: str, kind: str, channels: int = 0, scene=None, cfg=None) -> str:
        """Start the simulated ``kind`` instrument on ``scene`` and return the address a driver opens.

        The instrument is the simulated counterpart its driver's registration names
        (``register_driver(kind, simulated="module:start")`` in drivers/registry.py); ``cfg`` is the
        instrument's instruments.yaml entry when there is one (its fields set the counterpart up)."""
        import importlib

        from ..registry import simulated_counterparts

        counterparts = simulated_counterparts()
        if kind not in counterparts:
            raise ValueError(f"the virtual lab has no '{kind}' instrument (has: {', '.join(counterparts)})")
        module, _, function = counterparts[kind].partition(":")
        start = getattr(importlib.import_module(f"{__package__}.{module}"), function)
        cfg = cfg if cfg is not None else SimpleNamespace(kind=kind, channels=channels)
        scene = scene if scene is not None else self.instrument_scenes.get(name, None)
        inst, server, address = start(self, name, cfg, scene)
        self.servers[name], self.instruments[name] = server, inst
        return address

    def close(self) -> None:
        for server in self.servers.values():
            server.stop()
        self.servers.clear()


def serve_simulated(lab: VirtualLab, name: str, cfg, sim=None) -> str:
    """Start instrument ``name`` (its instruments.yaml entry ``cfg``) in the virtual lab, with the station's
    ``station.sim`` timing and faults applied; return the address its driver opens."""
    from . import faults as sim_faults

    address = lab.serve(name, cfg.kind, getattr(cfg, "channels", 0) or 0, cfg=cfg)
    if sim is not None:
        t = getattr(sim, "timing", None)
        timing = None
        if t is not None:
            timing = sim_faults.TimingModel(query_latency_s=t.query_latency_s, command_latency_s=t.command_latency_s,
                                            baud=t.serial_baud, link_bytes_per_s=t.lan_mbit_s * 1e6 / 8,
                                            realtime=t.realtime)
            scenes = list(getattr(lab, "scenes", {}).values()) or [lab.chip]
            for scene in scenes:
                if hasattr(scene, "seconds_per_heater_update"):
                    sim_faults.set_chip_timing(scene, settling_s=t.settling_s, sample_s=t.sample_s)
        faults = [dict(kind=f.kind, match=f.match, after=f.after, count=f.count)
                  for f in getattr(sim, "faults", []) if f.instrument == name]
        sim_faults.install(lab, name, faults=faults, timing=timing, serial=address.startswith("socket://"))
    return address
