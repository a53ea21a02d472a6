"""The independent units of ``labsat experiment``, as sweep tasks (:mod:`labsat.sweeps`).

Each unit is a top-level function of one plain JSON task dict, computes its result from the task alone
(seeded), and runs wherever the sweep sends it: here, on a LocalCluster worker, or on a lab's cluster.

- :func:`calibrate`: measure virtual chip ``chip`` with a budget of random settings and fit the twin
  -> the twin's fitted state (the imprecise twin of the experiments).
- :func:`train`: train one model (offline on the twin, or online on a virtual chip) -> its state dict
  and a few figures about the training.
- :func:`evaluate`: one model's test accuracy on one virtual chip at one environment temperature
  change (and, if asked, on its twin).
- :func:`sharpness`: loss increase within rho and top Hessian eigenvalues of one model on its twin.

Every task carries ``env``: the station config (as JSON), the data set and its sizes, so a worker on
another machine rebuilds the same station and data (``mnist:PATH`` must then exist there too). Every
virtual-chip unit opens its own fresh virtual lab: a result never depends on which tasks ran before it
in the same process, so serial and distributed sweeps give the same numbers. Models travel inside tasks
as exact JSON (:func:`state_json`; float64 and float32 survive the round trip bit for bit).
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict
from functools import lru_cache

import numpy as np
import torch


# --- the environment every task rebuilds once per process ---
def env_of(config, data: str, n_train, n_test, layer: str | None = None) -> dict:
    """The part of a task that names the station, its layer (default: the first) and the data set."""
    env = {"station": config.model_dump(mode="json"), "data": data, "n_train": n_train, "n_test": n_test}
    if layer is not None:
        env["layer"] = layer
    return env


class _Env:
    """A task's station config, its layer and kind, and the data set, built from the task's ``env``."""

    def __init__(self, env_json: str):
        from labsat.config import parse_config
        from labsat.kinds import kind_of

        env = json.loads(env_json)
        self.config = parse_config(env["station"], "station (from the sweep task)")
        self.layer_name = env.get("layer") or next(iter(self.config.layers))
        self.layer = self.config.layers[self.layer_name]
        self.kind = kind_of(self.config, self.layer_name)
        self.data = dataset(self.kind.make_twin(self.config, self.layer_name), env["data"], env["n_train"],
                            env["n_test"], self.kind.name)

    def station(self, chip: int):
        """A fresh virtual lab of chip ``chip`` with this layer's instruments connected."""
        from labsat.station import Station

        return Station(self.config, chip_seed=chip, layers=[self.layer_name])

    def model(self, seed: int, twin_state: dict | None = None, state: dict | None = None):
        from labsat.train import model_for

        model = model_for(self.config, self.layer_name, self.data.n_classes, seed=seed, twin_state=twin_state)
        if state is not None:
            model.load_state_dict(state_from_json(state))
        return model


def dataset(twin, spec: str, n_train, n_test, kind_name: str = ""):
    """The experiments' data set for ``twin``: ``spec`` (:func:`labsat.data.load_dataset`) sized to the twin's
    inputs, or the images of a twin that brings its own (free space: digits only)."""
    if hasattr(twin, "load_data"):
        from labsat.workflows.training import dataset_for

        return dataset_for(twin, spec=spec, kind_name=kind_name)
    from labsat.data import load_dataset

    return load_dataset(spec, twin.n_inputs, seed=0, n_train=n_train, n_test=n_test)


@lru_cache(maxsize=4)
def _env_cached(env_json: str) -> _Env:
    return _Env(env_json)


def environment(task: dict) -> _Env:
    """The station config, layer and data set of a task (built once per process and environment)."""
    return _env_cached(json.dumps(task["env"], sort_keys=True))


# --- models as exact JSON ---
def state_json(state_dict) -> dict:
    """A torch state dict as plain JSON: {name: [dtype, shape, flat values]}; exact for float32/64."""
    return {k: [str(v.dtype).removeprefix("torch."), list(v.shape), v.detach().reshape(-1).tolist()]
            for k, v in state_dict.items()}


def state_from_json(blob: dict) -> dict:
    return {k: torch.tensor(values, dtype=getattr(torch, dtype)).reshape(shape)
            for k, (dtype, shape, values) in blob.items()}


# --- the units ---
def calibrate(task: dict) -> dict:
    """{env, chip, settings, inputs, seed} -> the fitted twin state of virtual chip ``chip``."""
    from labsat.calibration import measure

    e = environment(task)
    with e.station(task["chip"]) as st:
        meas = measure(st.layer(e.layer_name), task["settings"], task["inputs"], seed=1000 + task["seed"])
    twin = e.kind.make_twin(e.config, e.layer_name)
    e.kind.fit(twin, meas)
    return twin.fitted_state()


def train(task: dict) -> dict:
    """{env, chip, seed, config (TrainConfig as a dict), twin (fitted state), start (state_json or
    None: fine-tune this model)} -> {"state": state dict, "meta": {...}}. Online training runs on a fresh
    virtual lab of chip ``chip``."""
    from labsat.train import TrainConfig, train as train_model

    e = environment(task)
    cfg = TrainConfig(**task["config"])
    model = e.model(task["seed"], task["twin"], task.get("start"))
    t0 = time.perf_counter()
    if cfg.mode == "online":
        with e.station(task["chip"]) as st:
            hw = st.layer(e.layer_name)
            model.physical.hardware = hw
            try:
                history = train_model(model, e.data, cfg)
            finally:
                model.physical.hardware = None
            queries = hw.batches
    else:
        history = train_model(model, e.data, cfg)
        queries = 0
    meta = {"seed": task["seed"], "config": asdict(cfg),
            "seconds": time.perf_counter() - t0, "hardware_queries": queries,
            "final_loss": history.epochs[-1].loss if history.epochs else None,
            "queries_per_step": (float(np.mean(history.step_hardware_batches))
                                 if history.step_hardware_batches else 0.0)}
    return {"state": model.state_dict(), "meta": meta}


def evaluate(task: dict) -> dict:
    """{env, chip, delta_kelvin, model: {seed, state}, twin: bool} -> {"device": accuracy on a fresh virtual
    lab of chip ``chip`` whose environment is ``delta_kelvin`` warmer, "twin": accuracy on the model's own
    twin (if asked)}."""
    from labsat.train import accuracy

    e = environment(task)
    spec = task["model"]
    model = e.model(spec["seed"], state=spec["state"])
    x, y = e.data.x_test, e.data.y_test
    out = {"device": None, "twin": accuracy(model, x, y, on_hardware=False) if task.get("twin") else None}
    with e.station(task["chip"]) as st:
        if task.get("delta_kelvin"):  # the environment, not the hidden truth (a scene with a temperature)
            st.lab.scenes[e.layer_name].extra_kelvin = float(task["delta_kelvin"])
        model.physical.hardware = st.layer(e.layer_name)
        try:
            out["device"] = accuracy(model, x, y, on_hardware=True)
        finally:
            model.physical.hardware = None
    return out


def sharpness(task: dict) -> dict:
    """{env, model: {seed, state}, seed, rho, n_random, adversarial_steps, hessian_iters, samples} -> the
    loss increase within rho (controls) and the top Hessian eigenvalues, on the model's twin."""
    from labsat.sat.sharpness import max_loss_increase, top_hessian_eigenvalue

    e = environment(task)
    model = e.model(task["model"]["seed"], state=task["model"]["state"])
    n = min(task["samples"], len(e.data.x_test))
    x, y = e.data.x_test[:n], e.data.y_test[:n]
    loss = torch.nn.CrossEntropyLoss()
    model.physical.use_hardware = False
    model.eval()
    fn = lambda: loss(model(x), y)  # noqa: E731
    controls = [model.physical.u]
    seed = task["seed"]
    inc = max_loss_increase(model, fn, task["rho"], n_random=task["n_random"],
                            adversarial_steps=task["adversarial_steps"], params=controls, seed=seed)
    eig_u = top_hessian_eigenvalue(model, fn, iters=task["hessian_iters"], params=controls, seed=seed)
    eig_all = top_hessian_eigenvalue(model, fn, iters=task["hessian_iters"],
                                     params=[p for p in model.parameters() if p.requires_grad], seed=seed)
    return {"twin_loss": inc["base"], "random_increase": inc["random"], "adversarial_increase": inc["adversarial"],
            "hessian_top_controls": eig_u, "hessian_top_all": eig_all}
