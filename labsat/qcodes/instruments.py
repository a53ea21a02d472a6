"""Every labsat driver as a QCoDeS :class:`~qcodes.instrument.Instrument`.

A wrapper holds an open labsat driver and declares its knobs as QCoDeS Parameters. Each Parameter
calls the driver, so the driver's own checks still run on every set (strict limits, ramp from a fresh
read-back, read-back compared with the set-point); the Parameter adds what QCoDeS users expect to see:

- the driver's limits as ``vals`` (a value outside is refused by QCoDeS before the driver is called);
- the driver's ramp as ``step`` (``max_step_v``) and ``inter_delay`` (``step_delay_s``), so ``dond``
  and ``param(v)`` walk to a new level in the same steps the driver would;
- units and labels, and ``get_idn`` from the instrument's identity reply.

The wrapper does not own the connection: :meth:`close` removes it from QCoDeS only; the labsat
:class:`~labsat.station.Station` that opened the driver puts it in its safe state when it closes
(:class:`labsat.qcodes.station.QcodesStation` does both in order).
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np
from qcodes.instrument import Instrument, InstrumentChannel
from qcodes.instrument.channel import ChannelList
from qcodes.parameters import ParameterWithSetpoints
from qcodes.validators import Arrays, Bool, Ints, Numbers

from labsat.drivers.camera import Camera
from labsat.drivers.daq import PhotodetectorDAQ
from labsat.drivers.heater_dac import HeaterDAC
from labsat.drivers.modulator import ModulatorDAC
from labsat.drivers.power_meter import OpticalPowerMeter
from labsat.drivers.pulse_shaper import PulseShaper
from labsat.drivers.slm import SpatialLightModulator
from labsat.drivers.smu import SourceMeterHeater
from labsat.drivers.spectrometer import Spectrometer


class LabsatInstrument(Instrument):
    """Base of the wrappers: holds ``driver`` and answers ``IDN`` from its identity."""

    def __init__(self, name: str, driver, **kwargs: Any):
        super().__init__(name, **kwargs)
        self.driver = driver
        self.add_parameter("identity", get_cmd=lambda: str(driver.identity), label="identity",
                           docstring="the instrument's identity reply (*IDN? or equivalent)")

    def get_idn(self) -> dict[str, str | None]:
        ident = str(self.driver.identity)
        parts = [p.strip() for p in ident.split(",")] + [None] * 4
        if len(ident.split(",")) >= 2:
            return dict(vendor=parts[0], model=parts[1], serial=parts[2], firmware=parts[3])
        return dict(vendor=None, model=ident, serial=None, firmware=None)


# --- heater DAC: one channel per heater, each a ramped, limited voltage ---
class HeaterChannel(InstrumentChannel):
    def __init__(self, parent: "QHeaterDAC", name: str, channel: int):
        super().__init__(parent, name)
        d: HeaterDAC = parent.driver
        self.channel = channel
        v_max = float(d.v_max[channel])
        v_cap = d.channel_cap_v(channel)  # the tightest of the voltage, current and power limits
        self.add_parameter(
            "voltage", label=f"heater {channel} voltage", unit="V",
            get_cmd=lambda: float(d.voltages()[channel]),
            set_cmd=lambda v: d.set_voltages([v], [channel]),
            vals=Numbers(0.0, v_cap), step=d.max_step_v, inter_delay=d.step_delay_s,
            docstring=f"ramped in steps of {d.max_step_v:g} V; limits: {v_max:g} V, {d.i_max_ma:g} mA, "
                      f"{1e3 * d.power_max_w[channel]:g} mW at {d.resistance_ohm[channel]:g} ohm")
        self.add_parameter("current", label=f"heater {channel} current", unit="mA",
                           get_cmd=lambda: float(d.current_ma(channel)), snapshot_get=False)
        self.add_parameter("power", label=f"heater {channel} power", unit="W",
                           get_cmd=lambda: float(d.voltages()[channel] ** 2 / d.resistance_ohm[channel]),
                           docstring="V^2/R from the voltage read-back")


class QHeaterDAC(LabsatInstrument):
    def __init__(self, name: str, driver: HeaterDAC, **kwargs: Any):
        super().__init__(name, driver, **kwargs)
        chans = ChannelList(self, "channels", HeaterChannel)
        for k in range(driver.channels):
            ch = HeaterChannel(self, f"ch{k}", k)
            chans.append(ch)
            self.add_submodule(f"ch{k}", ch)
        self.add_submodule("channels", chans.to_channel_tuple())
        self.add_parameter(
            "voltages", label="all heater voltages", unit="V", get_cmd=lambda: driver.voltages(),
            set_cmd=lambda v: driver.set_voltages(np.asarray(v, dtype=float)),
            vals=Arrays(min_value=0.0, max_value=float(np.max(driver.v_max)), shape=(driver.channels,)),
            docstring="every channel in one ramped transfer (per-channel limits checked by the driver)")


# --- modulator DAC ---
class QModulatorDAC(LabsatInstrument):
    def __init__(self, name: str, driver: ModulatorDAC, **kwargs: Any):
        super().__init__(name, driver, **kwargs)
        self.add_parameter("levels", label="modulator levels", unit="V", get_cmd=lambda: driver.levels(),
                           set_cmd=lambda v: driver.set_levels(v),
                           vals=Arrays(min_value=0.0, max_value=driver.v_max, shape=(driver.channels,)))
        self.add_parameter("output", label="output", set_cmd=lambda on: driver.output(bool(on)), vals=Bool(),
                           docstring="output relay (set only; the safe state is off)")


# --- photodetector DAQ: a spectrum-like array over channels, and one Parameter per channel ---
class DetectorChannel(InstrumentChannel):
    def __init__(self, parent: "QPhotodetectorDAQ", name: str, channel: int):
        super().__init__(parent, name)
        self.add_parameter("power", label=f"detector {channel} power", unit="W",
                           get_cmd=lambda: float(parent.driver.measure()[channel]), snapshot_get=False)


class QPhotodetectorDAQ(LabsatInstrument):
    def __init__(self, name: str, driver: PhotodetectorDAQ, **kwargs: Any):
        super().__init__(name, driver, **kwargs)
        n = driver.channels
        for k in range(n):
            self.add_submodule(f"ch{k}", DetectorChannel(self, f"ch{k}", k))
        self.add_parameter("channel", label="detector channel", get_cmd=lambda: np.arange(n),
                           vals=Arrays(shape=(n,)), snapshot_value=False)
        self.add_parameter("powers", parameter_class=ParameterWithSetpoints, label="detector powers", unit="W",
                           get_cmd=lambda: driver.measure(), setpoints=(self.channel,), vals=Arrays(shape=(n,)),
                           snapshot_value=False, docstring="every channel in one query (MEAS:POW:ALL?)")
        self.add_parameter("power_range", label="power range", unit="W", get_cmd=lambda: driver.power_range_w,
                           set_cmd=lambda w: setattr(driver, "power_range_w", w), vals=Numbers(min_value=1e-12))


# --- SMU driving one heater ---
class QSourceMeter(LabsatInstrument):
    def __init__(self, name: str, driver: SourceMeterHeater, **kwargs: Any):
        super().__init__(name, driver, **kwargs)
        v_cap_hi = driver.v_max
        if driver.resistance_ohm and np.isfinite(driver.power_max_w):
            v_cap_hi = min(v_cap_hi, float(np.sqrt(driver.power_max_w * driver.resistance_ohm)))
        self.add_parameter("voltage", label="source voltage", unit="V", get_cmd=lambda: driver.source_voltage,
                           set_cmd=lambda v: driver.set_voltage(v), vals=Numbers(driver.v_min, v_cap_hi),
                           step=driver.max_step_v, inter_delay=driver.step_delay_s,
                           docstring="ramped; the output must be on (the driver refuses otherwise)")
        self.add_parameter("current", label="measured current", unit="A", get_cmd=lambda: driver.measure_current(),
                           snapshot_get=False, docstring="the output must be on")
        self.add_parameter("compliance_current", label="compliance", unit="A",
                           get_cmd=lambda: driver.compliance_current)
        self.add_parameter("output", label="output", get_cmd=lambda: driver.output_enabled,
                           set_cmd=lambda on: driver.output(bool(on)), vals=Bool())


# --- optical power meter ---
class QPowerMeter(LabsatInstrument):
    def __init__(self, name: str, driver: OpticalPowerMeter, **kwargs: Any):
        super().__init__(name, driver, **kwargs)
        lo, hi = driver.wavelength_range_nm
        self.add_parameter("wavelength", label="wavelength", unit="nm", get_cmd=lambda: driver.wavelength_nm,
                           set_cmd=lambda nm: setattr(driver, "wavelength_nm", nm), vals=Numbers(lo, hi))
        self.add_parameter("averages", label="averaging count", get_cmd=lambda: driver.averages,
                           set_cmd=lambda n: setattr(driver, "averages", n), vals=Ints(1, driver.AVERAGES_MAX))
        self.add_parameter("auto_range", label="auto range", get_cmd=lambda: driver.auto_range,
                           set_cmd=lambda on: setattr(driver, "auto_range", bool(on)), vals=Bool())
        self.add_parameter("range", label="power range", unit="W", get_cmd=lambda: driver.range_w,
                           set_cmd=lambda w: setattr(driver, "range_w", w), vals=Numbers(min_value=1e-15))
        self.add_parameter("power", label="optical power", unit="W", get_cmd=lambda: driver.power(),
                           snapshot_get=False)


# --- spectrometer ---
class QSpectrometer(LabsatInstrument):
    def __init__(self, name: str, driver: Spectrometer, **kwargs: Any):
        super().__init__(name, driver, **kwargs)
        n = driver.channels
        self.add_parameter("integration_time", label="integration time", unit="s",
                           get_cmd=lambda: driver.integration_s,
                           set_cmd=lambda s: setattr(driver, "integration_s", s), vals=Numbers(1e-9, 10.0))
        self.add_parameter("wavelength", label="wavelength", unit="nm", get_cmd=lambda: driver.wavelengths_nm(),
                           vals=Arrays(shape=(n,)), snapshot_value=False)
        self.add_parameter("spectrum", parameter_class=ParameterWithSetpoints, label="spectrum", unit="counts",
                           get_cmd=lambda: driver.acquire(), setpoints=(self.wavelength,), vals=Arrays(shape=(n,)),
                           snapshot_value=False)


# --- camera and SLM (free-space kind) ---
class QCamera(LabsatInstrument):
    def __init__(self, name: str, driver: Camera, **kwargs: Any):
        super().__init__(name, driver, **kwargs)
        lo, hi = driver.EXPOSURE_US
        self.add_parameter("exposure", label="exposure", unit="us", get_cmd=lambda: driver.exposure_us,
                           set_cmd=lambda us: setattr(driver, "exposure_us", us), vals=Numbers(lo, hi))


class QSLM(LabsatInstrument):
    def __init__(self, name: str, driver: SpatialLightModulator, **kwargs: Any):
        super().__init__(name, driver, **kwargs)
        self.add_parameter("frame", label="displayed frame", unit="gray level", get_cmd=lambda: driver.displayed(),
                           set_cmd=lambda g: driver.show(np.asarray(g)), snapshot_value=False,
                           vals=Arrays(min_value=0, max_value=driver.LEVELS - 1, shape=(driver.height, driver.width)))


# --- pulse shaper (HTTP; not a PyMeasure instrument) ---
class QPulseShaper(LabsatInstrument):
    def __init__(self, name: str, driver: PulseShaper, **kwargs: Any):
        super().__init__(name, driver, **kwargs)
        self.add_parameter("frequency", label="frequency", unit="THz", get_cmd=lambda: driver.frequencies(),
                           snapshot_value=False)
        self.add_parameter("attenuation", label="attenuation", unit="dB", get_cmd=lambda: driver.profile()[1],
                           snapshot_value=False, vals=Arrays(min_value=0.0, max_value=driver.attn_max_db))
        self.add_parameter("phase", label="phase", unit="rad", get_cmd=lambda: driver.profile()[2],
                           snapshot_value=False)


WRAPPERS: list[tuple[type, Callable[..., LabsatInstrument]]] = [
    (HeaterDAC, QHeaterDAC), (ModulatorDAC, QModulatorDAC), (PhotodetectorDAQ, QPhotodetectorDAQ),
    (SourceMeterHeater, QSourceMeter), (OpticalPowerMeter, QPowerMeter), (Spectrometer, QSpectrometer),
    (Camera, QCamera), (SpatialLightModulator, QSLM), (PulseShaper, QPulseShaper),
]


def as_qcodes(driver, name: str) -> LabsatInstrument:
    """The QCoDeS instrument for an open labsat ``driver``, registered under ``name``."""
    for cls, wrapper in WRAPPERS:
        if isinstance(driver, cls):
            return wrapper(name, driver)
    raise TypeError(f"{name}: no QCoDeS wrapper for {type(driver).__name__}")


__all__ = ["LabsatInstrument", "as_qcodes", "WRAPPERS"] + [w.__name__ for _, w in WRAPPERS]
