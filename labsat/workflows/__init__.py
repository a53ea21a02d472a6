"""The workflows every front door goes through: calibrate, train, evaluate, experiment (and the demo).

Each takes a connected :class:`~labsat.station.Station` (or a setup), its parameters and
:class:`Hooks` (progress events, an abort check, notes for the user), records itself in the station's run
database (``labsat runs list``), and returns a result. The CLI (:mod:`labsat.cli`), the workstation GUI
(:mod:`labsat.gui.jobs`), ``labsat demo`` and ``labsat experiment`` are adapters that turn their own
inputs into these calls and their results into tables or plots. Defaults live in :mod:`labsat.defaults`.
"""
from labsat.workflows.calibrate import CalibrationParams, CalibrationResult, calibrate, measure_and_fit, save
from labsat.workflows.demo import DemoParams, DemoResult, run_demo
from labsat.workflows.evaluate import accuracies, evaluate, load_model
from labsat.workflows.experiment import experiment, paper_experiment
from labsat.workflows.hooks import QUIET, Aborted, Hooks, run_tags
from labsat.workflows.training import TrainingRequest, TrainingResult, default_lr, resume_request, train, twin_state

__all__ = ["Aborted", "CalibrationParams", "CalibrationResult", "DemoParams", "DemoResult", "Hooks", "QUIET",
           "TrainingRequest", "TrainingResult", "accuracies", "calibrate", "default_lr", "evaluate", "experiment", "load_model",
           "measure_and_fit", "paper_experiment", "resume_request", "run_demo", "run_tags", "save", "train", "twin_state"]
