"""Free-space optics on the bench: mask controls -> phase SLM, input images -> amplitude SLM sequence,
camera frames -> detector-region powers (fractions of their sum, as the twin computes them)."""
from __future__ import annotations

import numpy as np

from labsat.drivers.base import InstrumentError


class FreeSpaceHardware:
    """Counts every hardware forward (``batches``), every image sent through the optics (``samples``)
    and every mask upload (``mask_updates``)."""

    def __init__(self, cfg, input_slm, mask_slm, camera, max_batch: int = 512):
        from labsat.twins.freespace import detector_masks

        self.cfg, self.input_slm, self.mask_slm, self.camera = cfg, input_slm, mask_slm, camera
        self.grid, self.masks = cfg.grid, cfg.masks
        self.modes = cfg.grid * cfg.grid  # inputs: one amplitude per input-SLM pixel of the grid
        self.n_outputs = cfg.classes
        self.detectors = detector_masks(cfg.grid, cfg.classes, cfg.detector_px)
        self.max_batch = min(max_batch, getattr(input_slm, "max_sequence", max_batch))
        self.batches = 0
        self.samples = 0
        self.mask_updates = 0
        self._last_u: np.ndarray | None = None

    @property
    def n_controls(self) -> int:
        return self.masks * self.grid * self.grid

    def mask_frame(self, u: np.ndarray) -> np.ndarray:
        """The phase SLM's frame (gray levels) for controls ``u`` in [0, 1] (phase 2 pi u)."""
        u = np.asarray(u, dtype=float).ravel()
        if u.size != self.n_controls:
            raise ValueError(f"expected {self.n_controls} mask controls, got {u.size}")
        g = self.grid
        gray = self.mask_slm.phase_to_gray(2 * np.pi * np.clip(u, 0.0, 1.0)).reshape(self.masks, g, g)
        frame = np.zeros((self.mask_slm.height, self.mask_slm.width), dtype=int)
        for k in range(self.masks):
            frame[:g, k * g:(k + 1) * g] = gray[k]
        return frame

    def set_controls(self, u: np.ndarray) -> None:
        u = np.asarray(u, dtype=float)
        if self._last_u is not None and np.array_equal(u, self._last_u):
            return
        self.mask_slm.show(self.mask_frame(u))
        self._last_u = u.copy()
        self.mask_updates += 1

    def camera_window(self, amplitudes: np.ndarray) -> np.ndarray:
        """Camera counts in the grid x grid window on the optical axis, (B, grid, grid)."""
        x = np.clip(np.atleast_2d(np.asarray(amplitudes, dtype=float)), 0.0, 1.0)
        if x.shape[-1] != self.modes:
            raise ValueError(f"expected inputs of {self.modes} pixels ({self.grid}x{self.grid}), got {x.shape[-1]}")
        g = self.grid
        oy, ox = (self.camera.height - g) // 2, (self.camera.width - g) // 2
        out = []
        for start in range(0, len(x), self.max_batch):
            chunk = x[start:start + self.max_batch]
            frames = np.zeros((len(chunk), self.input_slm.height, self.input_slm.width), dtype=int)
            frames[:, :g, :g] = self.input_slm.amplitude_to_gray(chunk).reshape(-1, g, g)
            self.input_slm.load_sequence(frames)
            self.camera.arm(len(chunk))
            self.input_slm.play()
            counts = self.camera.fetch(len(chunk))
            out.append(counts[:, oy:oy + g, ox:ox + g])
            self.batches += 1
            self.samples += len(chunk)
        return np.concatenate(out)

    def run(self, amplitudes: np.ndarray) -> np.ndarray:
        """Detector-region powers as fractions of their sum, (B, classes)."""
        e = np.einsum("bhw,chw->bc", self.camera_window(amplitudes), self.detectors)
        total = e.sum(1, keepdims=True)
        if np.any(total <= 0):
            raise InstrumentError("camera: no light on the detector regions (laser off, or exposure too short)")
        return e / total

    def forward(self, amplitudes: np.ndarray, u: np.ndarray) -> np.ndarray:
        self.set_controls(u)
        return self.run(amplitudes)

    def forget_controls(self) -> None:
        """Make the next :meth:`set_controls` upload, e.g. after the SLM was cleared."""
        self._last_u = None
