"""instruments.yaml: the station description, validated with messages that name the offending key."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal, Union

import re

import yaml
from pydantic import (AfterValidator, BaseModel, ConfigDict, Discriminator, Field, Tag, ValidationError,
                      field_validator, model_validator)

from labsat.drivers.addresses import check_address

# Bounds every number of a station file meets before anything is built from it (issue 14): the
# instruments' full scales (the drivers' own constants), and sizes no bench reaches.
HEATER_FULL_SCALE_V, HEATER_FULL_SCALE_MA = 12.0, 24.0      # drivers/heater_dac.py HeaterDAC.FULL_SCALE_*
MODULATOR_FULL_SCALE_V = 10.0                               # drivers/modulator.py ModulatorDAC.FULL_SCALE_V
SMU_FULL_SCALE_V, SMU_FULL_SCALE_MA = 210.0, 1050.0         # drivers/smu.py SourceMeterHeater.FULL_SCALE_*
MAX_TIMEOUT_S = 3600.0
MAX_CHANNELS = 8192        # the most channels one channel map may list (before the list is built)
MAX_RESISTANCE_OHM = 1e7
MAX_SEED = 2**32 - 1       # numpy's seed range


class ConfigError(ValueError):
    """instruments.yaml (or another config file) is malformed; the message names the key."""


class _Strict(BaseModel):
    # allow_inf_nan=False: every float of the file is finite (.inf, .nan, 1e400 are refused by key)
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


def _address(value: str) -> str:
    problem = check_address(value)
    if problem:
        raise ValueError(problem)
    return value


def _http_address(value: str) -> str:
    if value != "auto" and not re.fullmatch(r"https?://[^\s/:]+(:\d{1,5})?(/\S*)?", value):
        raise ValueError(f"{value!r} is not an http:// address (e.g. http://192.0.2.20) or 'auto'")
    return value


Address = Annotated[str, Field(max_length=512), AfterValidator(_address)]
HttpAddress = Annotated[str, Field(max_length=512), AfterValidator(_http_address)]


def _parse_channels(value) -> list[int]:
    """``[0, 1, 2]``, ``"0-55"`` or ``"0-3,8,10-11"`` into a list of channel numbers; at most
    ``MAX_CHANNELS``, counted before the list is built (``"0-999999999999"`` is refused, not allocated)."""
    if isinstance(value, str):
        if len(value) > 10_000:
            raise ValueError("too long a channel list")
        out: list[int] = []
        for part in value.split(","):
            part = part.strip()
            if "-" in part:
                lo, hi = (int(x) for x in part.split("-", 1))
                if hi - lo + 1 + len(out) > MAX_CHANNELS:
                    raise OverflowError(f"'{part}' lists {hi - lo + 1} channels; at most {MAX_CHANNELS}")
                out.extend(range(lo, hi + 1))
            elif part:
                out.append(int(part))
        return out
    return list(value)


class HeaterLimits(_Strict):
    v_max: float = Field(gt=0, le=HEATER_FULL_SCALE_V, description="per-channel maximum voltage (V)")
    i_max_ma: float = Field(24.0, gt=0, le=HEATER_FULL_SCALE_MA)
    resistance_ohm: float = Field(gt=0, le=MAX_RESISTANCE_OHM,
                                  description="heater resistance, for current and power limits")
    power_max_mw: float | None = Field(None, gt=0, le=HEATER_FULL_SCALE_V * HEATER_FULL_SCALE_MA)
    total_power_max_w: float | None = Field(None, gt=0, le=1e4)


class Ramp(_Strict):
    max_step_v: float = Field(1.0, gt=0, le=SMU_FULL_SCALE_V)
    step_delay_s: float = Field(0.0, ge=0, le=60)


class SerialLine(_Strict):
    """Serial line settings (pyserial addresses and VISA ``ASRL`` resources); see drivers/connection.py."""

    baud_rate: int = Field(115200, gt=0, le=10_000_000)
    data_bits: Literal[5, 6, 7, 8] = 8
    parity: Literal["none", "odd", "even", "mark", "space"] = "none"
    stop_bits: Literal[1, 1.5, 2] = 1


class Termination(_Strict):
    """Message terminators the instrument reads (``write``) and sends (``read``)."""

    read: Literal["\n", "\r\n", "\r"] = "\n"
    write: Literal["\n", "\r\n", "\r"] = "\n"


class _Link(_Strict):
    """How to reach an instrument besides its address: VISA library, serial line, terminators."""

    visa_library: str = Field("@py", max_length=4096, description="'@py' (pyvisa-py), '@ivi' (NI/Keysight VISA), '@sim' or a library path")
    serial: SerialLine = SerialLine()
    termination: Termination = Termination()

    @field_validator("visa_library")
    @classmethod
    def _visa_library(cls, v: str) -> str:
        from labsat.drivers.connection import check_visa_library

        return check_visa_library(v)


class HeaterDACConfig(_Link):
    kind: Literal["heater_dac"]
    address: Address = "auto"
    channels: int = Field(gt=0, le=1024)
    timeout_s: float = Field(2.0, gt=0, le=MAX_TIMEOUT_S)
    limits: HeaterLimits
    ramp: Ramp = Ramp()


class BlockDACConfig(_Link):
    """LAN multichannel heater DAC: the whole voltage vector in one binary block (drivers/block_dac.py)."""

    kind: Literal["block_dac"]
    address: str = "auto"
    channels: int = Field(gt=0, le=8192)
    timeout_s: float = Field(5.0, gt=0, le=MAX_TIMEOUT_S)
    limits: HeaterLimits
    ramp: Ramp = Ramp()


HEATER_KINDS = ("heater_dac", "block_dac")  # instrument kinds that can drive a layer's heaters


class ModulatorLimits(_Strict):
    v_max: float = Field(gt=0, le=MODULATOR_FULL_SCALE_V)


MEMORY_DEPTH_MAX = 1 << 26  # points per channel: beyond any instrument's memory (and a 9-digit IEEE 488.2 block)
MEMORY_DEPTH_DEFAULT = 1024  # an entry without max_points (the drivers' labsat.drivers.base.MEMORY_DEPTH)


class ModulatorConfig(_Link):
    kind: Literal["modulator_dac"]
    address: Address = "auto"
    channels: int = Field(gt=0, le=1024)
    timeout_s: float = Field(2.0, gt=0, le=MAX_TIMEOUT_S)
    limits: ModulatorLimits
    max_points: int = Field(MEMORY_DEPTH_DEFAULT, gt=0, le=MEMORY_DEPTH_MAX, description=(
        "memory depth: the longest sequence (points per channel) the instrument holds; a batch is sent "
        "in chunks of at most the smaller of this and the DAQ's max_points"))


class DAQConfig(_Link):
    kind: Literal["photodetector_daq"]
    address: Address = "auto"
    channels: int = Field(gt=0, le=1024)
    timeout_s: float = Field(2.0, gt=0, le=MAX_TIMEOUT_S)
    range_w: float = Field(1e-3, gt=0, le=10)
    max_points: int = Field(MEMORY_DEPTH_DEFAULT, gt=0, le=MEMORY_DEPTH_MAX, description=(
        "memory depth: the most points (per channel) one acquisition holds"))


class SMULimits(_Strict):
    v_max: float = Field(gt=0, le=SMU_FULL_SCALE_V, description="highest source voltage (V)")
    v_min: float = Field(0.0, ge=-SMU_FULL_SCALE_V, lt=SMU_FULL_SCALE_V, description="lowest source voltage (V)")
    i_max_ma: float = Field(gt=0, le=SMU_FULL_SCALE_MA, description="current compliance, set in the instrument (mA)")
    resistance_ohm: float | None = Field(None, gt=0, le=MAX_RESISTANCE_OHM,
                                         description="heater resistance, for current and power limits")
    power_max_mw: float | None = Field(None, gt=0, le=SMU_FULL_SCALE_V * SMU_FULL_SCALE_MA)

    @model_validator(mode="after")
    def _order(self):
        if self.v_min >= self.v_max:
            raise ValueError(f"v_min: {self.v_min} V must be below v_max ({self.v_max} V)")
        return self


class SMUConfig(_Link):
    """A Keithley 2400-style source-measure unit driving one heater (drivers/smu.py)."""

    kind: Literal["smu"]
    address: Address = "auto"
    channels: Literal[1] = 1
    timeout_s: float = Field(2.0, gt=0, le=MAX_TIMEOUT_S)
    limits: SMULimits
    ramp: Ramp = Ramp(max_step_v=0.5)
    sim_heater: int | None = Field(None, ge=0, le=4096, description="virtual lab: the chip heater it is wired to")


class PowerMeterConfig(_Link):
    """A Thorlabs PM100-style optical power meter (drivers/power_meter.py)."""

    kind: Literal["power_meter"]
    address: Address = "auto"
    channels: Literal[1] = 1
    timeout_s: float = Field(2.0, gt=0, le=MAX_TIMEOUT_S)
    wavelength_nm: float = Field(1550.0, ge=100, le=20_000, description="100 nm .. 20 um")
    averages: int = Field(1, ge=1, le=10000)
    range_w: float | None = Field(None, gt=0, le=100, description="manual range (W); auto range when absent")
    sim_port: int = Field(0, ge=0, le=1024, description="virtual lab: the chip output port it reads")


class PulseShaperConfig(_Strict):
    """A WaveShaper-style programmable spectral filter over HTTP (drivers/pulse_shaper.py)."""

    kind: Literal["pulse_shaper"]
    address: HttpAddress = "auto"  # real: http://192.0.2.20
    channels: Literal[1] = 1
    timeout_s: float = Field(5.0, gt=0, le=MAX_TIMEOUT_S)
    attn_max_db: float = Field(40.0, gt=0, le=40)
    safe_state: Literal["block", "transmit"] = "block"
    safe_port: int = Field(1, ge=1, le=64)


# Add an instrument kind: a config class with `kind: Literal[...]`, then list it here.
class SpectrometerConfig(_Link):
    """A grating spectrometer with a detector array, SCPI, binary block readout (drivers/spectrometer.py)."""

    kind: Literal["spectrometer"]
    address: Address = "auto"
    channels: int = Field(gt=0, le=4096, description="detector pixels")
    timeout_s: float = Field(2.0, gt=0, le=MAX_TIMEOUT_S)
    integration_s: float = Field(1e-3, gt=0, le=10)
    averages: int = Field(1, ge=1, le=10000, description="exposures averaged per spectrum (SENS:AVER:COUN): "
                          "noise / sqrt(n), time x n")


class SLMConfig(_Link):
    """A spatial light modulator showing whole frames over SCPI-over-socket (drivers/slm.py)."""

    kind: Literal["slm"]
    address: Address = "auto"
    width: int = Field(gt=0, le=8192, description="display width (pixels)")
    height: int = Field(gt=0, le=8192, description="display height (pixels)")
    modulation: Literal["phase", "amplitude"] = "phase"
    timeout_s: float = Field(5.0, gt=0, le=MAX_TIMEOUT_S)
    max_sequence: int = Field(4096, ge=1, le=100_000, description="most frames in one uploaded sequence")


class CameraConfig(_Link):
    """A 16-bit scientific camera read over SCPI-over-socket, frames as binary blocks (drivers/camera.py)."""

    kind: Literal["camera"]
    address: Address = "auto"
    width: int = Field(gt=0, le=8192)
    height: int = Field(gt=0, le=8192)
    exposure_us: float = Field(10.0, ge=1, le=1e6)
    timeout_s: float = Field(5.0, gt=0, le=MAX_TIMEOUT_S)


InstrumentConfig = Annotated[Union[HeaterDACConfig, BlockDACConfig, ModulatorConfig, DAQConfig, SMUConfig, PowerMeterConfig,
                                   PulseShaperConfig, SpectrometerConfig, SLMConfig,
                                   CameraConfig], Field(discriminator="kind")]


class ChannelMap(_Strict):
    instrument: str = Field(max_length=200)
    channels: list[Annotated[int, Field(ge=-MAX_CHANNELS, le=MAX_CHANNELS)]] = Field(max_length=MAX_CHANNELS)

    @field_validator("channels", mode="before")
    @classmethod
    def _channels(cls, v):
        try:
            return _parse_channels(v)
        except OverflowError as exc:
            raise ValueError(str(exc)) from None
        except (TypeError, ValueError):
            raise ValueError("channels must be a list of integers or a range string like '0-55'") from None


class LayerBase(_Strict):
    """What every physical layer config offers the station: the instruments it uses, and a check of
    its references against the instruments section (raise ValueError naming the dotted key)."""

    device: str | None = Field(None, max_length=100, pattern=r"^[A-Za-z0-9._-]+$",
                               description="the device's name (letters, digits, '.', '_', '-'); calibrations "
                                           "are filed under it")

    def roles(self) -> dict[str, tuple[ChannelMap, str]]:
        """role -> (channel map, instrument kind it needs)."""
        raise NotImplementedError

    def instrument_names(self) -> list[str]:
        return [cmap.instrument for cmap, _ in self.roles().values()]

    def check_references(self, name: str, instruments: dict) -> None:
        for role, (cmap, kind) in self.roles().items():
            key = f"layers.{name}.{role}"
            # the key the file gives the instrument name at: a channel map's .instrument, or the role itself
            ikey = key if isinstance(getattr(self, role, None), str) else f"{key}.instrument"
            inst = instruments.get(cmap.instrument)
            if inst is None:
                raise ValueError(f"{ikey}: no instrument named '{cmap.instrument}' "
                                 f"(have: {', '.join(instruments)})")
            if inst.kind != kind and not (kind == "heater_dac" and inst.kind in HEATER_KINDS):
                raise ValueError(f"{ikey}: '{cmap.instrument}' is a {inst.kind}, {role} need a {kind}")
            channels = getattr(inst, "channels", None)
            bad = [c for c in cmap.channels if channels is not None and not 0 <= c < channels]
            if bad:
                raise ValueError(f"{key}.channels: channel {bad[0]} does not exist on "
                                 f"'{cmap.instrument}' (0..{channels - 1})")
            if len(set(cmap.channels)) != len(cmap.channels):
                raise ValueError(f"{key}.channels: a channel is listed twice")


class HeaterBankLayer(LayerBase):
    """A layer of thermo-optic heaters with modulator inputs and detector outputs (mesh, microring):
    its heater control range must fit the heater DAC's per-channel and total limits."""

    heaters: ChannelMap
    inputs: ChannelMap
    outputs: ChannelMap
    v_max: float = Field(gt=0, le=SMU_FULL_SCALE_V,
                         description="heater control range (V); must not exceed the heater limit")
    modulator_vpi: float = Field(gt=0, le=MODULATOR_FULL_SCALE_V)

    def roles(self):
        return {"heaters": (self.heaters, "heater_dac"), "inputs": (self.inputs, "modulator_dac"),
                "outputs": (self.outputs, "photodetector_daq")}

    def check_references(self, name: str, instruments: dict) -> None:
        super().check_references(name, instruments)
        heater = instruments[self.heaters.instrument]
        if self.v_max > heater.limits.v_max:
            raise ValueError(f"layers.{name}.v_max: {self.v_max} V exceeds "
                             f"instruments.{self.heaters.instrument}.limits.v_max ({heater.limits.v_max} V)")
        worst_w = len(self.heaters.channels) * self.v_max**2 / heater.limits.resistance_ohm
        total = heater.limits.total_power_max_w
        if total is not None and worst_w > total:
            raise ValueError(f"layers.{name}.v_max: all {len(self.heaters.channels)} heaters at {self.v_max} V draw "
                             f"{worst_w:.3g} W > instruments.{self.heaters.instrument}.limits.total_power_max_w "
                             f"({total} W); training could reach that limit: lower v_max or raise the limit")
        mod = instruments[self.inputs.instrument]
        if self.modulator_vpi > mod.limits.v_max:
            raise ValueError(f"layers.{name}.modulator_vpi: {self.modulator_vpi} V exceeds "
                             f"instruments.{self.inputs.instrument}.limits.v_max")


class MeshLayerConfig(HeaterBankLayer):
    kind: Literal["mzi_mesh"]
    modes: int = Field(ge=2, le=64)
    v2pi: float = Field(ge=1e-3, le=1e3,  # below a millivolt, v2pi² underflows the twin's phase per watt
                        description="nominal heater voltage for a 2 pi phase shift")
    laser_power_w: float = Field(gt=0, le=10)

    @model_validator(mode="after")
    def _sizes(self):
        h = self.modes * (self.modes - 1)
        if len(self.heaters.channels) != h:
            raise ValueError(f"heaters.channels: a {self.modes}-mode mesh has {h} heaters, "
                             f"{len(self.heaters.channels)} channels given")
        for key in ("inputs", "outputs"):
            n = len(getattr(self, key).channels)
            if n != self.modes:
                raise ValueError(f"{key}.channels: a {self.modes}-mode mesh needs {self.modes}, {n} given")
        return self


class MicroringLayerConfig(HeaterBankLayer):
    """A microring weight bank (labsat/twins/microring.py): ``n_outputs`` x ``n_inputs`` add-drop rings,
    one heater each (row-major: ring ``(i, j)`` on heater channel ``i * n_inputs + j``), a WDM input of
    ``n_inputs`` wavelengths set by the modulators, one balanced photodetector per output."""

    kind: Literal["microring_bank"]
    n_inputs: int = Field(ge=1, le=64)
    n_outputs: int = Field(ge=1, le=64)
    hwhm_pm: float = Field(gt=0, le=1e5, description="datasheet: ring half linewidth (pm)")
    bias_pm: float = Field(ge=-1e5, le=1e5, description="datasheet: detuning of a cold ring from its laser line (pm)")
    shift_pm_per_mw: float = Field(gt=0, le=1e5, description="datasheet: resonance shift per heater power (pm/mW)")
    contrast: float = Field(1.85, gt=0, le=2, description="datasheet: drop peak + through dip depth")
    crosstalk_design: tuple[Annotated[float, Field(ge=-1, le=1)], Annotated[float, Field(ge=-1, le=1)],
                            Annotated[float, Field(ge=-1, le=1)]] = Field(
        (0.0, 0.0, 0.0), description="design thermal model: heat fraction reaching the next ring in a row, "
                                     "the ring after next, the ring in the next row (the twin's starting guess)")
    line_power_w: float = Field(gt=0, le=10, description="laser power per wavelength channel (W)")

    @field_validator("crosstalk_design", mode="before")
    @classmethod
    def _three(cls, v):
        if not isinstance(v, (list, tuple)) or len(v) != 3:
            raise ValueError(f"needs 3 numbers (heat to the next ring, the ring after next, the next row), "
                             f"got {_short(v)}")
        return v

    @model_validator(mode="after")
    def _sizes(self):
        k = self.n_inputs * self.n_outputs
        if len(self.heaters.channels) != k:
            raise ValueError(f"heaters.channels: a {self.n_outputs}x{self.n_inputs} bank has {k} rings, "
                             f"{len(self.heaters.channels)} channels given")
        for key, n in (("inputs", self.n_inputs), ("outputs", self.n_outputs)):
            if len(getattr(self, key).channels) != n:
                raise ValueError(f"{key}.channels: the bank needs {n}, {len(getattr(self, key).channels)} given")
        return self


class PulseLayerConfig(LayerBase):
    """Pulse shaper + second-harmonic generation + spectrometer (labsat/hardware/pulse.py). The shaper's
    band from ``start_thz`` is cut into macro-pixels of ``pixel_bins`` 0.001 THz bins: ``n_inputs``
    pixels carry the input (phase ``input_phase_rad * x``), ``n_controls`` pixels the trainable
    parameters (phase ``2 pi u``); ``input_layout`` says where the input pixels sit: ``first`` (a block at
    the band's low-frequency edge, then the parameters) or ``interleaved`` (spread evenly across the
    band, so every input sees a comparable share of the pulse's light). The spectrometer's ``outputs``
    pixels are the outputs."""

    kind: Literal["pulse_shg"]
    shaper: ChannelMap
    outputs: ChannelMap
    n_inputs: int = Field(ge=1, le=256)
    n_controls: int = Field(ge=1, le=256)
    start_thz: float = Field(gt=0, le=1e4)
    pixel_bins: int = Field(4, ge=1, le=200)
    input_phase_rad: float = Field(3.141592653589793, gt=0, le=6.283185307179586)
    input_layout: Literal["first", "interleaved"] = "first"
    output_scale: float = Field(1.0, gt=0, le=1e12, description="outputs are spectrometer counts / this")

    def roles(self):
        return {"shaper": (self.shaper, "pulse_shaper"), "outputs": (self.outputs, "spectrometer")}

    @property
    def n_outputs(self) -> int:
        return len(self.outputs.channels)


class FreeSpaceLayerConfig(LayerBase):
    """Free-space optics (labsat/twins/freespace.py): an amplitude SLM shows the input image in its
    top-left ``grid`` x ``grid`` region, a phase SLM shows ``masks`` phase masks side by side (region k at
    columns ``k*grid``), a camera reads ``classes`` square detector regions around the optical axis."""

    kind: Literal["freespace"]
    input_slm: str = Field(max_length=200, description="amplitude SLM (or DMD) showing the input images")
    mask_slm: str = Field(max_length=200, description="phase SLM showing the trainable masks")
    camera: str = Field(max_length=200)
    grid: int = Field(32, ge=8, le=512, description="mask size (SLM pixels, square)")
    masks: int = Field(2, ge=1, le=8)
    pitch_um: float = Field(8.0, ge=0.1, le=1e4)
    wavelength_nm: float = Field(532.0, ge=100, le=20_000, description="100 nm .. 20 um")
    distance_mm: float = Field(1.0, ge=1e-3, le=1e5, description="each gap: input, masks, camera")
    padding: int = Field(2, ge=1, le=8, description="propagation grid = padding x grid")
    image_size: int = Field(16, ge=8, le=512, description="digits are upsampled to this size, centred")
    classes: int = Field(10, ge=2, le=64)
    detector_px: int = Field(4, ge=1, le=512)

    def roles(self):
        return {"input_slm": (ChannelMap(instrument=self.input_slm, channels=[]), "slm"),
                "mask_slm": (ChannelMap(instrument=self.mask_slm, channels=[]), "slm"),
                "camera": (ChannelMap(instrument=self.camera, channels=[]), "camera")}

    def check_references(self, name: str, instruments: dict) -> None:
        super().check_references(name, instruments)
        if self.input_slm == self.mask_slm:
            raise ValueError(f"layers.{name}.mask_slm: the masks and the inputs need two SLMs")
        inp, msk, cam = (instruments[n] for n in (self.input_slm, self.mask_slm, self.camera))
        if inp.modulation != "amplitude":
            raise ValueError(f"layers.{name}.input_slm: '{self.input_slm}' must be an amplitude SLM")
        if msk.modulation != "phase":
            raise ValueError(f"layers.{name}.mask_slm: '{self.mask_slm}' must be a phase SLM")
        if inp.width < self.grid or inp.height < self.grid:
            raise ValueError(f"layers.{name}.grid: {self.grid} px does not fit '{self.input_slm}' "
                             f"({inp.width}x{inp.height})")
        if msk.width < self.masks * self.grid or msk.height < self.grid:
            raise ValueError(f"layers.{name}.masks: {self.masks} masks of {self.grid} px do not fit "
                             f"'{self.mask_slm}' ({msk.width}x{msk.height})")
        p = self.padding * self.grid
        for side in (cam.width, cam.height):
            if not self.grid <= side <= p or (side - self.grid) % 2:
                raise ValueError(f"layers.{name}.camera: '{self.camera}' ({cam.width}x{cam.height}) must be "
                                 f"{self.grid}..{p} px a side, centred on the grid (even margins)")

    @model_validator(mode="after")
    def _sizes(self):
        if self.image_size > self.grid:
            raise ValueError(f"image_size: {self.image_size} exceeds the grid ({self.grid})")
        from labsat.twins.freespace_layout import detector_boxes

        detector_boxes(self.grid, self.classes, self.detector_px)  # raises if they do not fit
        return self


class SimTiming(_Strict):
    """Modelled instrument time in the virtual lab (drivers/sim/faults.py); zero by default."""

    query_latency_s: float = Field(0.0, ge=0, le=60, description="round trip of each answered message")
    command_latency_s: float = Field(0.0, ge=0, le=60, description="each message not answered")
    serial_baud: int = Field(0, ge=0, le=100_000_000, description="serial instruments' line rate; 0: infinitely fast")
    lan_mbit_s: float = Field(100.0, ge=0, le=1e6, description="LAN instruments' effective link rate (Mbit/s), "
                              "charged per byte of every message and reply; 0: infinitely fast")
    settling_s: float | None = Field(None, ge=0, le=60, description="thermal settling after a heater change")
    sample_s: float | None = Field(None, ge=0, le=60, description="integration time per acquired sample")
    realtime: bool = Field(False, description="sleep the modelled time, so wall clock includes it")


class SimFault(_Strict):
    """A fault the virtual lab injects into one instrument's protocol (drivers/sim/faults.py)."""

    instrument: str = Field(max_length=200)
    kind: Literal["timeout", "garbled", "drop", "error", "refuse"]
    match: str = Field("", max_length=200, description="fires on messages starting with this (case-blind); empty: any")
    after: int = Field(0, ge=0, le=10**9, description="let this many matching messages through first")
    count: int = Field(1, ge=0, le=10**9, description="how many times to fire; 0: for ever")


class SimConfig(_Strict):
    chip_seed: int = Field(1, ge=0, le=MAX_SEED, description="which virtual chip (a numpy seed)")
    phase_offset_sigma: float | None = Field(None, ge=0, le=100)
    coupler_sigma: float | None = Field(None, ge=0, le=1)
    crosstalk_mean: float | None = Field(None, ge=0, le=1)
    drift_kelvin_per_hour: float | None = Field(None, ge=-1e4, le=1e4)
    error_model: Literal["labsat", "paper"] | None = Field(
        None, description="the mesh chip's fabrication errors: labsat's model or the SAT paper's (issue 12)")
    phase_error_sigma: float | None = Field(None, ge=0, le=100,
                                            description="paper model: phase error on every θ, φ (rad)")
    bs_error_sigma: float | None = Field(None, ge=0, le=100,
                                         description="paper model: beam-splitter error e of every coupler")
    timing: SimTiming = SimTiming()
    faults: list[SimFault] = Field([], max_length=256)


class StationSection(_Strict):
    name: str = Field("labsat station", max_length=200)
    backend: Literal["sim", "real"] = "sim"
    calibration_dir: str = Field("calibration/data", min_length=1, max_length=4096)
    runs_dir: str = Field("runs", min_length=1, max_length=4096)
    sim: SimConfig = SimConfig()


class PluginLayerConfig(LayerBase):
    """A layer of a kind written outside labsat: ``kind: package.module:KIND`` (or the name of a
    ``labsat.kinds`` entry point). Its other keys are the kind's own settings, validated by the kind's
    ``config_model`` when the station resolves the kind (:func:`labsat.kinds.kind_of`), before anything
    is started; this file does not import the kind (the configuration sits below every kind)."""

    model_config = ConfigDict(extra="allow")
    kind: str = Field(pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$|^[A-Za-z_][\w.-]*$", max_length=200)

    def roles(self):
        settings = self.__dict__.get("_settings")
        return settings.roles() if settings is not None and hasattr(settings, "roles") else {}


_BUILTIN_LAYER_KINDS = ("mzi_mesh", "microring_bank", "pulse_shg", "freespace")


def _layer_tag(value) -> str:
    """The union member for a layer: its built-in kind, or 'plugin' for ``module:ATTR`` and the names of
    installed ``labsat.kinds`` entry points (names only: nothing is imported here)."""
    kind = value.get("kind") if isinstance(value, dict) else getattr(value, "kind", None)
    if not isinstance(kind, str) or kind in _BUILTIN_LAYER_KINDS:
        return kind
    if ":" in kind:
        return "plugin"
    from importlib.metadata import entry_points

    return "plugin" if kind in {ep.name for ep in entry_points(group="labsat.kinds")} else kind


# Add a physical network kind: a LayerBase subclass with `kind: Literal[...]`, then list it here (and in
# _BUILTIN_LAYER_KINDS). A lab's own kind needs no entry: `kind: package.module:KIND` (PluginLayerConfig).
LayerConfig = Annotated[Union[Annotated[MeshLayerConfig, Tag("mzi_mesh")],
                              Annotated[MicroringLayerConfig, Tag("microring_bank")],
                              Annotated[PulseLayerConfig, Tag("pulse_shg")],
                              Annotated[FreeSpaceLayerConfig, Tag("freespace")],
                              Annotated[PluginLayerConfig, Tag("plugin")]],
                        Discriminator(_layer_tag)]


class StationConfig(_Strict):
    station: StationSection = StationSection()
    # may be empty only for layers of a lab's own kind that use no instrument (checked below)
    instruments: dict[Annotated[str, Field(min_length=1, max_length=200)], InstrumentConfig] = Field(
        max_length=256)
    layers: dict[Annotated[str, Field(min_length=1, max_length=200)], LayerConfig] = Field(min_length=1, max_length=64)
    source: Path | None = Field(None, exclude=True)

    @model_validator(mode="after")
    def _cross_references(self):
        if not self.instruments:  # a built-in kind always drives instruments; a plugin kind may not (a callable)
            builtin = [n for n, layer in self.layers.items() if not isinstance(layer, PluginLayerConfig)]
            if builtin:
                raise ValueError(f"instruments: needs at least 1 entry, got 0 (layer '{builtin[0]}' is a "
                                 f"{self.layers[builtin[0]].kind})")
        if self.station.backend == "real":  # what a real bench needs, known before anything is opened
            for name, inst in self.instruments.items():
                if inst.address == "auto":
                    raise ValueError(f"instruments.{name}.address: 'auto' only works with backend: sim; give the "
                                     "instrument's port, serial URL or VISA resource")
            for name, layer in self.layers.items():
                if not layer.device:
                    raise ValueError(f"layers.{name}.device: name the chip (backend: real) so its calibrations "
                                     "can be filed")
        for name, layer in self.layers.items():
            layer.check_references(name, self.instruments)
        for k, fault in enumerate(self.station.sim.faults):
            if fault.instrument not in self.instruments:
                raise ValueError(f"station.sim.faults.{k}.instrument: no instrument named '{fault.instrument}' "
                                 f"(have: {', '.join(self.instruments)})")
        return self

    def resolve(self, relative: str) -> Path:
        """A path from the file, relative to the file's folder."""
        p = Path(relative)
        if p.is_absolute() or self.source is None:
            return p
        return self.source.parent / p


def with_chip_seed(config: StationConfig, chip_seed: int) -> StationConfig:
    """A copy of ``config`` on virtual chip ``chip_seed`` (the ``--chip-seed`` option), checked like the file's
    ``station.sim.chip_seed``."""
    if isinstance(chip_seed, bool) or not isinstance(chip_seed, int) or not 0 <= chip_seed <= MAX_SEED:
        raise ConfigError(f"--chip-seed: {chip_seed!r} is not a chip seed (an integer 0..{MAX_SEED})")
    config = config.model_copy(deep=True)
    config.station.sim.chip_seed = chip_seed
    return config


def _key_path(loc: tuple, data) -> str:
    """Dotted key of an error location, without pydantic's union tags (the ``kind`` values)."""
    parts, node = [], data
    for item in loc:
        if isinstance(node, dict) and item not in node and node.get("kind") == item:
            continue  # discriminated-union tag, not a key of the file
        parts.append(str(item))
        node = node.get(item) if isinstance(node, dict) else (
            node[item] if isinstance(node, list) and isinstance(item, int) and item < len(node) else None)
    return ".".join(parts)


_BOUNDS = ("less_than_equal", "less_than", "greater_than", "greater_than_equal")
_FULL_SCALE_KEYS = {("limits", "v_max"), ("limits", "v_min"), ("limits", "i_max_ma"), ("limits", "power_max_mw")}


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _message(err: dict) -> str:
    """pydantic's message, with the offending value for range and finiteness errors."""
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] in _BOUNDS:
        if tuple(err["loc"][-2:]) in _FULL_SCALE_KEYS:
            msg += " (the instrument's full scale)"
        return f"{msg}, got {_short(err.get('input'))}"
    if err["type"] == "finite_number":
        return f"{_short(err.get('input'))} is not a finite number"
    ctx = err.get("ctx") if isinstance(err.get("ctx"), dict) else {}
    if err["type"] == "too_short" and "min_length" in ctx and isinstance(err.get("input"), (dict, list)):
        n = ctx["min_length"]
        return f"needs at least {n} entr{'y' if n == 1 else 'ies'}, got {ctx.get('actual_length', 0)}"
    if err["type"] == "too_long" and "max_length" in ctx and isinstance(err.get("input"), (dict, list)):
        return f"at most {ctx['max_length']} entries, got {ctx.get('actual_length', '?')}"
    return msg


_KEYED = re.compile(r"^([A-Za-z_][\w]*(?:\.[\w-]+)*): ")


def _format_error(exc: ValidationError, source: str, data) -> str:
    lines = [f"{source}: invalid configuration"]
    for err in exc.errors():
        key = _key_path(err["loc"], data)
        msg = _message(err)
        m = _KEYED.match(msg)
        if key and m and not m.group(1).startswith(("layers.", "instruments.", "station.")):
            key, msg = f"{key}.{m.group(1)}", msg[m.end():]  # a model check naming a field of its own
        lines.append(f"  {key}: {msg}" if key else f"  {msg}")
    return "\n".join(lines)


def parse_config(data, source: str = "instruments.yaml") -> StationConfig:
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping with 'instruments' and 'layers', got {type(data).__name__}")
    try:
        return StationConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_error(exc, source, data)) from None


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, except that a key given twice in one mapping is an error (PyYAML would
    silently keep the last, e.g. the looser of two ``v_max`` limits)."""


def _unique_mapping(loader, node, deep=False):
    seen: dict = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        try:
            first = seen.setdefault(key, key_node.start_mark.line)
        except TypeError:  # unhashable key: the base constructor reports it
            break
        if first != key_node.start_mark.line:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key '{key}' (first given at line {first + 1})", key_node.start_mark)
    return loader.construct_mapping(node, deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _unique_mapping)


def load_config(path: str | Path) -> StationConfig:
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not a text (UTF-8) file: {exc.reason} at byte {exc.start}") from None
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{path}: malformed YAML{where}: {getattr(exc, 'problem', exc)}") from None
    cfg = parse_config(data, str(path))
    cfg.source = path.resolve()
    return cfg
