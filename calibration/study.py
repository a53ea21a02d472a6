"""Twin accuracy vs query budget (number of detector readings), sweep-initialised vs nominal-initialised.

One *reading* is one input vector sent through the chip at one heater setting, with every detector
read (N values). For a budget ``R``:

* **nominal init**: ``R // inputs`` random heater settings x ``inputs`` random inputs, global fit from
  the datasheet twin (the skeleton's calibration);
* **sweeps init**: per-element sweeps take about half of ``R`` (as many points per heater as fit,
  at least 5; no crosstalk sweeps), random settings the rest; :func:`~.sweeps.fit_from_sweeps`.

Accuracy is the RMSE on held-out settings measured separately (not counted in the budget);
``errors(twin)`` (tests and reports only: it reads the hidden truth) adds parameter errors.
"""
from __future__ import annotations

import time
from typing import Callable

import numpy as np

from .fit import fit_twin, rmse
from .measure import Measurements, measure
from .sweeps import fit_from_sweeps, plan_readings, run_sweeps


def sweep_points_for(budget: int, n_heaters: int, modes: int, share: float = 0.5) -> int:
    """Points per heater that fit in ``share`` of the budget (0 when fewer than 5 would fit)."""
    per_point = plan_readings(n_heaters, modes, 1, extra_inputs=0, crosstalk=False)
    points = int(budget * share // per_point)
    return points if points >= 5 else 0


def calibrate_with_budget(hardware, make_twin: Callable[[], object], budget: int, init: str,
                          inputs: int = 16, seed: int = 0, adam_steps: int = 300,
                          lbfgs_steps: int = 100) -> tuple[object, dict]:
    """Calibrate within ``budget`` readings; returns (twin, info with readings used and seconds)."""
    if init not in ("nominal", "sweeps"):
        raise ValueError(f"init must be 'nominal' or 'sweeps', got {init!r}")
    t0 = time.perf_counter()
    twin = make_twin()
    used = 0
    if init == "sweeps":
        points = sweep_points_for(budget, hardware.n_controls, hardware.modes)
        if not points:
            raise ValueError(f"a budget of {budget} readings is too small for sweeps of "
                             f"{hardware.n_controls} heaters (needs {2 * plan_readings(hardware.n_controls, hardware.modes, 5, 0, False)})")
        sweeps = run_sweeps(hardware, points=points, extra_inputs=0, crosstalk=False, seed=seed)
        used += sweeps.readings
        rest = (budget - used) // inputs
        extra = measure(hardware, rest, inputs, seed=seed + 1) if rest > 0 else None
        used += 0 if extra is None else rest * inputs
        fit_from_sweeps(twin, sweeps, extra, adam_steps=adam_steps, lbfgs_steps=lbfgs_steps)
    else:
        settings = max(1, budget // inputs)
        data = measure(hardware, settings, inputs, seed=seed + 1)
        used += settings * inputs
        fit_twin(twin, data, adam_steps=adam_steps, lbfgs_steps=lbfgs_steps)
    return twin, {"readings": used, "seconds": time.perf_counter() - t0}


def budget_study(hardware, make_twin: Callable[[], object], budgets: list[int], held: Measurements,
                 errors: Callable[[object], dict] | None = None, inputs: int = 16, seed: int = 0,
                 adam_steps: int = 300, lbfgs_steps: int = 100,
                 progress: Callable[[dict], None] | None = None) -> list[dict]:
    """Rows ``{budget, init, readings, heldout_rmse, seconds, **errors}`` for each budget and init."""
    rows = [{"budget": 0, "init": "nominal", "readings": 0, "heldout_rmse": rmse(make_twin(), held),
             "seconds": 0.0, **(errors(make_twin()) if errors else {})}]
    if progress:
        progress(rows[-1])
    for budget in budgets:
        for init in ("nominal", "sweeps"):
            try:
                twin, info = calibrate_with_budget(hardware, make_twin, budget, init, inputs, seed,
                                                   adam_steps, lbfgs_steps)
            except ValueError as exc:
                rows.append({"budget": budget, "init": init, "skipped": str(exc)})
            else:
                rows.append({"budget": budget, "init": init, **info, "heldout_rmse": rmse(twin, held),
                             **(errors(twin) if errors else {})})
            if progress:
                progress(rows[-1])
    return rows


def parameter_errors(twin, truth, spec) -> dict[str, float]:
    """Mean absolute error of each fitted imperfection vs the virtual chip's hidden truth.

    (Reports and tests only.) Offsets are compared modulo 2 pi, efficiency and gain in %.
    """
    off = twin.offset.detach().numpy()
    d = (off - truth.offset + np.pi) % (2 * np.pi) - np.pi
    eff = np.exp(twin.log_eff.detach().numpy())
    gain = np.exp(twin.log_gain.detach().numpy())
    return {"offset_rad": float(np.mean(np.abs(d))),
            "efficiency_pct": float(100 * np.mean(np.abs(eff / (truth.eta / spec.eta_nominal) - 1))),
            "crosstalk": float(np.mean(np.abs(twin.crosstalk.detach().numpy() - np.diag(truth.crosstalk, 1)))),
            "coupler_rad": float(np.mean(np.abs(twin.coupler_error.detach().numpy() - (truth.coupler - np.pi / 4)))),
            "gain_pct": float(100 * np.mean(np.abs(gain / truth.port_gain - 1)))}
