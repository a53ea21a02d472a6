"""The run database: every calibration, training, evaluation and experiment run, in one sqlite file.

The file is ``<station runs_dir>/labsat.sqlite`` (plain sqlite through the standard library, WAL
journal, ``synchronous=FULL``). Every write is one transaction, and a training epoch is exactly one:
its metrics row and the row naming its checkpoint file commit together or not at all, after the
checkpoint file itself was written (to a temporary name, fsynced, renamed). A process killed at any
instant (SIGKILL included) therefore leaves a consistent database whose last checkpoint row names a
complete file: at worst the epoch in progress is lost, never a completed one.

Schema (version 1)::

    meta(key TEXT PRIMARY KEY, value TEXT)                  -- schema_version
    runs(id INTEGER PRIMARY KEY,                            -- the RUN of `labsat runs show RUN`
         kind TEXT    -- calibrate | train | evaluate | experiment (a database made before
                      -- experiment runs is widened in place when opened)
         status TEXT  -- running | completed | failed | interrupted
         config TEXT  -- JSON: the command's settings (train: TrainConfig + station, chip seed, ...)
         station_yaml TEXT       -- snapshot of instruments.yaml as it was when the run started
         station_path TEXT       -- where that file was
         calibration TEXT        -- calibration file used (or 'nominal'); for calibrate: the file made
         device TEXT, git_revision TEXT,
         host TEXT, pid INTEGER, proc_start TEXT  -- the process holding the run while 'running'
                                                  -- (proc_start: its start time, so a reused pid is told apart)
         started_utc TEXT, ended_utc TEXT,
         resumed INTEGER         -- how many times `--resume` continued it
         error TEXT              -- why it failed or was interrupted
         result TEXT)            -- JSON: final metrics, output files
    epochs(run, epoch, loss, train_accuracy, test_accuracy, seconds,
           hardware_batches, hardware_samples, heater_updates, recorded_utc)   PRIMARY KEY (run, epoch)
    checkpoints(run, epoch, path, created_utc)                                 PRIMARY KEY (run, epoch)
    parameters(run, name, idx, value)     -- final parameters: name 'heater_v' (volts per heater
                                          -- channel, idx = channel) and 'u' (normalised controls)

A run left ``running`` by a process that no longer exists (killed, power cut) is marked
``interrupted`` the next time the database is opened on that host. ``labsat train --resume RUN``
continues any run that is not completed from its last checkpoint, with the run's own stored settings.

One module per idea: :mod:`~labsat.runs.db` (schema, transactions, stale runs, export),
:mod:`~labsat.runs.checkpoints` (checkpoint files, the per-epoch recorder), :mod:`~labsat.runs.recording`
(starting a run, ending it whatever stops it); the ``labsat runs`` commands are a front door over it,
:mod:`labsat.cli_runs`.
"""
from __future__ import annotations

from labsat.runs.checkpoints import TrainRecorder, atomic_save, load_checkpoint
from labsat.runs.db import (DB_NAME, EPOCH_COLUMNS, KINDS, SCHEMA_VERSION, STATUSES, RunDB, RunError, _RUNS_TABLE,
                            _SCHEMA, db_path_for, disk_error, git_revision, now_utc)
from labsat.runs.recording import _kept, kept, recording, start_config_run, start_station_run

__all__ = ["DB_NAME", "EPOCH_COLUMNS", "KINDS", "SCHEMA_VERSION", "STATUSES", "RunDB", "RunError", "TrainRecorder",
           "atomic_save", "db_path_for", "disk_error", "git_revision", "kept", "load_checkpoint", "now_utc",
           "recording", "start_config_run", "start_station_run"]
