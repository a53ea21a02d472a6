"""The one driver factory: instrument kind (``kind:`` in instruments.yaml) -> the function that opens and
configures its driver, and the simulated counterpart the virtual lab serves for an ``auto`` address.

A new instrument kind adds one registration, :func:`register_driver`, naming both. The station asks
:func:`open_driver` (open the configured driver of any kind); the virtual lab
(``drivers/sim/servers.py:VirtualLab.serve``, ``serve_simulated``) asks :func:`simulated_counterparts`.
Configs are duck-typed here (``cfg.kind`` and fields), so ``labsat.drivers`` does not import
``labsat.config``; nothing here imports the virtual lab (it sits above this module).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class Registration:
    opener: Callable  # (name, cfg, address) -> the configured driver
    simulated: str | None = None  # "module:start" in labsat.drivers.sim: start(lab, name, cfg, scene)


_DRIVERS: dict[str, Registration] = {}


def register_driver(kind: str, simulated: str | None = None):
    """Decorator: ``opener(name, cfg, address) -> driver`` opens instruments of ``kind``; ``simulated``
    names the virtual lab's counterpart, ``"module:start"`` in ``labsat.drivers.sim`` with
    ``start(lab, name, cfg, scene) -> (instrument, server, address)``."""
    def add(opener: Callable) -> Callable:
        _DRIVERS[kind] = Registration(opener, simulated)
        return opener
    return add


def driver_kinds() -> list[str]:
    return list(_DRIVERS)


def simulated_counterparts() -> dict[str, str]:
    """kind -> ``"module:start"`` of its simulated instrument, for every kind that has one."""
    return {kind: reg.simulated for kind, reg in _DRIVERS.items() if reg.simulated}


def open_driver(name: str, cfg, address: str):
    """The configured driver of instrument ``name`` (settings applied and verified, start-up safe state)."""
    kind = getattr(cfg, "kind", None)
    reg = _DRIVERS.get(kind)
    if reg is None:
        raise TypeError(f"instruments.{name}.kind: no driver for {kind!r} (have: {', '.join(_DRIVERS)})")
    return reg.opener(name, cfg, address)


def _adapter(name: str, cfg, address: str):
    """The instrument's adapter with its connection settings (VISA library, serial line, terminators);
    a failure to connect names the instrument."""
    from .base import open_configured

    return open_configured(address, cfg, name=name)


@register_driver("heater_dac", simulated="servers:heater_dac")
def _open_heater_dac(name: str, cfg, address: str):
    from .heater_dac import HeaterDAC

    lim = cfg.limits
    return HeaterDAC(_adapter(name, cfg, address), name=name, channels=cfg.channels, v_max=lim.v_max,
                     i_max_ma=lim.i_max_ma, resistance_ohm=lim.resistance_ohm,
                     power_max_w=None if lim.power_max_mw is None else lim.power_max_mw / 1e3,
                     total_power_max_w=lim.total_power_max_w, max_step_v=cfg.ramp.max_step_v,
                     step_delay_s=cfg.ramp.step_delay_s)


@register_driver("modulator_dac", simulated="servers:modulator_dac")
def _open_modulator(name: str, cfg, address: str):
    from .modulator import ModulatorDAC

    dac = ModulatorDAC(_adapter(name, cfg, address), name=name, channels=cfg.channels, v_max=cfg.limits.v_max,
                       max_points=cfg.max_points)
    dac.output(True)
    return dac


@register_driver("photodetector_daq", simulated="servers:photodetector_daq")
def _open_daq(name: str, cfg, address: str):
    from .daq import PhotodetectorDAQ

    daq = PhotodetectorDAQ(_adapter(name, cfg, address), name=name, channels=cfg.channels, max_points=cfg.max_points)
    daq.power_range_w = cfg.range_w
    return daq


@register_driver("block_dac", simulated="servers:block_dac")
def _open_block_dac(name: str, cfg, address: str):
    from .block_dac import open_block_dac  # LAN heater DAC, whole vector in one binary block

    return open_block_dac(name, cfg, address)


@register_driver("spectrometer", simulated="spectrometer:start")
def _open_spectrometer(name: str, cfg, address: str):
    from .spectrometer import open_spectrometer

    return open_spectrometer(name, cfg, address)


@register_driver("pulse_shaper", simulated="instruments:start_pulse_shaper")
def _open_pulse_shaper(name: str, cfg, address: str):
    from .pulse_shaper import PulseShaper

    shaper = PulseShaper(address, name=name, timeout_s=cfg.timeout_s, attn_max_db=cfg.attn_max_db,
                         safe_state=cfg.safe_state, safe_port=cfg.safe_port)
    shaper.devinfo()
    return shaper


@register_driver("smu", simulated="instruments:start_smu")
def _open_smu(name: str, cfg, address: str):
    from .smu import SourceMeterHeater

    adapter = _adapter(name, cfg, address)
    lim = cfg.limits
    smu = SourceMeterHeater(adapter, name=name, v_max=lim.v_max, v_min=lim.v_min, i_max_a=lim.i_max_ma / 1e3,
                            resistance_ohm=lim.resistance_ohm,
                            power_max_w=None if lim.power_max_mw is None else lim.power_max_mw / 1e3,
                            max_step_v=cfg.ramp.max_step_v, step_delay_s=cfg.ramp.step_delay_s)
    try:
        smu.configure()
        if smu.output_enabled or smu.source_voltage != 0.0:  # left on by a run that died
            smu.shutdown()  # start-up safe state: ramp to 0 V, output off
            smu.isShutdown = False  # PyMeasure's flag: the driver stays in use
    except Exception:
        adapter.close()
        raise
    return smu


@register_driver("power_meter", simulated="instruments:start_power_meter")
def _open_power_meter(name: str, cfg, address: str):
    from .power_meter import OpticalPowerMeter

    adapter = _adapter(name, cfg, address)
    meter = OpticalPowerMeter(adapter, name=name)
    try:
        meter.configure(wavelength_nm=cfg.wavelength_nm, averages=cfg.averages,
                        auto_range=cfg.range_w is None, range_w=cfg.range_w)
    except Exception:
        adapter.close()
        raise
    return meter


@register_driver("slm", simulated="freespace:start")
@register_driver("camera", simulated="freespace:start")
def _open_freespace(name: str, cfg, address: str):
    """An SLM (display size checked, flat frame shown) or a camera (sensor size checked, exposure set)."""
    adapter = _adapter(name, cfg, address)
    try:
        if cfg.kind == "slm":
            from .slm import SpatialLightModulator

            inst = SpatialLightModulator(adapter, name=name, width=cfg.width, height=cfg.height,
                                         modulation=cfg.modulation, max_sequence=cfg.max_sequence)
            inst.check_size()
            inst.clear()  # start-up safe state: the flat frame
        else:
            from .camera import Camera

            inst = Camera(adapter, name=name, width=cfg.width, height=cfg.height)
            inst.check_size()
            inst.exposure_us = cfg.exposure_us
    except Exception:
        adapter.close()
        raise
    return inst
