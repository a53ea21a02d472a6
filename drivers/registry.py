"""Station glue for the instrument kinds of issue 3 (``smu``, ``power_meter``, ``pulse_shaper``), and the
virtual lab's timing model and faults for every kind.

Kept apart from ``labsat/station.py`` so the station only asks two questions: :func:`serve_simulated`
(start the simulated instrument for an ``auto`` address, with the ``station.sim`` timing and faults
applied) and :func:`open_driver` (open the driver for one of these kinds, or ``None`` for the others).
Configs are duck-typed here (``cfg.kind`` and fields), so ``labsat.drivers`` does not import
``labsat.config``.
"""
from __future__ import annotations

NEW_KINDS = ("smu", "power_meter", "pulse_shaper", "slm", "camera")


def serve_simulated(lab, name: str, cfg, sim=None) -> str:
    """Start instrument ``name`` in the virtual lab; return the address its driver opens."""
    from .sim import faults as sim_faults
    from .sim import instruments as sim_instruments

    if cfg.kind == "smu":
        address = sim_instruments.serve(lab, name, "smu", heater=cfg.sim_heater)
    elif cfg.kind == "power_meter":
        address = sim_instruments.serve(lab, name, "power_meter", port=cfg.sim_port)
    elif cfg.kind == "pulse_shaper":
        address = sim_instruments.serve(lab, name, "pulse_shaper")
    elif cfg.kind in ("slm", "camera"):
        from .sim import freespace as sim_freespace

        address = sim_freespace.serve(lab, name, cfg)
    else:
        address = lab.serve(name, cfg.kind, cfg.channels)
    if sim is not None:
        t = getattr(sim, "timing", None)
        timing = None
        if t is not None:
            timing = sim_faults.TimingModel(query_latency_s=t.query_latency_s, command_latency_s=t.command_latency_s,
                                            baud=t.serial_baud, realtime=t.realtime)
            scenes = list(getattr(lab, "scenes", {}).values()) or [lab.chip]
            for scene in scenes:
                if hasattr(scene, "seconds_per_heater_update"):
                    sim_faults.set_chip_timing(scene, settling_s=t.settling_s, sample_s=t.sample_s)
        faults = [dict(kind=f.kind, match=f.match, after=f.after, count=f.count)
                  for f in getattr(sim, "faults", []) if f.instrument == name]
        sim_faults.install(lab, name, faults=faults, timing=timing, serial=address.startswith("socket://"))
    return address


def open_driver(name: str, cfg, address: str):
    """The configured driver for the kinds above (settings applied and verified), else ``None``."""
    kind = getattr(cfg, "kind", None)
    if kind == "block_dac":  # issue 12: LAN heater DAC, whole vector in one binary block
        from .block_dac import open_block_dac

        return open_block_dac(name, cfg, address)
    if kind == "spectrometer":  # issue 6: SCPI spectrometer (its sim registers itself with the virtual lab)
        from .spectrometer import open_spectrometer

        return open_spectrometer(name, cfg, address)
    if kind not in NEW_KINDS:
        return None
    if kind == "pulse_shaper":
        from .pulse_shaper import PulseShaper

        shaper = PulseShaper(address, name=name, timeout_s=cfg.timeout_s, attn_max_db=cfg.attn_max_db,
                             safe_state=cfg.safe_state, safe_port=cfg.safe_port)
        shaper.devinfo()
        return shaper
    if kind in ("slm", "camera"):
        return _open_freespace(name, cfg, address)
    from .base import open_adapter

    adapter = open_adapter(address, timeout_s=cfg.timeout_s)
    if kind == "smu":
        from .smu import SourceMeterHeater

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
    from .power_meter import OpticalPowerMeter

    meter = OpticalPowerMeter(adapter, name=name)
    try:
        meter.configure(wavelength_nm=cfg.wavelength_nm, averages=cfg.averages,
                        auto_range=cfg.range_w is None, range_w=cfg.range_w)
    except Exception:
        adapter.close()
        raise
    return meter


def _open_freespace(name: str, cfg, address: str):
    """An SLM (display size checked, flat frame shown) or a camera (sensor size checked, exposure set)."""
    from .base import open_adapter

    adapter = open_adapter(address, timeout_s=cfg.timeout_s)
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
