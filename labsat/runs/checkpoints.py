"""Checkpoint files (written whole or not at all) and the per-epoch training recorder."""
from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

from labsat.runs.db import RunDB, RunError, disk_error

def atomic_save(obj: Any, path: str | Path) -> Path:
    """``torch.save`` to a temporary name, fsync, rename: the path holds a whole file or nothing new."""
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    return path


def load_checkpoint(path: str | Path) -> dict:
    import torch

    path = Path(path)
    if not path.exists():
        raise RunError(f"{path}: checkpoint file is missing")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)  # tensors and plain data only
    except Exception as exc:
        raise RunError(f"{path}: unreadable checkpoint ({exc})") from exc
    if not isinstance(blob, dict) or blob.get("format") != "labsat-checkpoint":
        raise RunError(f"{path}: not a labsat checkpoint")
    return blob


class TrainRecorder:
    """Records one training run: checkpoint + epoch row per epoch, final parameters, end status.

    Pass :meth:`checkpoint` to ``train(..., checkpoint=...)`` and :meth:`resume_state` to
    ``train(..., resume=...)``.
    """

    def __init__(self, db: RunDB, run: int, checkpoint_dir: str | Path, hardware=None):
        self.db, self.run = db, run
        self.checkpoint_dir = Path(checkpoint_dir)
        self.hardware = hardware
        self._hw_last = self._hw_counts()
        self.last_epoch = 0
        last = db.last_checkpoint(run)
        if last is not None:
            self.last_epoch = last["epoch"]

    def _hw_counts(self) -> tuple[int, int]:
        hw = self.hardware
        if hw is None:
            return (0, 0)
        return (int(getattr(hw, "samples", 0)), int(getattr(hw, "heater_updates", 0)))

    def resume_state(self) -> dict | None:
        last = self.db.last_checkpoint(self.run)
        return None if last is None else load_checkpoint(last["path"])

    def checkpoint(self, record, state: dict) -> None:
        """Called by ``train`` after each epoch: write the checkpoint file, then commit the epoch."""
        samples, updates = self._hw_counts()
        row = dict(vars(record)) if not isinstance(record, dict) else dict(record)
        row["hardware_samples"] = samples - self._hw_last[0]
        row["heater_updates"] = updates - self._hw_last[1]
        self._hw_last = (samples, updates)
        path = self.checkpoint_dir / f"run-{self.run:05d}" / f"epoch-{row['epoch']:05d}.pt"
        try:
            atomic_save({"format": "labsat-checkpoint", "version": 1, "run": self.run, **state}, path)
        except OSError as exc:
            raise disk_error(exc, f"checkpoint of epoch {row['epoch']} ({path})") or exc
        self.db.record_epoch(self.run, row, path)
        self.last_epoch = row["epoch"]

    def attach(self, hardware) -> None:
        """Count hardware queries from this (possibly new) hardware object on."""
        self.hardware = hardware
        self._hw_last = self._hw_counts()

    def record_final_parameters(self, model, layer_cfg) -> None:
        """The trained controls and the heater voltages they set (one value per heater channel)."""
        import numpy as np

        u = model.physical.controls().detach().cpu().numpy().astype(float).ravel()
        self.db.set_parameters(self.run, "u", u)
        heaters = getattr(layer_cfg, "heaters", None)
        if heaters is None or len(heaters.channels) != len(u):
            return  # a kind without one heater per control: the controls alone are recorded
        if self.hardware is not None and hasattr(self.hardware, "control_voltages"):
            volts = self.hardware.control_voltages(u)  # what the driver was (or would be) told
        else:
            from labsat.hardware.heater_bank import heater_voltages

            volts = heater_voltages(u, layer_cfg.v_max)  # the control law of heater-tuned kinds
        self.db.set_parameters(self.run, "heater_v", volts, indices=list(heaters.channels))
