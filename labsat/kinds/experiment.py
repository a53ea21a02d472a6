"""Any experiment as a kind: a callable ``(inputs, controls) -> outputs`` gets a learned twin, a calibration
and physics-aware (sharpness-aware) training, with no other code (the PAT code's ``ExpModule`` idea).

A lab writes, outside labsat::

    # mylab/pendula.py
    from labsat.kinds.experiment import experiment_kind

    def system(settings, seed):          # settings: the layer's keys from instruments.yaml
        return lambda x, u: ...          # x (B, n_inputs), u (n_controls) -> y (B, n_outputs), numpy

    KIND = experiment_kind("pendula", system, "coupled pendula")

and names it in instruments.yaml: ``layers: {p: {kind: "mylab.pendula:KIND", n_inputs: 6, n_controls: 11,
n_outputs: 6}}`` (or installs a ``labsat.kinds`` entry point). The callable may drive real instruments
(backend ``real``) or simulate (backend ``sim``: ``seed`` is the station's chip seed, one "device" per seed).
"""
from __future__ import annotations

from typing import Callable

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from labsat.kinds.registry import Kind


class ExperimentSettings(BaseModel):
    """The layer keys of an experiment kind (a kind may extend this model with its own)."""

    model_config = ConfigDict(extra="forbid")
    n_inputs: int = Field(ge=1, le=4096)
    n_controls: int = Field(ge=1, le=4096)
    n_outputs: int = Field(ge=1, le=4096)
    hidden: int = Field(128, ge=4, le=4096, description="width of the learned twin")

    def roles(self) -> dict:
        return {}  # the callable reaches its own instruments, if any


class CallableHardware:
    """The bench adapter of an experiment kind: counts forwards like every other kind's adapter."""

    def __init__(self, fn: Callable, settings: ExperimentSettings, name: str = "experiment"):
        self.fn, self.settings, self.name = fn, settings, name
        self.modes = settings.n_inputs
        self.n_controls = settings.n_controls
        self.batches = 0
        self.samples = 0
        self.heater_updates = 0

    def forward(self, x, u) -> np.ndarray:
        x = np.atleast_2d(np.asarray(x, dtype=float))
        u = np.asarray(u, dtype=float)
        if x.shape[1] != self.modes or u.shape != (self.n_controls,):
            raise ValueError(f"{self.name}: inputs (B, {self.modes}) and {self.n_controls} controls expected, "
                             f"got {x.shape} and {u.shape}")
        y = np.asarray(self.fn(x, u), dtype=float)
        if y.shape != (len(x), self.settings.n_outputs):
            raise ValueError(f"{self.name}: the experiment returned shape {y.shape}, expected "
                             f"({len(x)}, {self.settings.n_outputs})")
        self.batches += 1
        self.samples += len(x)
        return y

    def forget_controls(self) -> None:
        pass


def experiment_kind(name: str, system: Callable, description: str = "",
                    settings_model: type[ExperimentSettings] = ExperimentSettings) -> Kind:
    """A :class:`Kind` for ``system(settings, seed) -> f(x, u) -> y``: learned twin
    (:class:`labsat.twins.pulse_learned.LearnedTwin`), fitted by :func:`~labsat.calibration.pulse.fit_learned`."""
    from labsat.kinds.registry import settings_of

    def make_twin(config, layer):
        from labsat.twins.pulse_learned import LearnedTwin

        s = settings_of(config, layer)
        return LearnedTwin(s.n_inputs, s.n_controls, s.n_outputs, hidden=s.hidden)

    def make_hardware(station, layer):
        s = settings_of(station.config, layer)
        return CallableHardware(system(s, station.config.station.sim.chip_seed), s, name=layer)

    def make_scene(config, layer, seed):
        return None  # no virtual instrument: the callable is the experiment

    def fit(twin, data, progress=None):
        from labsat.calibration.pulse import fit_learned

        return fit_learned(twin, data, progress=progress)

    return Kind(name, name, description or f"{name}: an experiment as a callable, with a learned twin",
                make_twin, make_hardware, make_scene, fit_twin=fit, config_model=settings_model)
