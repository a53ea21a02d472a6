"""Virtual free-space bench: an input SLM (amplitude), a phase SLM showing the trainable masks, and a
camera, sharing one optical scene (the hidden truth of this kind).

Optics (batched numpy): the input image (amplitude) in the first plane, angular-spectrum propagation
over ``distance`` to the first mask, multiplication by the mask's transmission, ... , propagation to the
camera, which records intensity. The propagation grid is the mask grid padded ``padding`` times.

Hidden truth drawn from a seed (the twin only learns it through calibration):

- misalignment of the masks relative to the optical axis: rotation (degrees), x/y shift (pixels),
  scale (magnification), applied to each mask's complex transmission about the mask's centre
  (outside the displayed area the SLM is flat: transmission 1);
- pixel crosstalk (fringing field): the phase each pixel shows leaks into its four neighbours with a
  fraction ``crosstalk`` (``phi_eff = (1 - 4c) phi + c * sum of neighbours``, edges replicated);
- camera: counts = intensity x exposure x ``counts_per_unit``, shot and read noise, 16-bit
  quantisation and saturation.

The instruments (:class:`SimSLM`, :class:`SimCamera`) speak SCPI over a loopback socket with IEEE 488.2
binary blocks for frames (see ``drivers/slm.py`` and ``drivers/camera.py``).
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, replace

import numpy as np

from .scpi import UNDEFINED, SimScpiInstrument
from .wire import InstrumentServer


# --- optics, shared by the scene (and mirrored in torch by labsat.twins.freespace) ---
def angular_spectrum_kernel(n: int, pitch_m: float, wavelength_m: float, distance_m: float) -> np.ndarray:
    """Transfer function exp(i kz d) of free space on an n x n periodic grid (evanescent waves dropped)."""
    f = np.fft.fftfreq(n, d=pitch_m)
    fx, fy = np.meshgrid(f, f, indexing="xy")
    arg = 1.0 / wavelength_m**2 - fx**2 - fy**2
    kz = 2 * np.pi * np.sqrt(np.maximum(arg, 0.0))
    return np.where(arg > 0, np.exp(1j * kz * distance_m), 0.0)


def propagate(field: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Angular-spectrum propagation of a batch of fields (..., n, n)."""
    return np.fft.ifft2(np.fft.fft2(field) * kernel)


def crosstalk_blur(phase: np.ndarray, c: float) -> np.ndarray:
    """Nearest-neighbour phase crosstalk (fringing) of (..., n, n) phase maps, edges replicated."""
    if c == 0:
        return phase
    p = np.pad(phase, [(0, 0)] * (phase.ndim - 2) + [(1, 1), (1, 1)], mode="edge")
    nb = p[..., :-2, 1:-1] + p[..., 2:, 1:-1] + p[..., 1:-1, :-2] + p[..., 1:-1, 2:]
    return (1 - 4 * c) * phase + c * nb


def misalign(t: np.ndarray, rotation_deg: float, shift_x: float, shift_y: float, scale: float) -> np.ndarray:
    """The transmission ``t`` (n, n) as the beam sees it: rotated, shifted and scaled about its centre,
    bilinear interpolation, flat (1) outside. Output pixel p shows the SLM pixel at
    ``c + R(-theta) (p - c - shift) / scale``."""
    from scipy.ndimage import map_coordinates

    n = t.shape[-1]
    c = (n - 1) / 2
    yy, xx = np.meshgrid(np.arange(n, dtype=float), np.arange(n, dtype=float), indexing="ij")
    th = np.deg2rad(rotation_deg)
    dx, dy = (xx - c - shift_x) / scale, (yy - c - shift_y) / scale
    sx = c + np.cos(th) * dx + np.sin(th) * dy
    sy = c - np.sin(th) * dx + np.cos(th) * dy
    coords = np.stack([sy, sx])
    d = t - 1.0
    re = map_coordinates(d.real, coords, order=1, mode="grid-constant", cval=0.0)
    im = map_coordinates(d.imag, coords, order=1, mode="grid-constant", cval=0.0)
    return 1.0 + re + 1j * im


@dataclass
class FreeSpaceSpec:
    grid: int = 32  # mask size (SLM pixels, square); input image region of the same size
    masks: int = 2
    pitch_um: float = 8.0
    wavelength_nm: float = 532.0
    distance_mm: float = 1.0  # each gap: input -> mask 1 -> ... -> camera
    padding: int = 2
    camera_shape: tuple[int, int] = (32, 32)  # (height, width), centred on the optical axis
    counts_per_unit: float = 100.0  # camera counts per unit intensity per microsecond of exposure
    read_noise_counts: float = 2.0
    shot_noise: bool = True
    # hidden-truth scale of the seeded draws
    rotation_sigma_deg: float = 0.5
    shift_sigma_px: float = 0.4
    scale_sigma: float = 0.015
    crosstalk_range: tuple[float, float] = (0.02, 0.08)


@dataclass
class FreeSpaceTruth:
    rotation_deg: float = 0.0
    shift_x_px: float = 0.0
    shift_y_px: float = 0.0
    scale: float = 1.0
    crosstalk: float = 0.0

    @classmethod
    def draw(cls, spec: FreeSpaceSpec, seed: int) -> "FreeSpaceTruth":
        rng = np.random.default_rng([seed, 0xF5])
        return cls(rotation_deg=float(rng.normal(0, spec.rotation_sigma_deg)),
                   shift_x_px=float(rng.normal(0, spec.shift_sigma_px)),
                   shift_y_px=float(rng.normal(0, spec.shift_sigma_px)),
                   scale=float(1 + abs(rng.normal(0, spec.scale_sigma))),
                   crosstalk=float(rng.uniform(*spec.crosstalk_range)))


class FreeSpaceScene:
    """The optical bench: what the input SLM shows, what the mask SLM shows, what the camera sees."""

    def __init__(self, spec: FreeSpaceSpec | None = None, seed: int = 0, truth: FreeSpaceTruth | None = None):
        self.spec = spec or FreeSpaceSpec()
        self.seed = seed
        self.truth = truth or FreeSpaceTruth.draw(self.spec, seed)
        self._rng = np.random.default_rng([seed, 0xCA])
        self._lock = threading.RLock()
        self.virtual_time_s = 0.0
        s = self.spec
        self.P = s.grid * s.padding
        hc, wc = s.camera_shape
        if hc > self.P or wc > self.P or (self.P - hc) % 2 or (self.P - wc) % 2:
            raise ValueError(f"camera {wc}x{hc} must fit the {self.P}-pixel propagation grid, centred")
        self.kernel = angular_spectrum_kernel(self.P, s.pitch_um * 1e-6, s.wavelength_nm * 1e-9, s.distance_mm * 1e-3)
        self.mask_phase = np.zeros((s.masks, s.grid, s.grid))  # displayed phases (rad)
        self.exposure_us = 10.0
        self.frames_computed = 0
        self._transmissions = None

    def set_truth(self, **changes) -> None:
        """Change the hidden truth (experiments and tests only: e.g. knock the bench)."""
        with self._lock:
            self.truth = replace(self.truth, **changes)
            self._transmissions = None

    def set_masks(self, phases: np.ndarray) -> None:
        with self._lock:
            self.mask_phase = np.asarray(phases, dtype=float).reshape(self.spec.masks, self.spec.grid, self.spec.grid)
            self._transmissions = None

    def transmissions(self) -> np.ndarray:
        """Each mask's transmission as the beam sees it, on the padded grid (masks, P, P)."""
        if self._transmissions is None:
            s, t = self.spec, self.truth
            phase = crosstalk_blur(self.mask_phase, t.crosstalk)
            out = np.ones((s.masks, self.P, self.P), dtype=complex)
            o = (self.P - s.grid) // 2
            for k in range(s.masks):
                out[k, o:o + s.grid, o:o + s.grid] = misalign(np.exp(1j * phase[k]), t.rotation_deg,
                                                               t.shift_x_px, t.shift_y_px, t.scale)
            self._transmissions = out
        return self._transmissions

    def intensity(self, images: np.ndarray) -> np.ndarray:
        """Noise-free intensity on the camera (B, hc, wc) for input amplitudes (B, grid, grid)."""
        s = self.spec
        with self._lock:
            trans = self.transmissions()
        b = len(images)
        o = (self.P - s.grid) // 2
        field = np.zeros((b, self.P, self.P), dtype=complex)
        field[:, o:o + s.grid, o:o + s.grid] = images
        field = propagate(field, self.kernel)
        for k in range(s.masks):
            field = propagate(field * trans[k], self.kernel)
        hc, wc = s.camera_shape
        oy, ox = (self.P - hc) // 2, (self.P - wc) // 2
        return np.abs(field[:, oy:oy + hc, ox:ox + wc]) ** 2

    def camera_frames(self, images: np.ndarray) -> np.ndarray:
        """What the camera records (B, hc, wc) as uint16 counts."""
        counts = self.intensity(images) * self.exposure_us * self.spec.counts_per_unit
        with self._lock:
            if self.spec.shot_noise:
                counts = counts + self._rng.normal(size=counts.shape) * np.sqrt(np.maximum(counts, 0.0))
            counts = counts + self._rng.normal(0.0, self.spec.read_noise_counts, counts.shape)
            self.frames_computed += len(images)
        return np.clip(np.round(counts), 0, 65535).astype(np.uint16)


# --- binary blocks of any dtype (frames) ---
def array_block(values: np.ndarray, dtype) -> bytes:
    """IEEE 488.2 definite-length block of little-endian ``dtype`` values."""
    body = np.ascontiguousarray(values, dtype=np.dtype(dtype).newbyteorder("<")).tobytes()
    digits = str(len(body))
    return b"#" + str(len(digits)).encode() + digits.encode() + body


def block_array(block: bytes, dtype) -> np.ndarray:
    """The values of a block made by :func:`array_block` (header checked)."""
    if len(block) < 2 or block[:1] != b"#" or not block[1:2].isdigit() or block[1:2] == b"0":
        raise ValueError("bad block header")
    nd = int(block[1:2])
    n = int(block[2:2 + nd])
    body = block[2 + nd:2 + nd + n]
    if len(body) != n or n % np.dtype(dtype).itemsize:
        raise ValueError("bad block length")
    return np.frombuffer(body, dtype=np.dtype(dtype).newbyteorder("<"))


# --- simulated instruments ---
class _ScpiBase(SimScpiInstrument):
    def __init__(self, scene: FreeSpaceScene):
        super().__init__()
        self.scene = scene

    @property
    def chip(self):  # the fault/timing front accounts time on the scene
        return self.scene


class SimSLM(_ScpiBase):
    """Spatial light modulator, 8-bit gray levels. ``role`` ``masks``: the frame's regions
    ``[0:grid, k*grid:(k+1)*grid]`` are the phase masks (gray g -> phase 2 pi g / 256); ``input``: the
    region ``[0:grid, 0:grid]`` of each frame of a played sequence is the input amplitude (g / 255)."""

    def __init__(self, scene: FreeSpaceScene, width: int, height: int, role: str, trigger: "FreeSpaceTrigger",
                 serial: str = "SLM-SIM"):
        super().__init__(scene)
        self.width, self.height, self.role, self.trigger, self.serial = width, height, role, trigger, serial
        self.frame = np.zeros((height, width), dtype=np.uint8)
        self.sequence = np.zeros((0, height, width), dtype=np.uint8)
        self._apply()

    def _apply(self) -> None:
        if self.role != "masks":
            return
        g, m = self.scene.spec.grid, self.scene.spec.masks
        regions = np.stack([self.frame[:g, k * g:(k + 1) * g] for k in range(m)]).astype(float)
        self.scene.set_masks(2 * np.pi * regions / 256.0)

    def _frames(self, block: bytes | None):
        if block is None:
            self.errors.push(-161, "Invalid block data")
            return None
        try:
            v = block_array(block, np.uint8)
        except ValueError:
            self.errors.push(-161, "Invalid block data")
            return None
        if v.size == 0 or v.size % (self.width * self.height):
            self.errors.push(-161, f"Invalid block data: not a whole number of {self.width}x{self.height} frames")
            return None
        return v.reshape(-1, self.height, self.width)

    def identity(self) -> str:
        return f"labsat,SIM-SLM-{self.width}x{self.height},{self.serial},1.0"

    def answer(self, head: str, arg: str, block: bytes | None):
        if head == "*RST" or head == "DISP:CLE":
            self.frame[:] = 0
            self.sequence = self.sequence[:0]
            self._apply()
            return None
        if head == "DISP:SIZE?":
            return f"{self.width},{self.height}"
        if head == "DISP:DATA?":
            return array_block(self.frame, np.uint8)
        if head == "DISP:DATA":
            frames = self._frames(block)
            if frames is None:
                return None
            if len(frames) != 1:
                self.errors.push(-161, "Invalid block data: one frame expected")
                return None
            self.frame = frames[0].copy()
            self._apply()
            return None
        if head == "SEQ:DATA":
            frames = self._frames(block)
            if frames is not None:
                self.sequence = frames.copy()
            return None
        if head == "SEQ:POIN?":
            return str(len(self.sequence))
        if head in ("INIT", "INIT:IMM"):
            if self.role == "input" and len(self.sequence):
                g = self.scene.spec.grid
                self.trigger.fire(self.sequence[:, :g, :g].astype(float) / 255.0)
            return None
        return UNDEFINED


class SimCamera(_ScpiBase):
    """Scientific camera, 16-bit frames; armed for B frames, it records one per input SLM frame."""

    EXPOSURE_US = (1.0, 1e6)

    def __init__(self, scene: FreeSpaceScene, trigger: "FreeSpaceTrigger", serial: str = "CAM-SIM"):
        super().__init__(scene)
        self.serial = serial
        trigger.camera = self

    def receive(self, images: np.ndarray) -> None:
        if self.triggered(len(images)):
            self.data = self.scene.camera_frames(images)

    def identity(self) -> str:
        return f"labsat,SIM-CAM16,{self.serial},1.0"

    def answer(self, head: str, arg: str, block: bytes | None):
        if head == "*RST" or head == "ABOR":
            self.armed, self.data = 0, None
            if head == "*RST":
                self.scene.exposure_us = 10.0
            return None
        if head == "SENS:SIZE?":
            h, w = self.scene.spec.camera_shape
            return f"{w},{h}"
        if head == "EXP?":
            return f"{self.scene.exposure_us:.6g}"
        if head == "EXP":
            value = self.number(arg, *self.EXPOSURE_US)
            if value is not None:
                self.scene.exposure_us = value
            return None
        if head == "ACQ:FRAM":
            return self.arm(arg)
        if head == "FETC:FRAM?":
            data = self.fetch()
            return None if data is None else array_block(data, np.uint16)
        return UNDEFINED


class FreeSpaceTrigger:
    """The trigger cable: the input SLM's played sequence exposes the armed camera once per frame."""

    def __init__(self):
        self.camera: SimCamera | None = None

    def fire(self, images: np.ndarray) -> None:
        if self.camera is not None:
            self.camera.receive(images)


def start(lab, name: str, cfg, scene):
    """The simulated ``slm`` or ``camera`` ``name`` on its free-space ``scene``: ``(instrument, server,
    address)`` (the counterpart drivers/registry.py names for both kinds)."""
    if not isinstance(scene, FreeSpaceScene):
        raise ValueError(f"instruments.{name}: a simulated {cfg.kind} needs a free-space layer that uses it")
    trigger = getattr(scene, "trigger", None)
    if trigger is None:
        trigger = scene.trigger = FreeSpaceTrigger()
    if cfg.kind == "slm":
        role = scene.roles.get(name)
        if role is None:
            raise ValueError(f"instruments.{name}: no free-space layer shows masks or inputs on it")
        inst = SimSLM(scene, cfg.width, cfg.height, role, trigger, serial=f"SLM{lab.seed:04d}{role[0].upper()}")
    elif cfg.kind == "camera":
        h, w = scene.spec.camera_shape
        if (cfg.width, cfg.height) != (w, h):
            raise ValueError(f"instruments.{name}: camera size {cfg.width}x{cfg.height} differs from the scene's")
        inst = SimCamera(scene, trigger, serial=f"CAM{lab.seed:04d}")
    else:
        raise ValueError(f"no simulated free-space instrument of kind {cfg.kind!r}")
    server = InstrumentServer(inst)
    return inst, server, f"TCPIP0::127.0.0.1::{server.port}::SOCKET"


__all__ = ["FreeSpaceSpec", "FreeSpaceTruth", "FreeSpaceScene", "SimSLM", "SimCamera", "start",
           "angular_spectrum_kernel", "propagate", "crosstalk_blur", "misalign", "array_block", "block_array"]
