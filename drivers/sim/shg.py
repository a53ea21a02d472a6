"""The virtual nonlinear-optics bench: a broadband pulse, a pulse shaper, an SHG crystal, a spectrometer.

Everything here is *hidden truth*; the product reaches it only through the simulated WaveShaper
(HTTP, :mod:`labsat.drivers.sim.waveshaper`) and the simulated spectrometer (SCPI,
:mod:`labsat.drivers.sim.spectrometer`), and treats the physics as unknown (a learned twin).

Physics (numpy), on the shaper's 0.001 THz grid:

- the pulse: a Gaussian spectrum over the layer's band (plus a margin on each side), with a small
  ripple and a fixed, unknown spectral phase (residual second- and third-order dispersion);
- the shaper multiplies it by its mask ``transfer(port)`` (amplitude and phase per bin), after a
  small blur of the complex transmission between neighbouring bins (the SLM's fringing fields);
- second-harmonic generation: the SH field is the autoconvolution of the shaped field (computed as
  ``FFT(IFFT(E)^2)`` on a zero-padded grid), weighted by the crystal's phase-matching curve
  ``sinc^2((f - f_pm) / w)`` whose centre moves with the crystal temperature (drift);
- the spectrometer: each pixel integrates the SH power over its slice of the SH band, through a
  Gaussian instrument response, with pixel gains, a small wavelength-calibration offset, shot and read
  noise, and integer counts up to the 16-bit full scale.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field

import numpy as np

from . import spectrometer as _sim_spectrometer  # noqa: F401  (registers the 'spectrometer' kind)

C_NM_THZ = 299_792.458  # c in nm * THz


@dataclass(frozen=True)
class ShgSpec:
    start_thz: float = 193.0  # first bin of the layer's band on the shaper
    band_bins: int = 96  # bins the layer uses
    margin_bins: int = 8  # light outside the band, blocked by a band-limited mask
    pixels: int = 24  # spectrometer pixels across the SH band
    shaper_port: int = 1
    # hidden imperfections
    pulse_width: float = 0.45  # Gaussian 1/e half width, fraction of the band
    ripple: float = 0.05
    gdd: float = 2.0  # rad across the band (quadratic phase), random sign
    tod: float = 1.5  # rad across the band (cubic phase)
    slm_blur: float = 0.15  # fraction of the phase a bin takes from each neighbour
    pm_width: float = 1.2  # phase-matching sinc width, fraction of the SH band
    pm_kelvin_per_band: float = 8.0  # crystal temperature change that moves f_pm across the SH band
    pixel_gain_sigma: float = 0.05
    calib_offset_sigma: float = 0.3  # spectrometer wavelength offset, in pixels
    resolution_pixels: float = 0.7  # instrument response (Gaussian sigma), in pixels
    # detector
    peak_counts: float = 40_000.0  # a flat-phase pulse's brightest pixel at 1 ms integration
    read_noise: float = 15.0
    full_scale: float = 65535.0
    drift_kelvin_per_hour: float = 0.0


@dataclass
class ShgTruth:
    envelope: np.ndarray  # (L + 2M,) complex pulse spectrum
    slm_blur: float
    pixel_gain: np.ndarray
    calib_offset: float
    pm_offset: float

    @classmethod
    def draw(cls, spec: ShgSpec, seed: int) -> "ShgTruth":
        rng = np.random.default_rng(seed)
        n = spec.band_bins + 2 * spec.margin_bins
        z = (np.arange(n) - (n - 1) / 2) / (spec.band_bins / 2)  # -1..1 across the band
        amp = np.exp(-(z / spec.pulse_width) ** 2 / 2)
        amp = amp * (1 + spec.ripple * np.sin(2 * np.pi * (z * rng.uniform(2, 4) + rng.uniform(0, 1))))
        phase = rng.choice([-1, 1]) * spec.gdd * z**2 + spec.tod * rng.normal(0, 1) * z**3
        return cls(envelope=amp * np.exp(1j * phase),
                   slm_blur=spec.slm_blur * (1 + 0.2 * rng.normal()),
                   pixel_gain=np.clip(1 + rng.normal(0, spec.pixel_gain_sigma, spec.pixels), 0.7, 1.3),
                   calib_offset=rng.normal(0, spec.calib_offset_sigma),
                   pm_offset=rng.normal(0, 0.1))


@dataclass
class ShgScene:
    spec: ShgSpec = field(default_factory=ShgSpec)
    seed: int = 0
    shaper_name: str = "shaper"

    def __post_init__(self):
        self.truth = ShgTruth.draw(self.spec, self.seed)
        self._rng = np.random.default_rng(self.seed + 3_000_017)
        self._lock = threading.RLock()
        self.lab = None
        self.virtual_time_s = 0.0
        self.extra_kelvin = 0.0
        self.samples_acquired = 0
        self.seconds_per_sample = 0.0  # the integration time is added per spectrum
        self.seconds_per_heater_update = 0.0
        n = self.spec.band_bins + 2 * self.spec.margin_bins
        self._nfft = int(2 ** np.ceil(np.log2(2 * n)))
        self._response = self._pixel_response()
        self._scale = 1.0
        flat = self._sh_power(self.truth.envelope * np.exp(-1j * np.angle(self.truth.envelope)), 0.0)
        self._scale = self.spec.peak_counts / max(float((self._response @ flat).max()), 1e-30)

    # --- wiring ---
    def attach_lab(self, lab) -> None:
        """The virtual lab whose pulse shaper (``shaper_name``) shapes this scene's pulse."""
        self.lab = lab

    def _mask(self) -> np.ndarray:
        """The shaper's complex transmission over this scene's bins (zero if no shaper is attached)."""
        n = self.spec.band_bins + 2 * self.spec.margin_bins
        shaper = None if self.lab is None else self.lab.instruments.get(self.shaper_name)
        if shaper is None:
            return np.zeros(n, dtype=complex)
        t = shaper.transfer(self.spec.shaper_port)
        first = int(round((self.spec.start_thz - shaper.start_thz) / 0.001)) - self.spec.margin_bins
        out = np.zeros(n, dtype=complex)
        lo, hi = max(first, 0), min(first + n, len(t))
        if hi > lo:
            out[lo - first:hi - first] = t[lo:hi]
        return out

    # --- physics ---
    @property
    def temperature_change_k(self) -> float:
        return self.spec.drift_kelvin_per_hour * self.virtual_time_s / 3600.0 + self.extra_kelvin

    def _sh_power(self, field_in: np.ndarray, kelvin: float) -> np.ndarray:
        """SH power over the SH bins (2n - 1) for a shaped field (n bins)."""
        n = len(field_in)
        e_t = np.fft.ifft(field_in, self._nfft)
        sh = np.fft.fft(e_t**2)[:2 * n - 1] * self._nfft  # = autoconvolution of the spectrum
        z = (np.arange(2 * n - 1) - (n - 1)) / n  # -1..1 across the SH band
        f_pm = self.truth.pm_offset + kelvin / self.spec.pm_kelvin_per_band
        eta = np.sinc((z - f_pm) / self.spec.pm_width) ** 2
        return eta * np.abs(sh) ** 2

    def _pixel_response(self) -> np.ndarray:
        """(pixels, SH bins): each pixel's share of each SH bin (slit, offset, resolution)."""
        n = self.spec.band_bins + 2 * self.spec.margin_bins
        nb, p = 2 * n - 1, self.spec.pixels
        lo, hi = self.spec.margin_bins * 2, nb - self.spec.margin_bins * 2  # pixels span the band's SH
        centres = lo + (np.arange(p) + 0.5 + self.truth.calib_offset) * (hi - lo) / p
        width = (hi - lo) / p
        b = np.arange(nb)
        sigma = self.spec.resolution_pixels * width
        d = b[None] - centres[:, None]
        r = np.exp(-0.5 * (d / sigma) ** 2) * (np.abs(d) <= 3 * sigma)
        return self.truth.pixel_gain[:, None] * r / r.sum(1, keepdims=True).max()

    def wavelengths_nm(self) -> np.ndarray:
        """Nominal pixel wavelengths (the spectrometer's own calibration, without its hidden offset)."""
        n = self.spec.band_bins + 2 * self.spec.margin_bins
        f0 = 2 * (self.spec.start_thz - 0.001 * self.spec.margin_bins)
        lo, hi = 2 * self.spec.margin_bins, 2 * n - 1 - 2 * self.spec.margin_bins
        bins = lo + (np.arange(self.spec.pixels) + 0.5) * (hi - lo) / self.spec.pixels
        return C_NM_THZ / (f0 + 0.001 * bins)

    def expected_counts(self, mask: np.ndarray, integration_s: float = 1e-3, kelvin: float | None = None) -> np.ndarray:
        """Noiseless counts for a complex mask over this scene's bins (tests and the spectrometer)."""
        t = self.truth
        blurred = np.asarray(mask, dtype=complex).copy()  # neighbouring SLM pixels leak into each other
        blurred[1:-1] = (1 - 2 * t.slm_blur) * mask[1:-1] + t.slm_blur * (mask[:-2] + mask[2:])
        shaped = t.envelope * blurred
        k = self.temperature_change_k if kelvin is None else kelvin
        return self._scale * (integration_s / 1e-3) * (self._response @ self._sh_power(shaped, k))

    def spectrum(self, integration_s: float = 1e-3, noisy: bool = True, averages: int = 1) -> np.ndarray:
        """One acquisition (counts per pixel) of the light the shaper now lets through: the mean of ``averages``
        exposures, each with its own shot and read noise and integer counts (the noise falls as
        1/sqrt(averages), the time grows as ``averages``); a pixel saturated in any exposure reads full scale."""
        n = max(int(averages), 1)
        with self._lock:
            counts = self.expected_counts(self._mask(), integration_s)
            self.samples_acquired += 1
            self.virtual_time_s += n * integration_s
            if noisy:
                frames = counts + np.sqrt(np.maximum(counts, 0.0)) * self._rng.standard_normal((n, counts.size))
                frames = frames + self.spec.read_noise * self._rng.standard_normal(frames.shape)
                frames = np.clip(np.round(frames), 0, self.spec.full_scale)
                counts = np.where((frames >= self.spec.full_scale).any(0), self.spec.full_scale, frames.mean(0))
            return counts
