"""Programmable spectral filter / pulse shaper, WaveShaper-style REST interface over HTTP (stdlib urllib).

Requests used:

=================================  ==========================================================  ===========
request                            meaning                                                     reply
=================================  ==========================================================  ===========
``GET /waveshaper/devinfo``        model, serial, frequency range (THz), port count            JSON
``POST /waveshaper/loadprofile``   ``{"type": "wsp", "wsp": <text>}``: the whole mask in one   JSON ``rc``
                                   upload, one line per 0.001 THz bin,
                                   ``freq_THz<TAB>attn_dB<TAB>phase_rad<TAB>port``
``POST /waveshaper/loadprofile``   ``{"type": "blockall"}`` (safe state) or                    JSON ``rc``
                                   ``{"type": "transmit", "port": p, "attn": 0}``
``GET /waveshaper/getprofile``     the mask now loaded (WSP text)                              text
=================================  ==========================================================  ===========

Limits are checked before anything is sent, strictly (reject, never clip): every frequency inside
the device's range and on its 0.001 THz grid, attenuation in ``[0, attn_max_db]`` (at most 40 dB, the
device's range), finite phases (sent modulo 2 pi), an existing port. The device's own refusals
(``rc`` -29 port, -30 frequency, -31 attenuation, -33 spacing) raise :class:`InstrumentError`.
Every upload is read back and compared. A profile upload is idempotent (the same request gives the
same state), so an upload or read-back that times out or is dropped is retried; a refusal is not.
Any failure of an upload puts the shaper in its safe state (``block``: no light passes, the default;
or ``transmit``: flat, 0 dB, to ``port``) and raises; :meth:`shutdown` does the same and is called
by the station on close, on an exception and on Ctrl-C.
"""
from __future__ import annotations

import http.client
import json
import logging
import socket
import time
import urllib.error
import urllib.request

import numpy as np

from .base import InstrumentError, LimitError
from .trace import trace
from .transport import ConnectionLost, GarbledReply, InstrumentTimeout, RETRYABLE, TransactionMixin

log = logging.getLogger(__name__)

RC_TEXT = {-29: "invalid port", -30: "invalid frequency", -31: "invalid attenuation",
           -33: "invalid frequency spacing", -1: "device error", -2: "bad request"}


class _HttpAdapter:
    """What the station closes; HTTP requests are one connection each."""

    def __init__(self, url: str):
        self.url = url

    def close(self) -> None:
        pass


class PulseShaper(TransactionMixin):
    BIN_THZ = 0.001
    ATTN_MAX_DB = 40.0

    def __init__(self, address: str, name: str = "pulse shaper", timeout_s: float = 2.0,
                 attn_max_db: float = ATTN_MAX_DB, safe_state: str = "block", safe_port: int = 1,
                 retries: int = 2, verify: bool = True):
        super().__init__()  # the instrument's lock (TransactionMixin)
        if not address.startswith(("http://", "https://")):
            raise ValueError(f"{name}: address must be an http:// URL, got {address!r}")
        if not 0 < attn_max_db <= self.ATTN_MAX_DB:
            raise ValueError(f"{name}: attn_max_db must be in (0, {self.ATTN_MAX_DB}] dB")
        if safe_state not in ("block", "transmit"):
            raise ValueError(f"{name}: safe_state must be 'block' or 'transmit'")
        self.url, self.name = address.rstrip("/"), name
        self.adapter = _HttpAdapter(self.url)
        self.timeout_s, self.attn_max_db = float(timeout_s), float(attn_max_db)
        self.safe_state, self.safe_port = safe_state, int(safe_port)
        self.retries, self.verify = int(retries), verify
        self._info: dict | None = None
        self.uploads = 0

    # --- transport ---
    def _request(self, path: str, body: dict | None = None) -> bytes:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method="GET" if body is None else "POST",
                                     headers={"Content-Type": "application/json"} if data else {})
        what = f"{req.get_method()} {path}"
        trace(self.name, ">", what if data is None else f"{what} {data.decode(errors='replace')}")
        try:
            with self.transaction(), urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
                reply = resp.read()
                trace(self.name, "<", reply)
                return reply
        except urllib.error.HTTPError as exc:
            raise InstrumentError(f"{self.name}: {what} answered HTTP {exc.code}") from None
        except (TimeoutError, socket.timeout) as exc:
            raise InstrumentTimeout(f"{self.name}: no reply (timeout) to {what}") from exc
        except urllib.error.URLError as exc:
            if isinstance(exc.reason, (TimeoutError, socket.timeout)):
                raise InstrumentTimeout(f"{self.name}: no reply (timeout) to {what}") from exc
            raise ConnectionLost(f"{self.name}: cannot reach {self.url}: {exc.reason}") from exc
        except (http.client.HTTPException, ConnectionError, OSError) as exc:
            raise ConnectionLost(f"{self.name}: connection lost on {what}: {exc!r}") from exc

    def _retry(self, fn, what: str):
        last = None
        for attempt in range(1 + self.retries):
            try:
                return fn()
            except RETRYABLE as exc:
                last = exc
                log.warning("%s (attempt %d of %d)", exc, attempt + 1, 1 + self.retries)
        raise type(last)(f"{last} (gave up after {1 + self.retries} attempts)") from last

    def _json(self, raw: bytes, what: str) -> dict:
        try:
            reply = json.loads(raw.decode())
            if not isinstance(reply, dict):
                raise ValueError
            return reply
        except (ValueError, UnicodeDecodeError):
            raise GarbledReply(f"{self.name}: garbled reply to {what}: {raw[:60]!r}") from None

    # --- device information ---
    def devinfo(self, refresh: bool = False) -> dict:
        with self.transaction(hold_signals=False):
            if self._info is None or refresh:
                def get():
                    info = self._json(self._request("/waveshaper/devinfo"), "devinfo")
                    try:
                        float(info["startfreq"]), float(info["stopfreq"]), int(info["portcount"])
                    except (KeyError, TypeError, ValueError):
                        raise GarbledReply(f"{self.name}: devinfo lacks startfreq/stopfreq/portcount: {info}")
                    return info
                self._info = self._retry(get, "devinfo")
            return self._info

    @property
    def identity(self) -> str:
        info = self.devinfo()
        return f"{info.get('model', '?')} {info.get('sno', '?')} ({info.get('ver', '?')})"

    def frequencies(self) -> np.ndarray:
        """The device's frequency grid (THz), one entry per 0.001 THz bin."""
        info = self.devinfo()
        start, stop = float(info["startfreq"]), float(info["stopfreq"])
        n = int(round((stop - start) / self.BIN_THZ)) + 1
        return np.round(start + self.BIN_THZ * np.arange(n), 3)

    @property
    def portcount(self) -> int:
        return int(self.devinfo()["portcount"])

    # --- profiles ---
    def validate(self, freq_thz, attn_db, phase_rad, port) -> tuple[np.ndarray, ...]:
        """Check a profile against the limits; return it as arrays (port broadcast). Raises LimitError."""
        f = np.asarray(freq_thz, dtype=float).ravel()
        a = np.asarray(attn_db, dtype=float).ravel()
        p = np.asarray(phase_rad, dtype=float).ravel()
        q = np.broadcast_to(np.asarray(port), f.shape)
        if not (len(f) == len(a) == len(p)) or len(f) == 0:
            raise LimitError(f"{self.name}: frequency, attenuation and phase need the same, non-zero length "
                             f"({len(f)}, {len(a)}, {len(p)})")
        grid = self.frequencies()
        lo, hi = grid[0], grid[-1]
        for what, arr in (("frequency", f), ("attenuation", a), ("phase", p)):
            if not np.all(np.isfinite(arr)):
                raise LimitError(f"{self.name}: a {what} is not a finite number")
        bad = (f < lo - 1e-9) | (f > hi + 1e-9)
        if bad.any():
            raise LimitError(f"{self.name}: {f[bad][0]:.4f} THz is outside the device's {lo:.3f}..{hi:.3f} THz")
        idx = np.round((f - lo) / self.BIN_THZ)
        off = np.abs(f - (lo + self.BIN_THZ * idx)) > 1e-6
        if off.any():
            raise LimitError(f"{self.name}: {f[off][0]!r} THz is not on the 0.001 THz grid")
        if len(np.unique(idx)) != len(idx):
            raise LimitError(f"{self.name}: a frequency bin is listed twice")
        bad = (a < 0) | (a > self.attn_max_db)
        if bad.any():
            raise LimitError(f"{self.name}: attenuation {a[bad][0]:.4g} dB is outside [0, {self.attn_max_db:g}] dB")
        try:
            qi = q.astype(int)
        except (TypeError, ValueError):
            raise LimitError(f"{self.name}: port must be an integer") from None
        if np.any(qi != q) or np.any(qi < 0) or np.any(qi > self.portcount):
            raise LimitError(f"{self.name}: port must be 0 (block) .. {self.portcount}")
        return f, a, np.mod(p, 2 * np.pi), qi

    @staticmethod
    def wsp_text(freq_thz, attn_db, phase_rad, port) -> str:
        return "".join(f"{f:.3f}\t{a:.3f}\t{p:.4f}\t{int(q)}\n"
                       for f, a, p, q in zip(freq_thz, attn_db, phase_rad, port))

    @staticmethod
    def parse_wsp(text: str) -> tuple[np.ndarray, ...]:
        rows = [line.split() for line in text.strip().splitlines() if line.strip()]
        arr = np.array([[float(r[0]), float(r[1]), float(r[2]), float(r[3])] for r in rows])
        return arr[:, 0], arr[:, 1], arr[:, 2], arr[:, 3].astype(int)

    def profile(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Read back the loaded mask: (freq THz, attn dB, phase rad, port) for every bin."""
        def get():
            raw = self._request("/waveshaper/getprofile")
            try:
                prof = self.parse_wsp(raw.decode())
            except (ValueError, IndexError, UnicodeDecodeError):
                raise GarbledReply(f"{self.name}: garbled profile read-back: {raw[:60]!r}") from None
            if len(prof[0]) == 0:
                raise GarbledReply(f"{self.name}: empty profile read-back")
            return prof
        with self.transaction(hold_signals=False):
            return self._retry(get, "getprofile")

    def _post(self, body: dict) -> None:
        def post():
            reply = self._json(self._request("/waveshaper/loadprofile", body), "loadprofile")
            rc = reply.get("rc")
            if rc != 0:
                text = reply.get("rctext") or RC_TEXT.get(rc, "error")
                raise InstrumentError(f"{self.name}: refused the {body.get('type')} profile: rc {rc} ({text})")
        self._retry(post, "loadprofile")
        self.uploads += 1

    def load_profile(self, freq_thz, attn_db, phase_rad, port=1) -> None:
        """Upload a whole mask in one request; bins not given are blocked. Read back and compared."""
        f, a, p, q = self.validate(freq_thz, attn_db, phase_rad, port)
        with self.transaction(hold_signals=False):
            try:
                self._post({"type": "wsp", "wsp": self.wsp_text(f, a, p, q)})
                if self.verify:
                    self._check_readback(f, a, p, q)
            except InstrumentError as exc:
                self._fault(exc)
                raise

    def set_mask(self, amplitude, phase_rad, port: int = 1, freq_thz=None) -> None:
        """Field amplitude transmission in ``[10^(-attn_max/20), 1]`` and phase per bin (all bins
        of the device when ``freq_thz`` is None)."""
        amp = np.asarray(amplitude, dtype=float)
        if not np.all(np.isfinite(amp)):
            raise LimitError(f"{self.name}: amplitude is not a finite number")
        floor = 10.0 ** (-self.attn_max_db / 20.0)
        if np.any(amp > 1.0) or np.any(amp < floor * (1 - 1e-12)):
            raise LimitError(f"{self.name}: amplitude must be in [{floor:.3g}, 1] (0..{self.attn_max_db:g} dB)")
        f = self.frequencies() if freq_thz is None else freq_thz
        self.load_profile(f, -20.0 * np.log10(amp), phase_rad, port)

    def _check_readback(self, f, a, p, q) -> None:
        rf, ra, rp, rq = self.profile()
        lo = self.frequencies()[0]
        rbin = np.rint((rf - lo) / self.BIN_THZ).astype(int)
        pos = np.full(max(int(rbin.max()), 0) + 1, -1)
        pos[rbin[rbin >= 0]] = np.nonzero(rbin >= 0)[0]
        want = np.rint((f - lo) / self.BIN_THZ).astype(int)
        idx = np.where(want < len(pos), pos[np.minimum(want, len(pos) - 1)], -1)
        if np.any(idx < 0):
            raise InstrumentError(f"{self.name}: read-back lacks bin {f[int(np.argmin(idx))]:.3f} THz")
        dphase = np.abs(np.angle(np.exp(1j * (rp[idx] - p))))
        bad = (rq[idx] != q) | ((q != 0) & ((np.abs(ra[idx] - a) > 0.01) | (dphase > 2e-3)))
        if bad.any():
            k = int(np.argmax(bad))
            raise InstrumentError(f"{self.name}: read-back differs at {f[k]:.3f} THz: "
                                  f"({ra[idx][k]:.3f} dB, {rp[idx][k]:.4f} rad, port {rq[idx][k]}) vs set "
                                  f"({a[k]:.3f} dB, {p[k]:.4f} rad, port {q[k]})")
        others = np.setdiff1d(np.arange(len(rf)), idx)
        if others.size and np.any(rq[others] != 0):
            raise InstrumentError(f"{self.name}: read-back passes light in bins that were not set")

    def block_all(self) -> None:
        with self.transaction(hold_signals=False):
            self._post({"type": "blockall"})
            if self.verify and np.any(self.profile()[3] != 0):
                raise InstrumentError(f"{self.name}: still passes light after blockall")

    def transmit(self, port: int = 1) -> None:
        """Flat: every bin to ``port`` at 0 dB, zero phase."""
        if not 1 <= port <= self.portcount:
            raise LimitError(f"{self.name}: port {port} does not exist (1..{self.portcount})")
        with self.transaction(hold_signals=False):
            self._post({"type": "transmit", "port": int(port), "attn": 0.0})

    def _fault(self, exc: Exception) -> None:
        log.error("%s: %s; going to the safe state", self.name, exc)
        try:
            self.shutdown()
        except Exception as exc2:
            log.critical("%s: safe state after fault failed: %s", self.name, exc2)

    def shutdown(self) -> None:
        """Safe state (``block``: nothing passes; ``transmit``: flat to ``safe_port``), retried."""
        with self.transaction(hold_signals=False):
            last = None
            for attempt in range(3):
                try:
                    if self.safe_state == "block":
                        self.block_all()
                    else:
                        self.transmit(self.safe_port)
                    return
                except InstrumentError as exc:
                    last = exc
                    time.sleep(0.01)
            log.critical("%s: COULD NOT REACH THE SAFE STATE: %s", self.name, last)
            raise InstrumentError(f"{self.name}: could not reach the safe state: {last}")
