"""Spatial light modulator (SLM) over SCPI on a socket: whole frames as IEEE 488.2 binary blocks.

Commands used (``\\n`` terminated):

=============================  ==========================================================
command                        meaning
=============================  ==========================================================
``*IDN?``                      identity
``DISP:SIZE?``                 display size ``width,height`` (pixels)
``DISP:DATA #<block>``         show one frame: H x W uint8 gray levels, row-major
``DISP:DATA?``                 the frame shown now (same block format), for read-back
``DISP:CLE``                   show the flat frame (all gray 0): the safe state
``SEQ:DATA #<block>``          upload a sequence of B frames (B x H x W uint8)
``SEQ:POIN?``                  frames in the uploaded sequence
``INIT``                       play the sequence once, one frame per trigger of the camera
``*OPC?``                      operation complete (``1``)
``SYST:ERR?``                  error queue
=============================  ==========================================================

A phase SLM maps gray level g to phase ``2 pi g / 256`` (its look-up table is calibrated for the
laser's wavelength); an amplitude SLM (or DMD in gray mode) to transmission ``g / 255``.

Limits (checked before anything is sent, strictly: reject, never clip): the frame's shape must be the
display's, every value a finite gray level in ``[0, 255]``. Phases are sent modulo 2 pi.
Safe state: the flat frame (``DISP:CLE``), on :meth:`shutdown`, which the station calls on close, on
an exception and on Ctrl-C. A failed upload also clears the display and raises.
"""
from __future__ import annotations


import numpy as np
from pymeasure.instruments import Instrument

from .base import InstrumentError, LimitError, read_block
from .transport import ScpiErrorMixin, TransportMixin


def _block(values: np.ndarray) -> bytes:
    body = np.ascontiguousarray(values, dtype=np.uint8).tobytes()
    digits = str(len(body))
    return b"#" + str(len(digits)).encode() + digits.encode() + body


class SpatialLightModulator(TransportMixin, ScpiErrorMixin, Instrument):
    LEVELS = 256

    def __init__(self, adapter, name: str = "SLM", width: int = 64, height: int = 32,
                 modulation: str = "phase", max_sequence: int = 4096, verify: bool = True, **kwargs):
        super().__init__(adapter, name, includeSCPI=False, **kwargs)
        if modulation not in ("phase", "amplitude"):
            raise ValueError(f"{name}: modulation must be 'phase' or 'amplitude', got {modulation!r}")
        self.width, self.height, self.modulation = int(width), int(height), modulation
        self.max_sequence, self.verify = int(max_sequence), verify
        self.uploads = 0

    @property
    def identity(self) -> str:
        return self.ask("*IDN?").strip()

    def check_size(self) -> None:
        """Compare the display's size with the configured one (a wrong SLM would show garbage)."""
        with self.transaction():
            reply = self.ask("DISP:SIZE?").strip()
        try:
            w, h = (int(v) for v in reply.split(","))
        except ValueError:
            raise InstrumentError(f"{self.name}: garbled reply to DISP:SIZE?: {reply!r}") from None
        if (w, h) != (self.width, self.height):
            raise InstrumentError(f"{self.name}: display is {w}x{h}, configured {self.width}x{self.height}")

    # --- limits ---
    def _validate(self, gray, frames: bool) -> np.ndarray:
        g = np.asarray(gray)
        shape = (self.height, self.width)
        if g.shape[-2:] != shape or g.ndim != (3 if frames else 2):
            want = f"(B, {self.height}, {self.width})" if frames else f"({self.height}, {self.width})"
            raise LimitError(f"{self.name}: frame shape {g.shape} is not the display's {want}")
        if not np.all(np.isfinite(g)):
            raise LimitError(f"{self.name}: a gray level is not a finite number")
        if np.any(g < 0) or np.any(g > self.LEVELS - 1) or np.any(g != np.round(g)):
            raise LimitError(f"{self.name}: gray levels must be integers in [0, {self.LEVELS - 1}]")
        if frames and not 1 <= len(g) <= self.max_sequence:
            raise LimitError(f"{self.name}: a sequence holds 1..{self.max_sequence} frames, got {len(g)}")
        return g.astype(np.uint8)

    def phase_to_gray(self, phase) -> np.ndarray:
        """Phases (rad, any real) -> gray levels, modulo 2 pi."""
        p = np.asarray(phase, dtype=float)
        if not np.all(np.isfinite(p)):
            raise LimitError(f"{self.name}: a phase is not a finite number")
        return np.round(np.mod(p, 2 * np.pi) * self.LEVELS / (2 * np.pi)).astype(int) % self.LEVELS

    def amplitude_to_gray(self, amplitude) -> np.ndarray:
        a = np.asarray(amplitude, dtype=float)
        if not np.all(np.isfinite(a)) or np.any(a < 0) or np.any(a > 1):
            raise LimitError(f"{self.name}: amplitudes must be finite and in [0, 1]")
        return np.round(a * (self.LEVELS - 1)).astype(int)

    # --- display ---
    def show(self, gray) -> None:
        """Display one frame (H x W gray levels); read back and compared when ``verify``."""
        g = self._validate(gray, frames=False)
        with self.transaction(hold_signals=False):
            try:
                with self.transaction():
                    self.write_bytes(b"DISP:DATA " + _block(g) + b"\n")
                    self.check_scpi_errors()
                    if self.verify:
                        self.write("DISP:DATA?")
                        back = self._read_frame()
                        if back.shape != g.shape or not np.array_equal(back, g):
                            raise InstrumentError(f"{self.name}: the displayed frame differs from the upload")
                self.uploads += 1
            except BaseException:
                self._clear_quietly()
                raise

    def _read_frame(self) -> np.ndarray:
        raw = read_block(self)
        nd = int(raw[1:2])
        body = raw[2 + nd:]
        if len(body) != self.width * self.height:
            raise InstrumentError(f"{self.name}: read back {len(body)} bytes, expected {self.width * self.height}")
        return np.frombuffer(body, np.uint8).reshape(self.height, self.width)

    def displayed(self) -> np.ndarray:
        with self.transaction():
            self.write("DISP:DATA?")
            return self._read_frame()

    def load_sequence(self, gray) -> None:
        """Upload a sequence of B frames in one binary block, then confirm its length."""
        g = self._validate(gray, frames=True)
        with self.transaction():
            self.write_bytes(b"SEQ:DATA " + _block(g) + b"\n")
            n = self.ask("SEQ:POIN?").strip()
        if n != str(len(g)):
            self.check_scpi_errors()
            raise InstrumentError(f"{self.name}: uploaded {len(g)} frames, the SLM holds {n!r}")

    def play(self) -> None:
        with self.transaction():
            self.write("INIT")
            if self.ask("*OPC?").strip() != "1":
                raise InstrumentError(f"{self.name}: did not confirm INIT")

    def clear(self) -> None:
        with self.transaction():
            self.write("DISP:CLE")
            self.check_scpi_errors()

    def _clear_quietly(self) -> None:
        try:
            self.clear()
        except Exception:
            pass

    def shutdown(self) -> None:
        """Safe state: the flat frame."""
        with self.transaction(hold_signals=False):
            self.clear()
            super().shutdown()
