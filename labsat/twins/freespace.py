"""Differentiable twin of a free-space optical network: input image -> phase masks -> camera.

The same optics as the virtual bench (angular-spectrum propagation on a padded grid), in torch, with
the bench's imperfections as fittable parameters (found by calibration, never read from the truth):

- ``rotation_deg``, ``shift_x_px``, ``shift_y_px``, ``scale``: misalignment of the masks relative to
  the optical axis, applied to each mask's complex transmission with ``affine_grid``/``grid_sample``
  (bilinear; outside the mask the SLM is flat);
- ``crosstalk``: nearest-neighbour phase crosstalk between SLM pixels (fringing field).

``forward(x, u)``: ``x`` the input amplitudes (..., B, grid*grid) in [0, 1], ``u`` the mask controls
(..., masks*grid*grid) in [0, 1] (phase ``2 pi u``); returns the detector-region powers as fractions of
their sum (..., B, classes). With ``x`` (K, B, N) and ``u`` (K, H) each setting k has its own masks.
"""
from __future__ import annotations

import contextlib
import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .freespace_layout import detector_boxes  # noqa: F401  (torch-free: the station validates with it)

FIT_PARAMETERS = ("rotation_deg", "shift_x_px", "shift_y_px", "scale", "crosstalk")
ALIGNMENT = ("rotation_deg", "shift_x_px", "shift_y_px", "scale")


def detector_masks(grid: int, classes: int, size: int) -> np.ndarray:
    m = np.zeros((classes, grid, grid))
    for k, (y, x) in enumerate(detector_boxes(grid, classes, size)):
        m[k, y:y + size, x:x + size] = 1.0
    return m


class FreeSpaceTwin(nn.Module):
    def __init__(self, grid: int = 32, masks: int = 2, pitch_um: float = 8.0, wavelength_nm: float = 532.0,
                 distance_mm: float = 1.0, padding: int = 2, classes: int = 10, detector_px: int = 4,
                 image_size: int = 16):
        super().__init__()
        if image_size > grid:
            raise ValueError(f"image_size {image_size} exceeds the {grid} px grid")
        self.grid, self.masks, self.padding, self.classes = grid, masks, padding, classes
        self.image_size = image_size
        self.P = grid * padding
        f = np.fft.fftfreq(self.P, d=pitch_um * 1e-6)
        fx, fy = np.meshgrid(f, f, indexing="xy")
        arg = 1.0 / (wavelength_nm * 1e-9) ** 2 - fx**2 - fy**2
        kern = np.where(arg > 0, np.exp(1j * 2 * np.pi * np.sqrt(np.maximum(arg, 0)) * distance_mm * 1e-3), 0)
        self.register_buffer("kernel", torch.as_tensor(kern, dtype=torch.complex64), persistent=False)
        self.register_buffer("detectors", torch.as_tensor(detector_masks(grid, classes, detector_px)),
                             persistent=False)
        nominal = {"rotation_deg": 0.0, "shift_x_px": 0.0, "shift_y_px": 0.0, "scale": 1.0, "crosstalk": 0.0}
        for k, v in nominal.items():  # fitted by calibration, not by training
            setattr(self, k, nn.Parameter(torch.tensor(v, dtype=torch.float64), requires_grad=False))

    # --- sizes (the PhysicalLayer / hardware contract) ---
    @property
    def n_controls(self) -> int:
        return self.masks * self.grid * self.grid

    @property
    def n_inputs(self) -> int:
        return self.grid * self.grid

    @property
    def n_outputs(self) -> int:
        return self.classes

    def load_data(self, seed: int = 0, encoder_state: dict | None = None):
        """The inputs this twin takes: digit images upsampled onto its grid (labsat.data)."""
        from labsat.data import ImageEncoder, load_digits_images

        encoder = ImageEncoder.from_state(encoder_state) if encoder_state is not None else None
        return load_digits_images(self.grid, self.image_size, seed=seed, encoder=encoder)

    # --- optics ---
    def _theta(self) -> torch.Tensor:
        th = torch.deg2rad(self.rotation_deg)
        c = (self.grid - 1) / 2
        cos, sin = torch.cos(th) / self.scale, torch.sin(th) / self.scale
        a = torch.stack([torch.stack([cos, sin]), torch.stack([-sin, cos])])
        t = torch.stack([self.shift_x_px, self.shift_y_px]) / c
        return torch.cat([a, -(a @ t)[:, None]], dim=1)  # (2, 3)

    def transmissions(self, u: torch.Tensor) -> torch.Tensor:
        """Mask transmissions as the beam sees them, on the padded grid: (..., masks, P, P)."""
        g, m = self.grid, self.masks
        lead = u.shape[:-1]
        phase = 2 * math.pi * u.reshape(-1, 1, g, g).to(torch.float32)  # (L*m, 1, g, g); complex64 optics
        c = self.crosstalk.to(torch.float32)
        kernel = torch.stack([torch.stack([0 * c, c, 0 * c]), torch.stack([c, 1 - 4 * c, c]),
                              torch.stack([0 * c, c, 0 * c])]).to(phase.dtype)[None, None]
        phase = F.conv2d(F.pad(phase, (1, 1, 1, 1), mode="replicate"), kernel)
        d = torch.cat([torch.cos(phase) - 1, torch.sin(phase)], dim=1)  # t - 1, re/im channels
        theta = self._theta().to(d.dtype)[None].expand(len(d), 2, 3)  # float32
        grid = F.affine_grid(theta, list(d.shape), align_corners=True)
        d = F.grid_sample(d, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
        o = (self.P - g) // 2
        d = F.pad(d, (o, self.P - g - o, o, self.P - g - o))
        t = torch.complex(d[:, 0] + 1, d[:, 1])
        return t.reshape(*lead, m, self.P, self.P)

    def _propagate(self, field: torch.Tensor) -> torch.Tensor:
        return torch.fft.ifft2(torch.fft.fft2(field) * self.kernel)

    def frames(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """Intensity in the detector window (..., B, grid, grid) (unit: input amplitude squared)."""
        g, o = self.grid, (self.P - self.grid) // 2
        x = torch.as_tensor(x, dtype=torch.float64)
        u = torch.as_tensor(u, dtype=torch.float64)
        trans = self.transmissions(u)
        img = x.reshape(*x.shape[:-1], g, g)
        field = F.pad(img.to(torch.float32), (o, self.P - g - o, o, self.P - g - o)).to(torch.complex64)
        field = self._propagate(field)
        for k in range(self.masks):
            field = self._propagate(field * trans[..., k, :, :].unsqueeze(-3))
        return (field[..., o:o + g, o:o + g].abs() ** 2).to(torch.float64)

    def forward(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        e = torch.einsum("...hw,chw->...c", self.frames(x, u), self.detectors)
        return e / (e.sum(-1, keepdim=True) + 1e-12)

    # --- fitted state ---
    def alignment(self) -> dict[str, float]:
        return {k: float(getattr(self, k)) for k in ALIGNMENT}

    @contextlib.contextmanager
    def misaligned(self, **values: float):
        """Temporarily set alignment parameters (experiments, adversarial SAT): ``rotation_deg=1``."""
        unknown = set(values) - set(FIT_PARAMETERS)
        if unknown:
            raise ValueError(f"unknown alignment parameters {sorted(unknown)}; choose from {', '.join(FIT_PARAMETERS)}")
        saved = {k: getattr(self, k).detach().clone() for k in values}
        try:
            with torch.no_grad():
                for k, v in values.items():
                    getattr(self, k).fill_(float(v))
            yield self
        finally:
            with torch.no_grad():
                for k, v in saved.items():
                    getattr(self, k).copy_(v)

    def fitted_state(self) -> dict[str, float]:
        return {k: float(getattr(self, k)) for k in FIT_PARAMETERS}

    def load_fitted_state(self, state: dict) -> None:
        for k in FIT_PARAMETERS:
            if k not in state:
                raise KeyError(f"calibration is missing twin parameter '{k}'")
            value = float(np.asarray(state[k], dtype=float).reshape(-1)[0])
            with torch.no_grad():
                getattr(self, k).fill_(value)


def twin_for_layer(cfg) -> FreeSpaceTwin:
    """The nominal (perfectly aligned) twin of a free-space layer config."""
    return FreeSpaceTwin(grid=cfg.grid, masks=cfg.masks, pitch_um=cfg.pitch_um, wavelength_nm=cfg.wavelength_nm,
                         distance_mm=cfg.distance_mm, padding=cfg.padding, classes=cfg.classes,
                         detector_px=cfg.detector_px, image_size=cfg.image_size)
