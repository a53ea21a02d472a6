"""A simulated WaveShaper-style programmable spectral filter (pulse shaper), served over HTTP on loopback.

Endpoints (as the Finisar/II-VI/Coherent WaveShaper's REST interface):

- ``GET /waveshaper/devinfo`` -> JSON ``{model, sno, ver, startfreq, stopfreq, ip, portcount, rc, rctext}``
- ``POST /waveshaper/loadprofile`` with JSON ``{type: wsp|blockall|transmit|bandpass, wsp, port, center,
  bandwidth, attn}`` -> JSON ``{rc, rctext, sno}``; ``wsp`` is the profile text, one line per
  0.001 THz bin: ``freq_THz<TAB>attn_dB<TAB>phase_rad<TAB>port``
- ``GET /waveshaper/getprofile`` -> the profile now loaded, WSP text covering every bin

Like the device: attenuation above 40 dB means blocked, below 0 dB is taken as 0 dB, phase is taken
modulo 2 pi, bins the profile leaves out are blocked (port 0); a frequency off the device's range or
grid, or a port it does not have, is refused with the device's return code and nothing changes.

The mask lives in :class:`SimWaveShaper` (``attn_db``, ``phase_rad``, ``port`` per bin), for a later
scene (nonlinear optics) to read with :meth:`SimWaveShaper.transfer`. Faults and timing come from
:mod:`labsat.drivers.sim.faults`: ``server.faults`` (matched against the request path) and
``server.timing`` (``query_latency_s`` per request, plus ``upload_s`` per profile load).
"""
from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np

from .faults import GARBAGE, FaultInjector, LabClock, TimingModel

RC_TEXT = {0: "OK", -1: "device error", -2: "bad request", -29: "invalid port", -30: "invalid frequency",
           -31: "invalid attenuation", -33: "invalid frequency spacing"}
BLOCK_DB = 60.0


class SimWaveShaper:
    def __init__(self, start_thz: float = 191.250, stop_thz: float = 196.275, portcount: int = 4,
                 model: str = "WS-04000A-C", sno: str = "SN-SIM0001", upload_s: float = 0.0):
        self.model, self.sno, self.portcount = model, sno, portcount
        self.start_thz, self.stop_thz = start_thz, stop_thz
        self.n_bins = int(round((stop_thz - start_thz) / 0.001)) + 1
        self.freq_thz = np.round(start_thz + 0.001 * np.arange(self.n_bins), 3)
        self.upload_s = upload_s
        self.uploads = 0
        self._lock = threading.Lock()
        self.block_all()

    # --- the mask ---
    def block_all(self) -> None:
        self.attn_db = np.full(self.n_bins, BLOCK_DB)
        self.phase_rad = np.zeros(self.n_bins)
        self.port = np.zeros(self.n_bins, dtype=int)

    def transfer(self, port: int = 1) -> np.ndarray:
        """Complex field transmission per bin into ``port`` (0 where the bin goes elsewhere)."""
        amp = np.where(self.port == port, 10.0 ** (-self.attn_db / 20.0), 0.0)
        return amp * np.exp(1j * self.phase_rad)

    def devinfo(self) -> dict:
        return {"model": self.model, "sno": self.sno, "ver": "2.3.0-sim", "startfreq": self.start_thz,
                "stopfreq": self.stop_thz, "ip": "127.0.0.1", "portcount": self.portcount,
                "rc": 0, "rctext": "OK"}

    def profile_text(self) -> str:
        with self._lock:
            rows = zip(self.freq_thz, self.attn_db, self.phase_rad, self.port)
            return "".join(f"{f:.3f}\t{a:.3f}\t{p:.4f}\t{int(q)}\n" for f, a, p, q in rows)

    def load(self, request: dict) -> int:
        """Apply a loadprofile request; return the device's rc (0: done, else nothing changed)."""
        kind = str(request.get("type", "wsp")).lower()
        if kind == "blockall":
            with self._lock:
                self.block_all()
            return self._done()
        if kind in ("transmit", "bandpass"):
            port = request.get("port", 1)
            if not isinstance(port, int) or not 1 <= port <= self.portcount:
                return -29
            attn = float(request.get("attn", 0.0))
            lo, hi = self.start_thz, self.stop_thz
            if kind == "bandpass":
                c, bw = float(request.get("center", 0)), float(request.get("bandwidth", 0))
                if not (self.start_thz <= c <= self.stop_thz) or bw < 0.010:
                    return -30
                lo, hi = c - bw / 2, c + bw / 2
            inside = (self.freq_thz >= lo - 1e-9) & (self.freq_thz <= hi + 1e-9)
            with self._lock:
                self.block_all()
                self.attn_db[inside] = min(max(attn, 0.0), 40.0)
                self.port[inside] = port
            return self._done()
        if kind != "wsp":
            return -2
        text = request.get("wsp")
        if not isinstance(text, str):
            return -2
        rows = [line.split() for line in text.strip().splitlines() if line.strip()]
        try:
            arr = np.array([[float(r[0]), float(r[1]), float(r[2]), float(r[3])] for r in rows])
        except (ValueError, IndexError):
            return -2
        if arr.size == 0:
            return -2
        f, attn, phase, port = arr.T
        idx = np.round((f - self.start_thz) / 0.001)
        if np.any(idx < 0) or np.any(idx >= self.n_bins):
            return -30
        if np.any(np.abs(f - (self.start_thz + 0.001 * idx)) > 1e-6) or len(np.unique(idx)) != len(idx):
            return -33
        if np.any(port != np.round(port)) or np.any(port < 0) or np.any(port > self.portcount):
            return -29
        if not np.all(np.isfinite(attn)) or not np.all(np.isfinite(phase)):
            return -31
        idx = idx.astype(int)
        with self._lock:
            self.block_all()
            blocked = attn > 40.0
            self.attn_db[idx] = np.where(blocked, BLOCK_DB, np.clip(attn, 0.0, 40.0))
            self.port[idx] = np.where(blocked, 0, port.astype(int))
            self.phase_rad[idx] = np.mod(phase, 2 * np.pi)
        return self._done()

    def _done(self) -> int:
        self.uploads += 1
        return 0


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):  # quiet
        pass

    def _send(self, code: int, body: str, ctype: str = "application/json") -> None:
        data = body.encode()
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _fault(self, path: str):
        server: WaveShaperServer = self.server  # type: ignore[assignment]
        fault = server.faults.pick(path) if server.faults.faults else None
        if fault is None:
            return None
        if fault.kind == "timeout":
            time.sleep(server.hang_s)
            self.close_connection = True
            return "handled"
        if fault.kind == "drop":
            self.close_connection = True
            return "handled"
        return fault.kind

    def _account(self, seconds: float) -> None:
        server: WaveShaperServer = self.server  # type: ignore[assignment]
        total = server.timing.query_latency_s + seconds
        server.clock.add(server.name, total)
        if server.timing.realtime and total > 0:
            time.sleep(total)

    def do_GET(self):
        server: WaveShaperServer = self.server  # type: ignore[assignment]
        path = self.path.split("?")[0].rstrip("/")
        fault = self._fault(path)
        if fault == "handled":
            return
        if fault in ("error", "refuse"):
            self._account(0.0)
            return self._send(500, json.dumps({"rc": -1, "rctext": RC_TEXT[-1]}))
        if path == "/waveshaper/devinfo":
            body, ctype = json.dumps(server.device.devinfo()), "application/json"
        elif path == "/waveshaper/getprofile":
            body, ctype = server.device.profile_text(), "text/plain"
        else:
            return self._send(404, json.dumps({"rc": -2, "rctext": "no such endpoint"}))
        self._account(0.0)
        self._send(200, GARBAGE if fault == "garbled" else body, ctype)

    def do_POST(self):
        server: WaveShaperServer = self.server  # type: ignore[assignment]
        path = self.path.split("?")[0].rstrip("/")
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        fault = self._fault(path)
        if fault == "handled":
            return
        if path != "/waveshaper/loadprofile":
            return self._send(404, json.dumps({"rc": -2, "rctext": "no such endpoint"}))
        if fault in ("error", "refuse"):
            rc = -31 if fault == "refuse" else -1
            self._account(0.0)
            return self._send(200, json.dumps({"rc": rc, "rctext": RC_TEXT[rc], "sno": server.device.sno}))
        try:
            request = json.loads(raw.decode() or "{}")
        except (ValueError, UnicodeDecodeError):
            request = None
        rc = server.device.load(request) if isinstance(request, dict) else -2
        self._account(server.device.upload_s if rc == 0 else 0.0)
        body = json.dumps({"rc": rc, "rctext": RC_TEXT.get(rc, "error"), "sno": server.device.sno})
        self._send(200, GARBAGE if fault == "garbled" else body)


class WaveShaperServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, name: str = "pulse_shaper", port: int = 0, hang_s: float = 1.0, **device):
        self.name = name
        self.device = SimWaveShaper(**device)
        self.faults = FaultInjector()
        self.timing = TimingModel()
        self.clock = LabClock()
        self.hang_s = hang_s  # how long a "timeout" fault holds the request before closing it
        super().__init__(("127.0.0.1", port), _Handler)
        self.thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05},
                                       name="sim-WaveShaper", daemon=True)
        self.thread.start()

    @property
    def port(self) -> int:
        return self.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
