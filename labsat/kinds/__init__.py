"""The physical network kinds: each one a module saying how it builds its twin, its bench adapter, its
virtual scene, how it fits its twin and what its configuration is. Registered here, in one place.

A kind is registered under the ``kind:`` value its layers use in instruments.yaml, with the short name
the CLI's ``--kind`` takes. Everything else (PhysicalLayer, optimizers, training, workflows, CLI, GUI,
calibration storage) is shared by all kinds.

- ``make_twin(config, layer) -> nn.Module``: the nominal (uncalibrated) differentiable twin, with
  ``forward(x, u)``, ``n_controls``, ``n_inputs``, ``n_outputs``, ``fitted_state()`` and
  ``load_fitted_state(state)``.
- ``make_hardware(station, layer)``: an object with ``forward(x, u) -> y`` (numpy), ``n_controls``,
  ``modes`` (inputs), counters ``batches``/``samples`` and ``forget_controls()``.
- ``make_scene(config, layer, seed)``: the virtual lab's hidden-truth physics for backend ``sim``
  (None: the kind needs no virtual instrument).
- ``fit_twin(twin, measurements, progress=...)`` (optional): the kind's own fit; default the mesh fit.
- ``config_model`` (optional, kinds written outside labsat): a pydantic model of the layer's own keys.

**A lab's own kind**, without editing labsat: name it in instruments.yaml as ``kind: package.module:KIND``
(any importable module holding a :class:`Kind`), or install a package with a ``labsat.kinds`` entry point
(``[project.entry-points."labsat.kinds"] mykind = "package.module:KIND"``) and write ``kind: mykind``.
:mod:`labsat.kinds.experiment` turns any callable ``(inputs, controls) -> outputs`` into such a kind
with a learned twin (the PAT code's ExpModule idea).
"""
from __future__ import annotations

from labsat.kinds.registry import (ENTRY_POINT_GROUP, KINDS, Kind, KindError, calibration_for,  # noqa: F401
                                   kind_of, layer_for_kind, layer_seed, load_kind, register_kind, settings_of)

# the built-in kinds, one module each (each registers itself; this order is the CLI's listing order)
from labsat.kinds import mesh  # noqa: E402,F401,I001
from labsat.kinds import microring  # noqa: E402,F401
from labsat.kinds import freespace  # noqa: E402,F401
from labsat.kinds import pulse  # noqa: E402,F401
