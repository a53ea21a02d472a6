"""The run database: every calibration, training and evaluation run, in one sqlite file.

The file is ``<station runs_dir>/labsat.sqlite`` (plain sqlite through the standard library, WAL
journal, ``synchronous=FULL``). Every write is one transaction, and a training epoch is exactly one:
its metrics row and the row naming its checkpoint file commit together or not at all, after the
checkpoint file itself was written (to a temporary name, fsynced, renamed). A process killed at any
instant (SIGKILL included) therefore leaves a consistent database whose last checkpoint row names a
complete file: at worst the epoch in progress is lost, never a completed one.

Schema (version 1)::

    meta(key TEXT PRIMARY KEY, value TEXT)                  -- schema_version
    runs(id INTEGER PRIMARY KEY,                            -- the RUN of `labsat runs show RUN`
         kind TEXT    -- calibrate | train | evaluate
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
"""
from __future__ import annotations

import contextlib
import csv
import datetime as _dt
import errno
import io
import json
import os
import socket
import sqlite3
import subprocess
from pathlib import Path
from typing import Any, Iterator, Optional

SCHEMA_VERSION = 1
DB_NAME = "labsat.sqlite"
KINDS = ("calibrate", "train", "evaluate")
STATUSES = ("running", "completed", "failed", "interrupted")

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL CHECK (kind IN {KINDS}),
    status TEXT NOT NULL CHECK (status IN {STATUSES}),
    config TEXT NOT NULL,
    station_yaml TEXT,
    station_path TEXT,
    calibration TEXT,
    device TEXT,
    git_revision TEXT,
    host TEXT,
    pid INTEGER,
    proc_start TEXT,
    started_utc TEXT NOT NULL,
    ended_utc TEXT,
    resumed INTEGER NOT NULL DEFAULT 0,
    error TEXT,
    result TEXT
);
CREATE TABLE IF NOT EXISTS epochs (
    run INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    epoch INTEGER NOT NULL,
    loss REAL,
    train_accuracy REAL,
    test_accuracy REAL,
    seconds REAL,
    hardware_batches INTEGER,
    hardware_samples INTEGER,
    heater_updates INTEGER,
    recorded_utc TEXT NOT NULL,
    PRIMARY KEY (run, epoch)
);
CREATE TABLE IF NOT EXISTS checkpoints (
    run INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    epoch INTEGER NOT NULL,
    path TEXT NOT NULL,
    created_utc TEXT NOT NULL,
    PRIMARY KEY (run, epoch)
);
CREATE TABLE IF NOT EXISTS parameters (
    run INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    idx INTEGER NOT NULL,
    value REAL NOT NULL,
    PRIMARY KEY (run, name, idx)
);
"""

EPOCH_COLUMNS = ("epoch", "loss", "train_accuracy", "test_accuracy", "seconds", "hardware_batches",
                 "hardware_samples", "heater_updates", "recorded_utc")


class RunError(ValueError):
    """The run database cannot do what was asked (no such run, disk full, completed run resumed...)."""


def now_utc() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def git_revision(where: str | Path | None = None) -> str | None:
    """``git rev-parse HEAD`` of the labsat source (or ``where``), or None outside a git checkout."""
    folder = Path(where) if where else Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=folder, capture_output=True, text=True,
                             timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    rev = out.stdout.strip()
    if out.returncode != 0 or not rev:
        return None
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=folder,
                           capture_output=True, text=True, timeout=5, check=False)
    return rev + ("-dirty" if dirty.returncode == 0 and dirty.stdout.strip() else "")


def _proc_start(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (Linux /proc), or None where unknown."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _pid_alive(pid: int, started: str | None = None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return False
    # a zombie (killed, not yet reaped by its parent) is not running
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return True
    if fields[0] == "Z":
        return False
    return started is None or fields[19] == started  # another process that got the same pid


def disk_error(exc: BaseException, what: str) -> "RunError | None":
    """A clear :class:`RunError` for a full disk or a read-only file system, else None."""
    full = (isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS)) or (
        isinstance(exc, sqlite3.OperationalError) and ("disk is full" in str(exc) or "readonly" in str(exc)))
    if not full:
        return None
    return RunError(f"{what}: the disk is full or read-only ({exc}); free space and resume")


def db_path_for(station_config) -> Path:
    """Where a station's run database lives: ``<runs_dir>/labsat.sqlite``."""
    return station_config.resolve(station_config.station.runs_dir) / DB_NAME


class RunDB:
    """The run database. Open with :meth:`open`; every method commits its own transaction."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
        except (OSError, sqlite3.Error) as exc:
            raise disk_error(exc, f"{self.path}") or RunError(f"{self.path}: cannot open the run database: {exc}") from exc
        self.conn.row_factory = sqlite3.Row
        try:
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA synchronous=FULL")
            self.conn.execute("PRAGMA foreign_keys=ON")
            self.conn.executescript("BEGIN IMMEDIATE;" + _SCHEMA + "COMMIT;")
            columns = {r[1] for r in self.conn.execute("PRAGMA table_info(runs)")}
            if "proc_start" not in columns:  # a database made before this column existed
                self.conn.execute("ALTER TABLE runs ADD COLUMN proc_start TEXT")
            with self.transaction():
                row = self.conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
                if row is None:
                    self.conn.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
                elif int(row[0]) != SCHEMA_VERSION:
                    raise RunError(f"{self.path}: run database schema {row[0]} is not supported "
                                   f"(this labsat uses {SCHEMA_VERSION})")
        except sqlite3.DatabaseError as exc:
            self.conn.close()
            raise disk_error(exc, f"{self.path}") or RunError(f"{self.path}: not a labsat run database: {exc}") from exc
        self.mark_stale()

    @classmethod
    def open(cls, path: str | Path) -> "RunDB":
        return cls(path)

    @classmethod
    def for_station(cls, station_config) -> "RunDB":
        return cls(db_path_for(station_config))

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> "RunDB":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """``BEGIN IMMEDIATE`` ... ``COMMIT`` (``ROLLBACK`` on any error): all or nothing."""
        try:
            self.conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            raise disk_error(exc, f"{self.path}") or RunError(f"{self.path}: {exc}") from exc
        try:
            yield self.conn
        except BaseException as exc:
            if self.conn.in_transaction:  # sqlite may have rolled back already (e.g. SQLITE_FULL)
                self.conn.execute("ROLLBACK")
            mapped = disk_error(exc, f"{self.path}") if isinstance(exc, sqlite3.Error) else None
            if mapped is not None:
                raise mapped from exc
            raise
        try:
            self.conn.execute("COMMIT")
        except sqlite3.OperationalError as exc:
            with contextlib.suppress(sqlite3.Error):
                self.conn.execute("ROLLBACK")
            raise disk_error(exc, f"{self.path}") or RunError(f"{self.path}: {exc}") from exc

    # --- writing ---
    def start_run(self, kind: str, config: dict, *, station_yaml: str | None = None,
                  station_path: str | None = None, calibration: str | None = None,
                  device: str | None = None, git: str | None | bool = True) -> int:
        if kind not in KINDS:
            raise RunError(f"run kind must be one of {', '.join(KINDS)}, got {kind!r}")
        rev = git_revision() if git is True else (git or None)
        with self.transaction() as c:
            cur = c.execute(
                "INSERT INTO runs (kind, status, config, station_yaml, station_path, calibration, device,"
                " git_revision, host, pid, proc_start, started_utc)"
                " VALUES (?, 'running', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (kind, json.dumps(config, default=str), station_yaml, station_path, calibration, device, rev,
                 socket.gethostname(), os.getpid(), _proc_start(os.getpid()), now_utc()))
            return int(cur.lastrowid)

    def record_epoch(self, run: int, epoch: dict, checkpoint: str | Path | None = None) -> None:
        """One epoch's metrics and (optionally) its checkpoint file, in one transaction."""
        values = {k: epoch.get(k) for k in EPOCH_COLUMNS if k != "recorded_utc"}
        stamp = now_utc()
        with self.transaction() as c:
            c.execute(f"INSERT OR REPLACE INTO epochs (run, {', '.join(EPOCH_COLUMNS)}) "
                      f"VALUES (?, {', '.join('?' * len(EPOCH_COLUMNS))})",
                      (run, *values.values(), stamp))
            if checkpoint is not None:
                c.execute("INSERT OR REPLACE INTO checkpoints VALUES (?, ?, ?, ?)",
                          (run, values["epoch"], str(checkpoint), stamp))

    def set_parameters(self, run: int, name: str, values, indices=None) -> None:
        values = [float(v) for v in values]
        indices = range(len(values)) if indices is None else [int(i) for i in indices]
        with self.transaction() as c:
            c.execute("DELETE FROM parameters WHERE run=? AND name=?", (run, name))
            c.executemany("INSERT INTO parameters VALUES (?, ?, ?, ?)",
                          [(run, name, i, v) for i, v in zip(indices, values)])

    def finish(self, run: int, status: str, *, error: str | None = None, result: dict | None = None,
               calibration: str | None = None) -> None:
        if status not in STATUSES or status == "running":
            raise RunError(f"a run ends completed, failed or interrupted, not {status!r}")
        with self.transaction() as c:
            c.execute("UPDATE runs SET status=?, ended_utc=?, error=?, result=COALESCE(?, result),"
                      " calibration=COALESCE(?, calibration) WHERE id=?",
                      (status, now_utc(), error, None if result is None else json.dumps(result, default=str),
                       calibration, run))

    def reopen(self, run: int) -> dict:
        """Take over a run that is not completed (for ``--resume``): running again, in this process."""
        with self.transaction() as c:
            row = self._row(run, c)
            status = self._effective(row)
            if status == "completed":
                raise RunError(f"run {run} is already completed; nothing to resume")
            if status == "running":
                raise RunError(f"run {run} is still running (pid {row['pid']} on {row['host']})")
            if row["kind"] != "train":
                raise RunError(f"run {run} is a {row['kind']} run; only train runs can be resumed")
            c.execute("UPDATE runs SET status='running', host=?, pid=?, proc_start=?, ended_utc=NULL, error=NULL,"
                      " resumed=resumed+1 WHERE id=?", (socket.gethostname(), os.getpid(), _proc_start(os.getpid()), run))
        return self.run(run)

    def mark_stale(self) -> list[int]:
        """Runs 'running' on this host whose process is gone -> 'interrupted'. Returns their ids."""
        host = socket.gethostname()
        rows = self.conn.execute("SELECT * FROM runs WHERE status='running' AND host=?", (host,)).fetchall()
        stale = [r["id"] for r in rows if self._effective(r) == "interrupted"]
        if stale:
            try:
                with self.transaction() as c:
                    for run_id in stale:
                        c.execute("UPDATE runs SET status='interrupted', error=? WHERE id=? AND status='running'",
                                  ("the process ended without closing the run (killed or crashed); "
                                   f"resume with `labsat train --resume {run_id}`", run_id))
            except RunError:
                pass  # read-only or full disk: the status is still computed on read
        return stale

    # --- reading ---
    def _row(self, run: int, conn=None) -> sqlite3.Row:
        row = (conn or self.conn).execute("SELECT * FROM runs WHERE id=?", (int(run),)).fetchone()
        if row is None:
            raise RunError(f"no run {run} in {self.path}")
        return row

    @staticmethod
    def _effective(row) -> str:
        if row["status"] == "running" and row["host"] == socket.gethostname() and (
                row["pid"] is None or not _pid_alive(row["pid"], row["proc_start"])):
            return "interrupted"
        return row["status"]

    def _as_dict(self, row) -> dict:
        d = dict(row)
        d["status"] = self._effective(row)
        d["config"] = json.loads(d["config"]) if d["config"] else {}
        d["result"] = json.loads(d["result"]) if d["result"] else None
        return d

    def run(self, run: int) -> dict:
        return self._as_dict(self._row(run))

    def runs(self, kind: str | None = None) -> list[dict]:
        q, args = "SELECT * FROM runs", ()
        if kind:
            q, args = q + " WHERE kind=?", (kind,)
        return [self._as_dict(r) for r in self.conn.execute(q + " ORDER BY id", args)]

    def epochs(self, run: int) -> list[dict]:
        return [dict(r) for r in self.conn.execute(
            f"SELECT {', '.join(EPOCH_COLUMNS)} FROM epochs WHERE run=? ORDER BY epoch", (int(run),))]

    def checkpoints(self, run: int) -> list[dict]:
        return [dict(r) for r in self.conn.execute(
            "SELECT epoch, path, created_utc FROM checkpoints WHERE run=? ORDER BY epoch", (int(run),))]

    def last_checkpoint(self, run: int) -> dict | None:
        rows = self.checkpoints(run)
        return rows[-1] if rows else None

    def parameters(self, run: int) -> dict[str, dict[int, float]]:
        """Final parameters: ``{name: {index: value}}`` (heater_v is indexed by heater channel)."""
        out: dict[str, dict[int, float]] = {}
        for r in self.conn.execute("SELECT name, idx, value FROM parameters WHERE run=? ORDER BY name, idx",
                                   (int(run),)):
            out.setdefault(r["name"], {})[r["idx"]] = r["value"]
        return out

    def integrity(self) -> str:
        return self.conn.execute("PRAGMA integrity_check").fetchone()[0]

    # --- export ---
    def export_csv(self, run: int, out: io.TextIOBase | None = None) -> str:
        """The run's epochs as CSV (one row per epoch), with the run's id, kind and status per row."""
        info = self.run(run)
        buf = out or io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(("run", "kind", "status", *EPOCH_COLUMNS))
        for e in self.epochs(run):
            writer.writerow((run, info["kind"], info["status"], *(e[k] for k in EPOCH_COLUMNS)))
        return buf.getvalue() if out is None else ""

    def to_xarray(self, run: int):
        """The run as an :class:`xarray.Dataset`: per-epoch variables, final parameters, run attrs."""
        try:
            import numpy as np
            import xarray as xr
        except ImportError as exc:  # pragma: no cover - xarray is a dev/optional dependency
            raise RunError("export to netCDF/xarray needs xarray: pip install 'labsat[runs]'") from exc
        info = self.run(run)
        epochs = self.epochs(run)
        coords = {"epoch": np.array([e["epoch"] for e in epochs], dtype=np.int64)}
        data_vars = {}
        for k in EPOCH_COLUMNS[1:-1]:
            data_vars[k] = ("epoch", np.array([np.nan if e[k] is None else e[k] for e in epochs], dtype=float))
        for name, values in self.parameters(run).items():
            dim = "channel" if name == "heater_v" else f"{name}_index"
            data_vars[f"final_{name}"] = xr.DataArray(np.asarray(list(values.values()), dtype=float), dims=dim,
                                                      coords={dim: np.asarray(list(values), dtype=np.int64)})
        attrs = {"run": int(run), "kind": info["kind"], "status": info["status"],
                 "config": json.dumps(info["config"]), "result": json.dumps(info["result"]),
                 "station_yaml": info["station_yaml"] or "", "calibration": info["calibration"] or "",
                 "device": info["device"] or "", "git_revision": info["git_revision"] or "",
                 "started_utc": info["started_utc"], "ended_utc": info["ended_utc"] or "",
                 "labsat_run_schema": SCHEMA_VERSION}
        return xr.Dataset(data_vars, coords=coords, attrs=attrs)

    def export_netcdf(self, run: int, path: str | Path) -> Path:
        ds = self.to_xarray(run)
        path = Path(path)
        try:
            ds.to_netcdf(path)
        except (ValueError, ImportError) as exc:  # no netCDF engine at all
            raise RunError(f"cannot write netCDF ({exc}); install scipy, netCDF4 or h5netcdf") from exc
        return path


# --- checkpoints ---
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
            volts = float(layer_cfg.v_max) * np.sqrt(np.clip(u, 0.0, 1.0))  # the mesh's control law
        self.db.set_parameters(self.run, "heater_v", volts, indices=list(heaters.channels))


def start_station_run(db: RunDB, kind: str, station, config: dict, calibration: str | None = None) -> int:
    """Start a run of ``kind`` on a connected :class:`~labsat.station.Station` (snapshots its file)."""
    source = getattr(station.config, "source", None)
    text = None
    if source is not None:
        with contextlib.suppress(OSError):
            text = Path(source).read_text()
    try:
        device = station.device_id()
    except (ValueError, KeyError):
        device = None
    return db.start_run(kind, config, station_yaml=text, station_path=None if source is None else str(source),
                        calibration=calibration, device=device)


def _finish_quietly(db: RunDB, run: int, status: str, error: str) -> None:
    # the disk may be full: then the run stays 'running' and is shown as interrupted once its process is gone
    with contextlib.suppress(RunError, sqlite3.Error):
        db.finish(run, status, error=error)


@contextlib.contextmanager
def recording(db: RunDB, run: int, note=None) -> Iterator[None]:
    """Mark ``run`` failed (any exception) or interrupted (Ctrl-C, SIGTERM) if the block does not finish.

    ``note(text)`` is told what was kept and how to continue. Marking it completed is the caller's job.
    """
    try:
        yield
    except (KeyboardInterrupt, SystemExit) as exc:
        _finish_quietly(db, run, "interrupted", f"{type(exc).__name__}")
        if note:
            note(_kept(db, run))
        raise
    except BaseException as exc:
        _finish_quietly(db, run, "failed", f"{type(exc).__name__}: {exc}")
        if note:
            note(_kept(db, run))
        raise


def _kept(db: RunDB, run: int) -> str:
    try:
        info = db.run(run)
        epochs = db.epochs(run)
    except (RunError, sqlite3.Error):
        return f"run {run}: the run database could not be read"
    if info["kind"] != "train":
        return f"run {run} ({info['kind']}) recorded as {info['status']} in {db.path}"
    kept = f"epochs 1..{epochs[-1]['epoch']}" if epochs else "no completed epoch"
    return (f"run {run} recorded as {info['status']}: {kept} kept in {db.path}; "
            f"continue with `labsat train --resume {run}`")


# --- command line: `labsat runs list|show|export` ---
def register(app) -> None:


    import typer
    from rich.console import Console
    from rich.table import Table

    runs_app = typer.Typer(no_args_is_help=True, add_completion=False,
                           help="The run database: list, show and export calibration/training/evaluation runs.")
    console = Console()
    station_opt = typer.Option(Path("instruments.yaml"), "--station", "-s",
                               help="station description; its runs_dir holds labsat.sqlite")
    db_opt = typer.Option(None, "--db", help="a run database file (instead of the station's)")

    def _open(station: Path, db: Optional[Path]) -> RunDB:
        from labsat.config import ConfigError, load_config

        try:
            path = db if db is not None else db_path_for(load_config(station))
            if not path.exists():
                raise RunError(f"{path}: no run database yet (it is made by the first calibrate/train run)")
            return RunDB(path)
        except (RunError, ConfigError) as exc:
            console.print(f"[bold red]error:[/] {exc}", soft_wrap=True)  # one line, never broken
            raise typer.Exit(2)

    def _fail(exc: Exception):
        console.print(f"[bold red]error:[/] {exc}", soft_wrap=True)  # one line, never broken
        raise typer.Exit(2)

    def _fmt(x, spec=".4f"):
        return "" if x is None else format(x, spec)

    @runs_app.command("list")
    def list_cmd(station: Path = station_opt, db: Optional[Path] = db_opt,
                 kind: Optional[str] = typer.Option(None, help="calibrate | train | evaluate"),
                 as_json: bool = typer.Option(False, "--json", help="print the runs as JSON (one object per run)")):
        """Every run: id, kind, status, device, epochs done, last loss and accuracy."""
        from rich import box

        from labsat.cli_format import emit_json

        with _open(station, db) as rdb:
            rows = []
            for r in rdb.runs(kind):
                eps = rdb.epochs(r["id"])
                cfg = r["config"].get("train", r["config"]) if isinstance(r["config"], dict) else {}
                total = cfg.get("epochs") if r["kind"] == "train" else None
                rows.append(dict(run=r["id"], kind=r["kind"], mode=cfg.get("mode"), optimizer=cfg.get("optimizer"),
                                 status=r["status"], device=r["device"], epochs_done=len(eps), epochs=total,
                                 loss=eps[-1]["loss"] if eps else None,
                                 train_accuracy=eps[-1]["train_accuracy"] if eps else None,
                                 test_accuracy=eps[-1]["test_accuracy"] if eps else None,
                                 started_utc=r["started_utc"], ended_utc=r["ended_utc"],
                                 calibration=r["calibration"], error=r["error"]))
            if as_json:
                emit_json({"database": str(rdb.path), "runs": rows})
                return
            # fits 80 columns: no borders, the setup folded under the kind, dates without the year
            table = Table(title=f"runs in {rdb.path} (UTC)", box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True,
                          title_justify="left")
            for col in ("run", "kind", "status", "device", "epochs", "loss", "acc", "started"):
                table.add_column(col, justify="right" if col in ("run", "epochs", "loss", "acc") else "left",
                                 no_wrap=col != "kind", min_width=9 if col == "kind" else None)
            colour = {"completed": "green", "failed": "red", "interrupted": "yellow", "running": "cyan"}
            for row in rows:
                setup = " ".join(str(row[k]) for k in ("mode", "optimizer") if row[k])
                table.add_row(str(row["run"]), row["kind"] + (f" {setup}" if setup else ""),
                              f"[{colour[row['status']]}]{row['status']}[/]", row["device"] or "",
                              f"{row['epochs_done']}/{row['epochs']}" if row["epochs"] is not None else "",
                              _fmt(row["loss"], ".3f"), _fmt(row["train_accuracy"], ".3f"),
                              row["started_utc"][5:16].replace("T", " "))
            console.print(table)

    @runs_app.command("show")
    def show_cmd(run: int = typer.Argument(..., help="run id (from `labsat runs list`)"),
                 station: Path = station_opt, db: Optional[Path] = db_opt,
                 as_json: bool = typer.Option(False, "--json", help="print the run as JSON")):
        """One run: its record, epochs, checkpoints and final parameters."""
        from labsat.cli_format import emit_json

        with _open(station, db) as rdb:
            try:
                r = rdb.run(run)
            except RunError as exc:
                _fail(exc)
            if as_json:
                emit_json({"run": r, "epochs": rdb.epochs(run), "checkpoints": rdb.checkpoints(run),
                           "parameters": rdb.parameters(run)})
                return
            info = Table(title=f"run {run}", show_header=False)
            info.add_column("field")
            info.add_column("value")
            for key in ("kind", "status", "device", "calibration", "git_revision", "station_path", "host", "pid",
                        "started_utc", "ended_utc", "resumed", "error"):
                info.add_row(key, "" if r[key] is None else str(r[key]))
            info.add_row("config", json.dumps(r["config"]))
            if r["result"] is not None:
                info.add_row("result", json.dumps(r["result"]))
            console.print(info)
            eps = rdb.epochs(run)
            if eps:
                t = Table(title="epochs")
                cols = ("epoch", "loss", "train_accuracy", "test_accuracy", "seconds", "hardware_batches",
                        "hardware_samples", "heater_updates")
                for c in cols:
                    t.add_column(c.replace("_", " "), justify="right")
                for e in eps:
                    t.add_row(*("" if e[c] is None else (f"{e[c]:.4g}" if isinstance(e[c], float) else str(e[c]))
                                for c in cols))
                console.print(t)
            cps = rdb.checkpoints(run)
            if cps:
                console.print(f"checkpoints: {len(cps)}, last: epoch {cps[-1]['epoch']} {cps[-1]['path']}")
            for name, values in rdb.parameters(run).items():
                shown = ", ".join(f"{i}:{v:.4f}" for i, v in list(values.items())[:64])
                console.print(f"final {name} ({len(values)}): {shown}")

    @runs_app.command("export")
    def export_cmd(run: int = typer.Argument(..., help="run id"),
                   fmt: str = typer.Option("csv", "--format", "-f", help="csv | netcdf | qcodes (a dataset in the "
                                           "QCoDeS database --out, default experiments.db)"),
                   out: Optional[Path] = typer.Option(None, "--out", "-o",
                                                      help="output file (csv default: standard output)"),
                   station: Path = station_opt, db: Optional[Path] = db_opt):
        """Export a run: CSV (one row per epoch) or netCDF (xarray: epochs, final parameters, run attributes)."""
        if fmt not in ("csv", "netcdf", "qcodes"):
            _fail(RunError(f"--format must be qcodes, csv or netcdf, got {fmt!r}"))
        with _open(station, db) as rdb:
            try:
                if fmt == "csv":
                    text = rdb.export_csv(run)
                    if out is None:
                        typer.echo(text, nl=False)
                        return
                    out.write_text(text)
                elif fmt == "qcodes":
                    out = out or Path("experiments.db")
                    console.print(f"wrote {_export_qcodes(rdb, run, out)}", soft_wrap=True)
                    return
                else:
                    rdb.export_netcdf(run, out or Path(f"run-{run}.nc"))
                    out = out or Path(f"run-{run}.nc")
            except RunError as exc:
                _fail(exc)
            except OSError as exc:
                _fail(disk_error(exc, str(out)) or RunError(f"{out}: {exc}"))
            console.print(f"wrote {out}")

    app.add_typer(runs_app, name="runs")


def _export_qcodes(rdb: RunDB, run: int, out: Path) -> str:
    """A run as a QCoDeS dataset in database ``out``: a calibration run's sweep (its NPZ) with the fit as
    metadata, any other run's epochs and final parameters (labsat.qcodes.datasets)."""
    try:
        from labsat.qcodes.datasets import export_calibration, export_run, use_database
    except ImportError as exc:
        raise RunError("export to QCoDeS needs qcodes: pip install 'labsat[qcodes]'") from exc
    info = rdb.run(run)
    path = use_database(out)
    cal = (info["result"] or {}).get("calibration") if info["kind"] == "calibrate" else None
    if cal:
        ds = export_calibration(cal)
    else:
        ds = export_run(rdb, run)
    from labsat.cli_format import show_path

    return f"run {run} as QCoDeS dataset {ds.run_id} ({ds.guid}) in {show_path(path)}"
