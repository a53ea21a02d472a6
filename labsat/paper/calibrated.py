"""The calibrated twin of a paper-protocol MZI chip: measure the chip, fit labsat's twin, train on the fit.

This is labsat's own workflow (measure → fit → train) put beside the paper's methods, which train on the
ideal mesh and deploy blind (BP, SAT) or use the chip's forward values (PAT, SAT in situ):

1. :func:`virtual_chip`: the chip of :mod:`labsat.paper.mzi` (its hidden errors, either error model) placed in
   the virtual lab's physics (:class:`labsat.calibration.simchip.DirectHardware`: heater powers, modulators,
   detector noise and 16-bit ADC as the lab's chip; no drift and no modulator spread, which paper.mzi's chip
   does not have). Its hidden truth is *set* from the errors dict, so the chip calibrated is exactly the chip
   deployed on.
2. :func:`calibrate`: issue 12's large-mesh calibration,
   :func:`labsat.calibration.progressive.calibrate_progressive` with its default plan for N modes (4 control
   bands × 32 settings × N²/8 inputs), fitting a fresh :class:`labsat.twins.mzi.MZIMeshTwin` (the datasheet
   twin) to the readings. The fit never reads the truth; only the report line (held-out RMSE / noise floor)
   does.
3. :func:`fitted_errors`: the fitted imperfections as an errors dict in paper.mzi's labsat form
   (``offset``, relative ``eta``, ``kappa``, coupler ``split``, port ``gain``), which
   :meth:`labsat.paper.mzi.Mesh.matrix` applies exactly as it applies a chip's own errors: the twin and the
   chip are the same mesh code with different error dicts.

The parameters are physical (per heater: offset, efficiency, crosstalk to the next heater; per coupler: the
splitting angle; per output port: the gain) and mean the same in the virtual chip's heater convention and in
paper.mzi's Bloch convention (an error on heater θ adds to θ in both), so the fit carries over unchanged; the
heater ordering is the same (θ, φ of every MZI interleaved). A programmed phase ``p`` is the heater control
``u = p / phase_per_u``. The paper's error model is written in the same form (``eta`` 1, ``kappa`` 0,
``split = arccos(√((1+e)/2)) − π/4``, ``gain`` 1): one form for the chip, the twin and both models.

Each chip is calibrated once and its fit cached as JSON (``MZIMeshTwin.fitted_state``) in the experiment's
cache folder; every method and seed on that chip loads it.
"""
from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path

import numpy as np
import torch

DETECTOR_RANGE_W = {32: 5e-4, 64: 1e-4}  # as benchmarks/paper_scale_calibration.py (stations/paper-mzi.yaml)


def detector_range(modes: int) -> float:
    return DETECTOR_RANGE_W[32] if modes <= 32 else DETECTOR_RANGE_W[64]


def labsat_form(errors: dict, n_heaters: int) -> dict:
    """Either model's errors dict in the labsat form {offset, eta, kappa, split, gain} (float64 tensors)."""
    if "eta" in errors:
        return {k: torch.as_tensor(errors[k], dtype=torch.float64) for k in ("offset", "eta", "kappa", "split", "gain")}
    f64 = lambda a: torch.as_tensor(a, dtype=torch.float64)  # noqa: E731
    bs = f64(errors["bs"])
    n_modes = int(round((1 + math.sqrt(1 + 8 * len(bs))) / 2))
    return {"offset": torch.stack([f64(errors["theta"]), f64(errors["phi"])], -1).reshape(-1),
            "eta": torch.ones(n_heaters, dtype=torch.float64), "kappa": torch.zeros(n_heaters - 1, dtype=torch.float64),
            "split": torch.arccos(torch.sqrt((1 + bs) / 2)) - math.pi / 4,
            "gain": torch.ones(n_modes, dtype=torch.float64)}


def virtual_chip(modes: int, errors: dict, seed: int):
    """:class:`DirectHardware` (the virtual lab's chip physics) whose hidden truth is ``errors``."""
    from labsat.calibration.simchip import DirectHardware
    from labsat.drivers.sim.chip import ChipTruth

    hw = DirectHardware(seed=seed, modes=modes, detector_range_w=detector_range(modes), drift_kelvin_per_hour=0.0)
    spec, h = hw.chip.spec, hw.chip.layout.n_heaters
    e = {k: v.numpy() for k, v in labsat_form(errors, h).items()}
    hw.chip.truth = ChipTruth(offset=e["offset"], eta=spec.eta_nominal * e["eta"], kappa=e["kappa"],
                              coupler=math.pi / 4 + e["split"], port_gain=e["gain"],
                              modulator_vpi=np.full(modes, spec.modulator_vpi), drift_sensitivity=np.ones(h))
    return hw


def fitted_errors(twin) -> dict:
    """A fitted :class:`MZIMeshTwin`'s imperfections as paper.mzi's labsat-form errors dict."""
    return {"offset": twin.offset.detach().clone(), "eta": twin.log_eff.detach().exp(),
            "kappa": twin.crosstalk.detach().clone(), "split": twin.coupler_error.detach().clone(),
            "gain": twin.log_gain.detach().exp()}


def calibrate(modes: int, errors: dict, chip: int, cache: Path | None = None, cal_seed: int = 0,
              settings: int | None = None) -> tuple[dict, dict]:
    """Calibrate chip ``chip`` (hidden ``errors``) once: (the fitted errors dict, a report dict with the
    readings, fit CPU seconds and held-out RMSE against the noise floor). Cached in ``cache`` (a JSON file).
    ``settings``: heater settings per control band (default: the plan's; fewer give a less precise twin)."""
    from labsat.calibration.fit import rmse
    from labsat.calibration.measure import measure
    from labsat.calibration.progressive import ProgressivePlan, calibrate_progressive
    from labsat.twins.mzi import MZIMeshTwin

    hw = virtual_chip(modes, errors, seed=chip)
    twin = MZIMeshTwin(modes, hw.phase_per_u)
    if cache is not None and Path(cache).exists():
        saved = json.loads(Path(cache).read_text())
        twin.load_fitted_state(saved["fit"])
        return fitted_errors(twin), saved["report"]
    held = measure(hw, 16, 16, seed=10_000 + chip, schedule=(1.0,))  # fresh settings over the whole range
    plan = ProgressivePlan.for_modes(modes)
    if settings:
        plan.settings = int(settings)
    t0 = time.process_time()
    result = calibrate_progressive(hw, twin, plan, seed=cal_seed)
    report = {"cal_readings": result.readings, "cal_cpu_s": time.process_time() - t0,
              "cal_rmse": rmse(twin, held), "cal_nominal_rmse": rmse(MZIMeshTwin(modes, hw.phase_per_u), held),
              "cal_floor": hw.noise_floor(held)}  # the floor reads the truth: a report, not the product
    report["cal_ratio"] = report["cal_rmse"] / report["cal_floor"]
    if cache is not None:
        cache = Path(cache)
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"fit": twin.fitted_state(), "report": report}))
        tmp.replace(cache)  # whole or absent: a cut-off run recalibrates
    return fitted_errors(twin), report
