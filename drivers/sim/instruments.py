"""More simulated instruments on the same virtual chip: a Keithley 2400-style SMU wired to one heater,
and a Thorlabs PM100-style power meter on one output port. Both speak SCPI over a loopback socket.

:func:`serve` starts one on a :class:`~labsat.drivers.sim.servers.VirtualLab` and returns the VISA
address (``TCPIP0::127.0.0.1::<port>::SOCKET``); ``start_smu``, ``start_power_meter`` and
``start_pulse_shaper`` are the counterparts drivers/registry.py names for ``VirtualLab.serve``.
"""
from __future__ import annotations


import numpy as np

from .scpi import _LONG, UNDEFINED, SimScpiInstrument, normalise  # noqa: F401 (normalise: public here too)
from .wire import InstrumentServer

class HeaterWiring:
    """Which chip heaters are wired to an SMU instead of the heater DAC.

    Installed once per chip: the chip's ``set_heaters`` (called by the DAC with every channel) then
    keeps the SMU-driven heaters at the SMU's terminal voltage.
    """

    def __init__(self, chip):
        self.chip = chip
        self.levels: dict[int, float] = {}
        self._set = chip.set_heaters
        chip.set_heaters = self.set_heaters
        chip.heater_wiring = self

    @classmethod
    def of(cls, chip) -> "HeaterWiring":
        return getattr(chip, "heater_wiring", None) or cls(chip)

    def set_heaters(self, volts) -> None:
        v = np.asarray(volts, dtype=float).copy()
        for k, level in self.levels.items():
            v[k] = level
        self._set(v)

    def drive(self, heater: int, volts: float) -> None:
        self.levels[heater] = float(volts)
        self.set_heaters(self.chip.heater_v)


class SimSourceMeter(SimScpiInstrument):
    """Keithley 2400-style SMU sourcing voltage into one heater (resistance from the chip)."""

    FULL_SCALE_V, FULL_SCALE_A = 210.0, 1.05
    ELEMENTS = ("VOLT", "CURR", "RES", "TIME", "STAT")

    def __init__(self, chip, heater: int | None = None, load_ohm: float | None = None,
                 seconds_per_reading: float = 1e-3, serial: str = "SIM0001"):
        super().__init__()
        self.chip, self.heater, self.serial = chip, heater, serial
        self.load_ohm = float(load_ohm or chip.spec.heater_resistance_ohm)
        self.seconds_per_reading = seconds_per_reading
        if heater is not None:
            if not 0 <= heater < len(chip.heater_v):
                raise ValueError(f"SMU wired to heater {heater}: the chip has {len(chip.heater_v)}")
            self.wiring = HeaterWiring.of(chip)
        self.reset()

    def reset(self) -> None:
        self.func, self.level, self.compliance = "VOLT", 0.0, 1.05e-4
        self.output_on = False
        self.elements = list(self.ELEMENTS)
        self._apply()

    # terminal state
    def terminals(self) -> tuple[float, float, bool]:
        """(volts, amps, in compliance) at the output."""
        if not self.output_on:
            return 0.0, 0.0, False
        i = self.level / self.load_ohm
        if abs(i) > self.compliance:
            i = float(np.sign(i)) * self.compliance
            return i * self.load_ohm, i, True
        return self.level, i, False

    def _apply(self) -> None:
        if self.heater is not None:
            self.wiring.drive(self.heater, self.terminals()[0])

    def _reading(self) -> str:
        v, i, tripped = self.terminals()
        with self.chip._lock:
            self.chip.virtual_time_s += self.seconds_per_reading
        values = {"VOLT": v, "CURR": i, "RES": v / i if i else 9.91e37,
                  "TIME": self.chip.virtual_time_s, "STAT": 0x8 if tripped else 0}
        return ",".join(f"{values[e]:.6E}" for e in self.elements)

    def identity(self) -> str:
        return f"KEITHLEY INSTRUMENTS INC.,MODEL 2400,{self.serial},C32 (labsat sim)"

    def answer(self, head: str, arg: str, block: bytes | None):
        if head == "*RST":
            self.reset()
            return None
        if head == "SOUR:FUNC":
            mode = arg.upper().strip('"')
            if mode.startswith("VOLT"):
                self.func = "VOLT"
            elif mode.startswith("CURR"):
                self.errors.push(-221, "Settings conflict: this heater SMU sources voltage only")
            else:
                self.errors.push(-224, "Illegal parameter value")
            return None
        if head == "SOUR:FUNC?":
            return self.func
        if head == "SOUR:VOLT" or head == "SOUR:VOLT:LEV" or head == "SOUR:VOLT:LEV:IMM":
            value = self.number(arg, -self.FULL_SCALE_V, self.FULL_SCALE_V)
            if value is None:
                return None
            self.level = value
            self._apply()
            return None
        if head in ("SOUR:VOLT?", "SOUR:VOLT:LEV?", "SOUR:VOLT:LEV:IMM?"):
            return f"{self.level:.6E}"
        if head == "SENS:CURR:PROT":
            value = self.number(arg, 0.0, self.FULL_SCALE_A)
            if value is None:
                return None
            if not 0 < value:
                self.errors.push(-222, "Data out of range")
                return None
            self.compliance = value
            self._apply()
            return None
        if head == "SENS:CURR:PROT?":
            return f"{self.compliance:.6E}"
        if head == "SENS:CURR:PROT:TRIP?":
            return "1" if self.terminals()[2] else "0"
        if head == "FORM:ELEM":
            elems = [e.strip().upper() for e in arg.split(",") if e.strip()]
            elems = [_LONG.get(e, e) for e in elems]
            if not elems or any(e not in self.ELEMENTS for e in elems):
                self.errors.push(-224, "Illegal parameter value")
                return None
            self.elements = elems
            return None
        if head == "OUTP":
            state = arg.upper()
            if state in ("ON", "1"):
                self.output_on = True
            elif state in ("OFF", "0"):
                self.output_on = False
            else:
                self.errors.push(-224, "Illegal parameter value")
                return None
            self._apply()
            return None
        if head == "OUTP?":
            return "1" if self.output_on else "0"
        if head in ("READ?", "MEAS:CURR?", "MEAS?", "MEAS:VOLT?"):
            if not self.output_on:
                self.errors.push(-221, "Settings conflict: output off")  # auto-on disabled
                return None
            return self._reading()
        return UNDEFINED


class SimPowerMeter(SimScpiInstrument):
    """Thorlabs PM100-style optical power meter on one output port of the chip.

    The meter reports ``P * R(1550 nm) / R(set wavelength)``: set to a wrong wavelength it converts
    photocurrent with the wrong responsivity, like the real one. Averaging ``n`` readings takes
    ``n * seconds_per_average`` and divides the noise by ``sqrt(n)``.
    """

    LASER_NM = 1550.0
    WAV_MIN_NM, WAV_MAX_NM = 800.0, 1700.0  # an InGaAs sensor head (e.g. S155C)
    RANGES_W = tuple(10.0 ** k for k in range(-9, 0))
    OVERRANGE = 9.9e37

    def __init__(self, chip, port: int = 0, seconds_per_average: float = 3e-4,
                 serial: str = "P2000001", seed: int = 0):
        if not 0 <= port < chip.spec.modes:
            raise ValueError(f"power meter on port {port}: the chip has {chip.spec.modes}")
        super().__init__()
        self.chip, self.port, self.serial = chip, port, serial
        self.seconds_per_average = seconds_per_average
        self._rng = np.random.default_rng(seed + 7919)
        self.reset()

    def reset(self) -> None:
        self.wavelength_nm, self.averages, self.auto_range, self.range_w = 1550.0, 1, True, 1e-3
        self.last: float | None = None

    @staticmethod
    def responsivity(nm: float) -> float:  # A/W of an idealised InGaAs photodiode below its cut-off
        return 0.8 * nm / 1550.0

    def _measure(self) -> float:
        with self.chip._lock:
            p = float(self.chip.output_powers(self.chip.modulator_v[None], noisy=False)[0][self.port])
            self.chip.virtual_time_s += self.averages * self.seconds_per_average
        p *= self.responsivity(self.LASER_NM) / self.responsivity(self.wavelength_nm)
        if self.auto_range:
            self.range_w = next((r for r in self.RANGES_W if r >= p), self.RANGES_W[-1])
        if p > 1.1 * self.range_w:
            return self.OVERRANGE
        noise = self.chip.spec.noise_rel * self.range_w / np.sqrt(self.averages)
        return max(0.0, p + self._rng.normal(0.0, noise))

    def identity(self) -> str:
        return f"Thorlabs,PM100USB,{self.serial},1.6.0 (labsat sim)"

    def answer(self, head: str, arg: str, block: bytes | None):
        if head == "*RST":
            self.reset()
            return None
        if head == "SENS:CORR:WAV":
            v = self.number(arg, self.WAV_MIN_NM, self.WAV_MAX_NM)
            if v is not None:
                self.wavelength_nm = v
            return None
        if head == "SENS:CORR:WAV?":
            word = arg.upper()
            value = {"MIN": self.WAV_MIN_NM, "MAX": self.WAV_MAX_NM}.get(word[:3], self.wavelength_nm)
            return f"{value:.6g}"
        if head.startswith("SENS:AVER:COUN"):
            return self.answer_averaging(head, arg)
        if head == "SENS:POW:RANG:AUTO":
            word = arg.upper()
            if word in ("1", "ON"):
                self.auto_range = True
            elif word in ("0", "OFF"):
                self.auto_range = False
            else:
                self.errors.push(-224, "Illegal parameter value")
            return None
        if head == "SENS:POW:RANG:AUTO?":
            return "1" if self.auto_range else "0"
        if head in ("SENS:POW:RANG", "SENS:POW:RANG:UPP"):
            v = self.number(arg, self.RANGES_W[0], self.RANGES_W[-1])
            if v is not None:
                self.auto_range = False
                self.range_w = next((r for r in self.RANGES_W if r >= v * (1 - 1e-9)), self.RANGES_W[-1])
            return None
        if head in ("SENS:POW:RANG?", "SENS:POW:RANG:UPP?"):
            return f"{self.range_w:.6E}"
        if head in ("CONF:POW", "CONF"):
            return None
        if head in ("INIT", "INIT:IMM"):
            self.last = self._measure()
            return None
        if head == "FETC?":
            if self.last is None:
                self.errors.push(-230, "Data corrupt or stale")
                return None
            return f"{self.last:.6E}"
        if head in ("MEAS:POW?", "MEAS?", "READ?"):
            self.last = self._measure()
            return f"{self.last:.6E}"
        return UNDEFINED


def _start(lab, name: str, kind: str, heater: int | None = None, port: int = 0, **options):
    """``(instrument, server, address)`` of a simulated ``smu`` / ``power_meter`` / ``pulse_shaper``."""
    chip = lab.chip
    if kind == "smu":
        inst = SimSourceMeter(chip, heater=heater, serial=f"SIM{abs(hash(name)) % 10000:04d}", **options)
    elif kind == "power_meter":
        inst = SimPowerMeter(chip, port=port, seed=getattr(chip, "seed", 0), **options)
    elif kind == "pulse_shaper":
        from .waveshaper import WaveShaperServer

        server = WaveShaperServer(name=name, **options)
        return server.device, server, server.url
    else:
        raise ValueError(f"no simulated instrument of kind {kind!r}")
    server = InstrumentServer(inst)
    return inst, server, f"TCPIP0::127.0.0.1::{server.port}::SOCKET"


def serve(lab, name: str, kind: str, heater: int | None = None, port: int = 0, **options) -> str:
    """Start a simulated ``smu`` / ``power_meter`` / ``pulse_shaper`` on ``lab``; return its address."""
    inst, server, address = _start(lab, name, kind, heater=heater, port=port, **options)
    lab.servers[name], lab.instruments[name] = server, inst
    return address


# the start functions that drivers/registry.py names for these kinds (``simulated="instruments:..."``)
def start_smu(lab, name: str, cfg, scene):
    return _start(lab, name, "smu", heater=getattr(cfg, "sim_heater", None))


def start_power_meter(lab, name: str, cfg, scene):
    return _start(lab, name, "power_meter", port=getattr(cfg, "sim_port", 0))


def start_pulse_shaper(lab, name: str, cfg, scene):
    return _start(lab, name, "pulse_shaper")
