"""A network kind written outside labsat, as a lab would: coupled pendula (one of the PAT paper's
physical systems) simulated as a callable ``(inputs, controls) -> outputs``. Named in a station file as
``kind: "pendula_kind:KIND"``; labsat gives it a learned twin, calibration and physics-aware training.

Inputs set the pendula's initial angles, controls set the springs between neighbours and each pendulum's
length (its natural frequency); the outputs are the pendula's oscillation amplitudes² after a fixed time.
Each chip seed is another "device": other natural frequencies and damping, which the twin never sees.
"""
from __future__ import annotations

import numpy as np

from labsat.kinds.experiment import experiment_kind


def system(settings, seed: int):
    n = settings.n_inputs
    if settings.n_controls != 2 * n - 1 or settings.n_outputs != n:
        raise ValueError("pendula: n_controls must be 2 n_inputs - 1 and n_outputs n_inputs")
    rng = np.random.default_rng(seed)
    omega0 = 2 * np.pi * (0.5 + 0.05 * rng.standard_normal(n))  # natural frequencies (hidden)
    damping = 0.15 * (1 + 0.2 * rng.standard_normal(n))
    noise = np.random.default_rng(seed + 1000)
    dt, steps = 0.02, 60

    def run(x, u):
        k = 6.0 * u[: n - 1]  # springs between neighbours
        w2 = omega0**2 * (1.0 + 0.6 * u[n - 1:])  # lengths: natural frequency squared
        theta = 1.0 * (x - 0.5)  # initial angles (rad): large enough for sin() to matter
        v = np.zeros_like(theta)
        for _ in range(steps):  # semi-implicit Euler, every input at once
            spring = np.zeros_like(theta)
            spring[:, :-1] += k * (theta[:, 1:] - theta[:, :-1])
            spring[:, 1:] -= k * (theta[:, 1:] - theta[:, :-1])
            v += dt * (-w2 * np.sin(theta) + spring - damping * v)
            theta += dt * v
        y = theta**2 + v**2 / w2
        return y + 1e-3 * noise.standard_normal(y.shape)

    return run


KIND = experiment_kind("pendula", system, "coupled pendula (simulated): springs and lengths as controls")
