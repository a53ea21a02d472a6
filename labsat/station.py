"""instruments.yaml -> connected instruments, with the virtual lab started when the backend is ``sim``.

A :class:`Station` is a context manager. Leaving it, normally, on any exception, on Ctrl-C (SIGINT)
or SIGTERM, or at interpreter exit, puts every output it opened into its safe state (heaters ramped
to 0 V, modulator off) before closing the connections.
"""
from __future__ import annotations

import atexit
import logging
import signal
import threading
import weakref
from pathlib import Path

from labsat.config import ConfigError, StationConfig, load_config, with_chip_seed
from labsat.drivers.registry import open_driver

log = logging.getLogger(__name__)

_open_stations: "weakref.WeakSet[Station]" = weakref.WeakSet()


@atexit.register
def _close_all() -> None:
    for station in list(_open_stations):
        station.close()


def _sigterm(signum, frame):
    raise SystemExit(128 + signum)  # unwinds through every `with Station` / finally


class Station:
    def __init__(self, config: StationConfig | str | Path, chip_seed: int | None = None,
                 zero_outputs_on_start: bool = True, layers: list[str] | None = None):
        """``zero_outputs_on_start``: the start-up safe state. A process killed with SIGKILL (or a power
        cut) never runs its safe shutdown, so on connecting every heater DAC found powered is ramped
        to 0 V before anything else happens. Pass False only to watch a bench another process drives."""
        self.zero_outputs_on_start = zero_outputs_on_start
        self.config = load_config(config) if isinstance(config, (str, Path)) else config
        if chip_seed is not None:
            self.config = with_chip_seed(self.config, chip_seed)  # validated like the file's seed
        unknown = [n for n in (layers or []) if n not in self.config.layers]
        if unknown:
            raise ConfigError(f"layers.{unknown[0]}: no such layer in the station (have: {', '.join(self.config.layers)})")
        self._layers = list(layers) if layers else None
        from labsat.kinds import kind_of

        for lname in self.layer_names:  # a lab's own kind is loaded and its settings checked before any start
            kind_of(self.config, lname)
        self.lab = None  # the virtual lab, when simulated (tests and experiments may touch it)
        self.instruments: dict[str, object] = {}
        self.addresses: dict[str, str] = {}
        self._closed = True

    @property
    def simulated(self) -> bool:
        return self.config.station.backend == "sim"

    def device_id(self, layer: str | None = None) -> str:
        layer = layer or self.layer_names[0]
        cfg = self.config.layers[layer]
        if cfg.device:
            return cfg.device
        if self.simulated:
            return f"vchip-{self.config.station.sim.chip_seed}"
        raise ValueError(f"layers.{layer}.device: name the chip so its calibrations can be filed")

    # --- connection ---
    def _start_virtual_lab(self) -> None:
        """One scene per layer (each kind builds its own hidden physics), instruments bound to it."""
        from labsat.drivers.sim.servers import VirtualLab
        from labsat.kinds import kind_of

        seed = self.config.station.sim.chip_seed
        self.lab = VirtualLab(seed=seed)
        for lname in self.layer_names:
            scene = kind_of(self.config, lname).make_scene(self.config, lname, seed)
            if scene is None:  # a kind with no virtual instrument (an experiment as a callable)
                continue
            self.lab.add_scene(lname, scene)
            for inst in self.config.layers[lname].instrument_names():
                self.lab.instrument_scenes.setdefault(inst, scene)

    @property
    def layer_names(self) -> list[str]:
        return list(self._layers or self.config.layers)

    def _wanted_instruments(self) -> list[str]:
        """Instruments of the chosen layers, plus those no layer uses (standalone instruments)."""
        used = {n for layer in self.config.layers.values() for n in layer.instrument_names()}
        chosen = {n for lname in self.layer_names for n in self.config.layers[lname].instrument_names()}
        return [n for n in self.config.instruments if n in chosen or n not in used]

    def connect(self) -> "Station":
        if not self._closed:
            return self
        self._closed = False
        _open_stations.add(self)
        try:
            if self.simulated:
                self._start_virtual_lab()
            for name in self._wanted_instruments():
                cfg = self.config.instruments[name]
                address = cfg.address
                if address == "auto":
                    if not self.simulated:
                        raise ConfigError(f"instruments.{name}.address: 'auto' only works with backend: sim")
                    from labsat.drivers.sim.servers import serve_simulated

                    address = serve_simulated(self.lab, name, cfg, self.config.station.sim)
                self.addresses[name] = address
                self.instruments[name] = self._open(name, cfg, address)
            if self.zero_outputs_on_start:
                self._zero_heaters_on_start()
        except BaseException:
            self.close()
            raise
        return self

    def _zero_heaters_on_start(self) -> None:
        """Start-up safe state: ramp any heater left powered (by a run that died) to 0 V."""
        for name, inst in self.instruments.items():
            if getattr(self.config.instruments[name], "kind", None) not in ("heater_dac", "block_dac"):
                continue
            volts = inst.voltages() if hasattr(inst, "voltages") else None
            if volts is not None and not any(volts):
                continue
            log.warning("station: %s was powered at start (%s); ramping it to 0 V", name,
                        "unknown" if volts is None else f"max {max(volts):.3g} V")
            inst.shutdown()
            if hasattr(inst, "isShutdown"):
                inst.isShutdown = False  # PyMeasure's flag: the driver stays in use

    def _open(self, name: str, cfg, address: str):
        # the one driver factory (drivers/registry.py); each opener applies the instrument's connection
        # settings (VISA library, serial line, terminators) through drivers/base.open_configured
        return open_driver(name, cfg, address)

    def identities(self) -> dict[str, str]:
        return {name: inst.identity for name, inst in self.instruments.items()}

    # --- safe shutdown ---
    def safe_state(self) -> list[str]:
        """Put every output in its safe state; return the problems (empty when all went well)."""
        problems = []
        for name, inst in self.instruments.items():
            try:
                inst.shutdown()
            except Exception as exc:
                problems.append(f"{name}: {exc}")
                log.critical("station: %s did not reach its safe state: %s", name, exc)
        return problems

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self.safe_state()
        finally:
            for inst in self.instruments.values():
                try:
                    inst.adapter.close()
                except Exception:
                    pass
            self.instruments.clear()
            if self.lab is not None:
                self.lab.close()
            _open_stations.discard(self)

    def __enter__(self) -> "Station":
        if threading.current_thread() is threading.main_thread():
            try:
                self._old_sigterm = signal.signal(signal.SIGTERM, _sigterm)
            except ValueError:
                self._old_sigterm = None
        try:
            return self.connect()
        except BaseException:  # no __exit__ follows a failed __enter__: restore SIGTERM here
            self.__exit__(None, None, None)
            raise

    def __exit__(self, *exc) -> None:
        try:
            self.close()
        finally:
            if getattr(self, "_old_sigterm", None) is not None:
                signal.signal(signal.SIGTERM, self._old_sigterm)
                self._old_sigterm = None

    # --- physical layers ---
    def layer(self, name: str | None = None):
        """The hardware of a physical layer (default: the first), as its kind builds it."""
        from labsat.kinds import kind_of

        name = name or self.layer_names[0]
        if name not in self.layer_names:
            raise KeyError(f"layers.{name}: not a connected layer of this station (have: {', '.join(self.layer_names)})")
        return kind_of(self.config, name).make_hardware(self, name)

    def mesh(self, layer: str = "mesh"):
        """The layer named ``mesh`` (older code's name; :meth:`layer` is the one for any kind)."""
        return self.layer(layer)
