"""Evaluate: accuracy of saved models on the hardware of one or more devices; recorded as a run."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from labsat.workflows.hooks import QUIET, Hooks
from labsat.workflows.record import recorded


@dataclass
class Loaded:
    model: object
    data: object
    label: str
    meta: dict


def load_model(config, layer: str, path: str | Path, hardware=None, *, with_calibration: bool = False,
               data: str | None = None) -> Loaded:
    """A saved model rebuilt over ``layer`` of a station config, with the data set it was trained on
    (or ``data``, a ``--data`` spec, encoded with the model's encoder).

    ``with_calibration``: load the fitted twin the model was trained with (for landscapes on the twin);
    else the nominal twin (only the hardware forward matters). A model made for another layer is
    refused with its file named."""
    from labsat.calibration import load_calibration
    from labsat.kinds import kind_of
    from labsat.train import load_model_file, model_for
    from labsat.workflows.training import dataset_for

    blob = load_model_file(path)
    meta = blob["meta"]
    state = None
    cal = meta.get("calibration")
    if with_calibration and cal and cal != "nominal" and Path(cal).exists():
        state = load_calibration(cal)["twin"]
    model = model_for(config, layer, meta["n_classes"], twin_state=state, hardware=hardware)
    try:
        result = model.load_state_dict(blob["state_dict"], strict=False)
    except RuntimeError as exc:  # size mismatch: trained for another layer
        detail = "; ".join(line.strip() for line in str(exc).splitlines()[1:])
        raise ValueError(f"{path} does not fit layer '{layer}' of this station: {detail}") from None
    if result.unexpected_keys or any(k.startswith(("physical.u", "readout")) for k in result.missing_keys):
        raise ValueError(f"{path} does not fit layer '{layer}' of this station "
                         f"(unexpected {result.unexpected_keys}, missing {result.missing_keys})")
    kind = kind_of(config, layer)
    dataset = dataset_for(kind.make_twin(config, layer), encoder_state=blob["encoder"],
                          spec=data or meta.get("data") or "digits", kind_name=kind.name)
    return Loaded(model, dataset, Path(path).stem, meta)


def accuracies(model_files: list, stations: dict, hooks: Hooks = QUIET, data: str | None = None
               ) -> dict[str, dict[str, float]]:
    """Test accuracy of each model on each station's hardware: ``{model: {station label: accuracy}}``, on
    the test split of ``data`` (a ``--data`` spec), by default the data set each model was trained on."""
    from labsat.train import accuracy

    results: dict[str, dict[str, float]] = {}
    for path in model_files:
        results[str(path)] = {}
        for label, st in stations.items():
            hooks.tick()
            loaded = load_model(st.config, st.layer_names[0], path, hardware=st.layer(), data=data)
            results[str(path)][label] = accuracy(loaded.model, loaded.data.x_test, loaded.data.y_test,
                                                 on_hardware=True)
            hooks.emit("accuracy", (str(path), label, results[str(path)][label]))
    return results


def evaluate(model_files: list, stations: dict, hooks: Hooks = QUIET, config: dict | None = None,
             data: str | None = None) -> tuple[int, dict]:
    """:func:`accuracies`, recorded as an ``evaluate`` run of the first station: ``(run, results)``."""
    first = next(iter(stations.values()))
    record = {"models": [str(Path(m).resolve()) for m in model_files], "data": data, **(config or {})}
    with recorded(first, "evaluate", record, hooks) as rec:
        results = accuracies(model_files, stations, hooks, data=data)
        rec.db.finish(rec.run, "completed", result={"accuracy": results, "devices": list(stations)})
    return rec.run, results
