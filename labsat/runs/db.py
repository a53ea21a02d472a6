"""The run database itself: schema, one transaction per write, stale runs, export (see :mod:`labsat.runs`)."""
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
from typing import Iterator

SCHEMA_VERSION = 1
DB_NAME = "labsat.sqlite"
KINDS = ("calibrate", "train", "evaluate", "experiment")
STATUSES = ("running", "completed", "failed", "interrupted")

_RUNS_TABLE = f"""
CREATE TABLE IF NOT EXISTS {{name}} (
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
"""
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
""" + _RUNS_TABLE.format(name="runs") + """
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
            self._widen_kinds()
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

    def _widen_kinds(self) -> None:
        """A database made before a run kind existed (``experiment``): rebuild ``runs`` with the wider
        CHECK, rows kept, in one transaction (sqlite cannot alter a CHECK in place)."""
        sql = self.conn.execute("SELECT sql FROM sqlite_master WHERE type='table' AND name='runs'").fetchone()[0]
        if all(f"'{k}'" in sql for k in KINDS):
            return
        cols = [r[1] for r in self.conn.execute("PRAGMA table_info(runs)")]
        self.conn.execute("PRAGMA foreign_keys=OFF")  # dropping the old table must not cascade to epochs
        try:
            with self.transaction() as c:
                c.execute(_RUNS_TABLE.format(name="runs_widened"))
                c.execute(f"INSERT INTO runs_widened ({', '.join(cols)}) SELECT {', '.join(cols)} FROM runs")
                c.execute("DROP TABLE runs")
                c.execute("ALTER TABLE runs_widened RENAME TO runs")
        finally:
            self.conn.execute("PRAGMA foreign_keys=ON")

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

    def set_result(self, run: int, *, calibration: str | None = None, result: dict | None = None) -> None:
        """Name a file the run made after it ended (a calibration the operator accepted later)."""
        with self.transaction() as c:
            c.execute("UPDATE runs SET result=COALESCE(?, result), calibration=COALESCE(?, calibration) WHERE id=?",
                      (None if result is None else json.dumps(result, default=str), calibration, run))

    def hardware_batches(self, run: int, through_epoch: int | None = None) -> int:
        """Hardware forwards of the run's recorded epochs (every process that worked on it)."""
        query = "SELECT COALESCE(SUM(hardware_batches), 0) FROM epochs WHERE run=?"
        args: tuple = (run,)
        if through_epoch is not None:
            query += " AND epoch<=?"
            args = (run, through_epoch)
        return int(self.conn.execute(query, args).fetchone()[0])

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
