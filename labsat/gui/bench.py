"""The workstation's hold on the station, with no Qt in it: connect, poll, stop, and run jobs safely.

Two things touch the instruments at once: the polling timer (GUI thread) and one long job (a worker
thread: calibration sweep, online training, robustness sweep). Each driver already serialises its own
commands with an RLock; a hardware *forward* however spans three instruments (upload a modulator
sequence, arm the DAQ, play, fetch), so jobs reach the layer through :class:`GuardedLayer`, which holds
the bench lock for the whole forward. The poller only tries that lock and skips a tick when it is taken,
so the window never waits on the bench.

STOP (:meth:`Bench.stop`) first aborts every running job, then puts every output in its safe state
without waiting for the bench lock (the drivers' own locks still keep each command whole). The job
notices the abort at its next progress callback, puts the outputs in the safe state again (after its
last write), saves what it has, and ends.
"""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from labsat.drivers.daq import PhotodetectorDAQ
from labsat.drivers.heater_limits import HeaterLimitsMixin  # the serial and the LAN block heater DACs
from labsat.drivers.modulator import ModulatorDAC
from labsat.workflows.hooks import Aborted  # noqa: F401  (raised inside a job on Abort or STOP)

log = logging.getLogger(__name__)

HEATER_KINDS = ("heater_dac", "block_dac")  # instrument kinds that drive heaters (serial, LAN block)


class RunControl:
    """Pause / resume / abort for one job. The job calls :meth:`check` from its progress callbacks."""

    def __init__(self):
        self._abort = threading.Event()
        self._running = threading.Event()
        self._running.set()
        self.reason = ""

    def abort(self, reason: str = "aborted by the operator") -> None:
        if not self._abort.is_set():
            self.reason = reason
        self._abort.set()
        self._running.set()  # a paused job wakes up to abort

    def pause(self) -> None:
        self._running.clear()

    def resume(self) -> None:
        self._running.set()

    @property
    def aborted(self) -> bool:
        return self._abort.is_set()

    @property
    def paused(self) -> bool:
        return not self._running.is_set()

    def check(self) -> None:
        """Raise :class:`Aborted` if aborted; block here while paused."""
        while not self._running.wait(0.05):
            pass
        if self._abort.is_set():
            raise Aborted(self.reason)


class GuardedLayer:
    """A layer's bench adapter (any kind) whose forwards hold the bench lock (and check STOP)."""

    def __init__(self, mesh, lock: threading.RLock, control: RunControl | None = None):
        self._mesh, self._lock, self._control = mesh, lock, control

    def __getattr__(self, name):
        return getattr(self._mesh, name)

    def _guard(self):
        if self._control is not None and self._control.aborted:
            raise Aborted(self._control.reason)  # no new writes after STOP
        return self._lock

    def forward(self, amplitudes, u):
        with self._guard():
            return self._mesh.forward(amplitudes, u)

    def run(self, amplitudes):
        with self._guard():
            return self._mesh.run(amplitudes)

    def set_controls(self, u):
        with self._guard():
            return self._mesh.set_controls(u)


GuardedMesh = GuardedLayer  # the name from when every layer was a mesh


@dataclass
class InstrumentInfo:
    name: str
    kind: str
    address: str
    limits: str
    state: str = "disconnected"
    identity: str = ""


@dataclass
class Snapshot:
    """One poll of the bench: read-backs per instrument (None where it could not be read)."""

    heaters: dict[str, np.ndarray] = field(default_factory=dict)
    modulators: dict[str, np.ndarray] = field(default_factory=dict)
    detectors: dict[str, np.ndarray] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)


def describe_limits(cfg) -> str:
    kind = cfg.kind
    if kind in HEATER_KINDS:
        lim = cfg.limits
        parts = [f"0-{lim.v_max:g} V", f"{lim.i_max_ma:g} mA"]
        if lim.power_max_mw is not None:
            parts.append(f"{lim.power_max_mw:g} mW/ch")
        if lim.total_power_max_w is not None:
            parts.append(f"{lim.total_power_max_w:g} W total")
        parts.append(f"ramp {cfg.ramp.max_step_v:g} V/step")
        return ", ".join(parts)
    if kind == "modulator_dac":
        return f"0-{cfg.limits.v_max:g} V"
    if kind == "photodetector_daq":
        return f"range {cfg.range_w * 1e3:g} mW"
    return ""


class Bench:
    """The station as the workstation sees it."""

    def __init__(self, config_path: str | Path, chip_seed: int | None = None, layer: str | None = None):
        from labsat.config import load_config

        self.config_path = Path(config_path)
        self.config = load_config(self.config_path)  # validated now: a bad file fails before any window
        self.chip_seed = chip_seed
        if layer is not None and layer not in self.config.layers:
            raise KeyError(f"layers.{layer}: no such layer in {self.config_path} "
                           f"(have: {', '.join(self.config.layers)})")
        self.layer = layer or next(iter(self.config.layers))  # the physical layer the panels work on
        self.station = None
        self.lock = threading.RLock()
        self._controls: set[RunControl] = set()
        self._controls_lock = threading.Lock()
        self.info = {name: InstrumentInfo(name, cfg.kind, cfg.address, describe_limits(cfg))
                     for name, cfg in self.config.instruments.items()}

    # --- connection ---
    @property
    def connected(self) -> bool:
        return self.station is not None

    def connect(self):
        from labsat.station import Station

        if self.station is not None:
            return self.station
        station = Station(self.config, chip_seed=self.chip_seed)
        try:
            station.connect()
        except Exception as exc:
            for info in self.info.values():
                info.state = "failed"
            raise RuntimeError(f"could not connect the station: {exc}") from exc
        self.station = station
        for name, info in self.info.items():
            info.address = station.addresses.get(name, info.address)
            try:
                info.identity = station.instruments[name].identity
                info.state = "connected"
            except Exception as exc:
                info.state = f"error: {exc}"
        return station

    def disconnect(self) -> None:
        self.abort_all("station disconnected")
        if self.station is not None:
            station, self.station = self.station, None
            station.close()  # safe state, then close
        for info in self.info.values():
            info.state = "disconnected"

    def require_station(self):
        if self.station is None:
            raise RuntimeError("the station is not connected; press Connect")
        return self.station

    # --- safety ---
    def register(self, control: RunControl) -> None:
        with self._controls_lock:
            self._controls.add(control)

    def unregister(self, control: RunControl) -> None:
        with self._controls_lock:
            self._controls.discard(control)

    def abort_all(self, reason: str) -> None:
        with self._controls_lock:
            controls = list(self._controls)
        for control in controls:
            control.abort(reason)

    def safe_state(self) -> list[str]:
        """Every output to its safe state (heaters ramped to 0 V, modulator off); the problems, if any."""
        if self.station is None:
            return []
        return self.station.safe_state()

    def stop(self) -> list[str]:
        """The STOP button: abort every job, then every output to its safe state."""
        self.abort_all("STOP pressed: every output was put in its safe state")
        return self.safe_state()

    def arm_outputs(self) -> None:
        """Before new hardware work: light on again (a safe state turned the modulator output off)."""
        station = self.require_station()
        with self.lock:
            for inst in station.instruments.values():
                if isinstance(inst, ModulatorDAC):
                    inst.output(True)

    def hardware(self, control: RunControl | None = None) -> GuardedLayer:
        """The hardware of the panels' layer (whatever its kind), its forwards holding the bench lock."""
        return GuardedLayer(self.require_station().layer(self.layer), self.lock, control)

    mesh = hardware  # the name from when every layer was a mesh

    def kind(self):
        from labsat.kinds import kind_of

        return kind_of(self.config, self.layer)

    def make_twin(self):
        """The nominal (uncalibrated) twin of the panels' layer."""
        return self.kind().make_twin(self.config, self.layer)

    def scene(self):
        """The virtual lab's hidden physics behind the layer (None on real hardware). Only its
        environment (``extra_kelvin``) is touched, for drift experiments."""
        station = self.station
        if station is None or station.lab is None:
            return None
        return station.lab.scenes.get(self.layer)

    def heater_channels(self) -> dict[str, set]:
        """heater instrument -> the channels some layer drives (the others stay at 0 V)."""
        used: dict[str, set] = {}
        for layer in self.config.layers.values():
            for cmap, kind in layer.roles().values():
                if kind == "heater_dac":
                    used.setdefault(cmap.instrument, set()).update(cmap.channels)
        return used

    def set_modulator_levels(self, volts: float) -> None:
        """Operator's test input: every modulator channel at one DC level (checked by the driver)."""
        station = self.require_station()
        with self.lock:
            for inst in station.instruments.values():
                if isinstance(inst, ModulatorDAC):
                    inst.output(True)
                    inst.set_levels(np.full(inst.channels, float(volts)))

    # --- polling ---
    def poll(self) -> Snapshot | None:
        """Read every instrument once; None when a job holds the bench (try again next tick)."""
        station = self.station
        if station is None:
            return None
        if not self.lock.acquire(blocking=False):
            return None
        snap = Snapshot()
        try:
            for name, inst in list(station.instruments.items()):
                try:
                    if isinstance(inst, HeaterLimitsMixin):
                        snap.heaters[name] = inst.voltages()
                    elif isinstance(inst, ModulatorDAC):
                        snap.modulators[name] = inst.levels()
                    elif isinstance(inst, PhotodetectorDAQ):
                        snap.detectors[name] = inst.measure()
                    self.info[name].state = "connected"
                except Exception as exc:  # shown in the table; the poller goes on
                    snap.errors[name] = str(exc)
                    self.info[name].state = f"error: {exc}"
        finally:
            self.lock.release()
        return snap

    # --- paths ---
    def calibration_dir(self) -> Path:
        return self.config.resolve(self.config.station.calibration_dir)

    def runs_dir(self) -> Path:
        return self.config.resolve(self.config.station.runs_dir)

    def device_id(self) -> str:
        if self.station is not None:
            return self.station.device_id(self.layer)
        from labsat.station import Station

        return Station(self.config, chip_seed=self.chip_seed).device_id(self.layer)
