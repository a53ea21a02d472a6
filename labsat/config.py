"""instruments.yaml: the station description, validated with messages that name the offending key."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator


class ConfigError(ValueError):
    """instruments.yaml (or another config file) is malformed; the message names the key."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _parse_channels(value) -> list[int]:
    """``[0, 1, 2]``, ``"0-55"`` or ``"0-3,8,10-11"`` into a list of channel numbers."""
    if isinstance(value, str):
        out: list[int] = []
        for part in value.split(","):
            part = part.strip()
            if "-" in part:
                lo, hi = part.split("-", 1)
                out.extend(range(int(lo), int(hi) + 1))
            elif part:
                out.append(int(part))
        return out
    return list(value)


class HeaterLimits(_Strict):
    v_max: float = Field(gt=0, description="per-channel maximum voltage (V)")
    i_max_ma: float = Field(24.0, gt=0)
    resistance_ohm: float = Field(gt=0, description="heater resistance, for current and power limits")
    power_max_mw: float | None = Field(None, gt=0)
    total_power_max_w: float | None = Field(None, gt=0)


class Ramp(_Strict):
    max_step_v: float = Field(1.0, gt=0)
    step_delay_s: float = Field(0.0, ge=0)


class HeaterDACConfig(_Strict):
    kind: Literal["heater_dac"]
    address: str = "auto"
    channels: int = Field(gt=0, le=1024)
    timeout_s: float = Field(2.0, gt=0)
    limits: HeaterLimits
    ramp: Ramp = Ramp()


class ModulatorLimits(_Strict):
    v_max: float = Field(gt=0)


class ModulatorConfig(_Strict):
    kind: Literal["modulator_dac"]
    address: str = "auto"
    channels: int = Field(gt=0, le=1024)
    timeout_s: float = Field(2.0, gt=0)
    limits: ModulatorLimits


class DAQConfig(_Strict):
    kind: Literal["photodetector_daq"]
    address: str = "auto"
    channels: int = Field(gt=0, le=1024)
    timeout_s: float = Field(2.0, gt=0)
    range_w: float = Field(1e-3, gt=0)


class SMULimits(_Strict):
    v_max: float = Field(gt=0, le=210, description="highest source voltage (V)")
    v_min: float = Field(0.0, ge=-210, description="lowest source voltage (V)")
    i_max_ma: float = Field(gt=0, le=1050, description="current compliance, set in the instrument (mA)")
    resistance_ohm: float | None = Field(None, gt=0, description="heater resistance, for current and power limits")
    power_max_mw: float | None = Field(None, gt=0)


class SMUConfig(_Strict):
    """A Keithley 2400-style source-measure unit driving one heater (drivers/smu.py)."""

    kind: Literal["smu"]
    address: str = "auto"
    channels: Literal[1] = 1
    timeout_s: float = Field(2.0, gt=0)
    limits: SMULimits
    ramp: Ramp = Ramp(max_step_v=0.5)
    sim_heater: int | None = Field(None, ge=0, description="virtual lab: the chip heater it is wired to")


class PowerMeterConfig(_Strict):
    """A Thorlabs PM100-style optical power meter (drivers/power_meter.py)."""

    kind: Literal["power_meter"]
    address: str = "auto"
    channels: Literal[1] = 1
    timeout_s: float = Field(2.0, gt=0)
    wavelength_nm: float = Field(1550.0, gt=0)
    averages: int = Field(1, ge=1, le=10000)
    range_w: float | None = Field(None, gt=0, description="manual range (W); auto range when absent")
    sim_port: int = Field(0, ge=0, description="virtual lab: the chip output port it reads")


class PulseShaperConfig(_Strict):
    """A WaveShaper-style programmable spectral filter over HTTP (drivers/pulse_shaper.py)."""

    kind: Literal["pulse_shaper"]
    address: str = "auto"  # real: http://192.0.2.20
    channels: Literal[1] = 1
    timeout_s: float = Field(5.0, gt=0)
    attn_max_db: float = Field(40.0, gt=0, le=40)
    safe_state: Literal["block", "transmit"] = "block"
    safe_port: int = Field(1, ge=1)


# Add an instrument kind: a config class with `kind: Literal[...]`, then list it here.
InstrumentConfig = Annotated[Union[HeaterDACConfig, ModulatorConfig, DAQConfig, SMUConfig, PowerMeterConfig,
                                   PulseShaperConfig], Field(discriminator="kind")]


class ChannelMap(_Strict):
    instrument: str
    channels: list[int]

    @field_validator("channels", mode="before")
    @classmethod
    def _channels(cls, v):
        try:
            return _parse_channels(v)
        except (TypeError, ValueError):
            raise ValueError("channels must be a list of integers or a range string like '0-55'")


class LayerBase(_Strict):
    """What every physical layer config offers the station: the instruments it uses, and a check of
    its references against the instruments section (raise ValueError naming the dotted key)."""

    device: str | None = Field(None, description="the device's name; calibrations are filed under it")

    def roles(self) -> dict[str, tuple[ChannelMap, str]]:
        """role -> (channel map, instrument kind it needs)."""
        raise NotImplementedError

    def instrument_names(self) -> list[str]:
        return [cmap.instrument for cmap, _ in self.roles().values()]

    def check_references(self, name: str, instruments: dict) -> None:
        for role, (cmap, kind) in self.roles().items():
            key = f"layers.{name}.{role}"
            inst = instruments.get(cmap.instrument)
            if inst is None:
                raise ValueError(f"{key}.instrument: no instrument named '{cmap.instrument}' "
                                 f"(have: {', '.join(instruments)})")
            if inst.kind != kind:
                raise ValueError(f"{key}.instrument: '{cmap.instrument}' is a {inst.kind}, {role} need a {kind}")
            channels = getattr(inst, "channels", None)
            bad = [c for c in cmap.channels if channels is not None and not 0 <= c < channels]
            if bad:
                raise ValueError(f"{key}.channels: channel {bad[0]} does not exist on "
                                 f"'{cmap.instrument}' (0..{channels - 1})")
            if len(set(cmap.channels)) != len(cmap.channels):
                raise ValueError(f"{key}.channels: a channel is listed twice")


class MeshLayerConfig(LayerBase):
    kind: Literal["mzi_mesh"]
    modes: int = Field(ge=2, le=64)
    heaters: ChannelMap
    inputs: ChannelMap
    outputs: ChannelMap
    v_max: float = Field(gt=0, description="heater control range (V); must not exceed the heater limit")
    v2pi: float = Field(gt=0, description="nominal heater voltage for a 2 pi phase shift")
    modulator_vpi: float = Field(gt=0)
    laser_power_w: float = Field(gt=0)

    def roles(self):
        return {"heaters": (self.heaters, "heater_dac"), "inputs": (self.inputs, "modulator_dac"),
                "outputs": (self.outputs, "photodetector_daq")}

    def check_references(self, name: str, instruments: dict) -> None:
        super().check_references(name, instruments)
        heater = instruments[self.heaters.instrument]
        if self.v_max > heater.limits.v_max:
            raise ValueError(f"layers.{name}.v_max: {self.v_max} V exceeds "
                             f"instruments.{self.heaters.instrument}.limits.v_max ({heater.limits.v_max} V)")
        mod = instruments[self.inputs.instrument]
        if self.modulator_vpi > mod.limits.v_max:
            raise ValueError(f"layers.{name}.modulator_vpi: {self.modulator_vpi} V exceeds "
                             f"instruments.{self.inputs.instrument}.limits.v_max")

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


class SimTiming(_Strict):
    """Modelled instrument time in the virtual lab (drivers/sim/faults.py); zero by default."""

    query_latency_s: float = Field(0.0, ge=0, description="round trip of each answered message")
    command_latency_s: float = Field(0.0, ge=0, description="each message not answered")
    serial_baud: int = Field(0, ge=0, description="serial instruments' line rate; 0: infinitely fast")
    settling_s: float | None = Field(None, ge=0, description="thermal settling after a heater change")
    sample_s: float | None = Field(None, ge=0, description="integration time per acquired sample")
    realtime: bool = Field(False, description="sleep the modelled time, so wall clock includes it")


class SimFault(_Strict):
    """A fault the virtual lab injects into one instrument's protocol (drivers/sim/faults.py)."""

    instrument: str
    kind: Literal["timeout", "garbled", "drop", "error", "refuse"]
    match: str = Field("", description="fires on messages starting with this (case-blind); empty: any")
    after: int = Field(0, ge=0, description="let this many matching messages through first")
    count: int = Field(1, ge=0, description="how many times to fire; 0: for ever")


class SimConfig(_Strict):
    chip_seed: int = 1
    phase_offset_sigma: float | None = Field(None, ge=0)
    coupler_sigma: float | None = Field(None, ge=0)
    crosstalk_mean: float | None = Field(None, ge=0)
    drift_kelvin_per_hour: float | None = None
    timing: SimTiming = SimTiming()
    faults: list[SimFault] = []


class StationSection(_Strict):
    name: str = "labsat station"
    backend: Literal["sim", "real"] = "sim"
    calibration_dir: str = "calibration/data"
    runs_dir: str = "runs"
    sim: SimConfig = SimConfig()


# Add a physical network kind: a LayerBase subclass with `kind: Literal[...]`, then list it here.
LayerConfig = MeshLayerConfig  # becomes Annotated[Union[...], Field(discriminator="kind")] with a 2nd kind


class StationConfig(_Strict):
    station: StationSection = StationSection()
    instruments: dict[str, InstrumentConfig]
    layers: dict[str, LayerConfig]
    source: Path | None = Field(None, exclude=True)

    @model_validator(mode="after")
    def _cross_references(self):
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


def _format_error(exc: ValidationError, source: str, data) -> str:
    lines = [f"{source}: invalid configuration"]
    for err in exc.errors():
        key = _key_path(err["loc"], data)
        msg = err["msg"].removeprefix("Value error, ")
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
