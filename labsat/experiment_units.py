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
def env_of(config, data: str, n_train, n_test) -> dict:
    """The part of a task that names the station and the data set."""
    return {"station": config.model_dump(mode="json"), "data": data, "n_train": n_train, "n_test": n_test}


class _Env:
    def __init__(self, env_json: str):
        from labsat.config import parse_config
        from labsat.data import load_dataset

        env = json.loads(env_json)
        self.config = parse_config(env["station"], "station (from the sweep task)")
        self.layer = self.config.layers["mesh"]
        heaters = self.config.instruments[self.layer.heaters.instrument]
        self.resistance = float(heaters.limits.resistance_ohm)
        self.data = load_dataset(env["data"], self.layer.modes, seed=0, n_train=env["n_train"], n_test=env["n_test"])

    def station(self, chip: int):
        from labsat.station import Station

        return Station(self.config, chip_seed=chip)

    def model(self, seed: int, twin_state: dict | None = None, state: dict | None = None):
        from labsat.train import build_model

        model = build_model(self.layer, self.resistance, self.data.n_classes, seed=seed, twin_state=twin_state)
        if state is not None:
            model.load_state_dict(state_from_json(state))
        return model


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
    from labsat.calibration import fit_twin, measure
    from labsat.physical import twin_for

    e = environment(task)
    with e.station(task["chip"]) as st:
        meas = measure(st.mesh(), task["settings"], task["inputs"], seed=1000 + task["seed"])
    twin = twin_for(e.layer, e.resistance)
    fit_twin(twin, meas)
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
            hw = st.mesh()
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
        st.lab.chip.extra_kelvin = float(task.get("delta_kelvin", 0.0))  # the environment, not the hidden truth
        model.physical.hardware = st.mesh()
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
