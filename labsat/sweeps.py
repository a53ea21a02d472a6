"""Sweeps: many independent units of work (trainings, evaluations, calibrations of virtual chips) run as
tasks on ``dask.distributed``, each result stored in the run database the moment its task ends.

The one entry point::

    from labsat.sweeps import run_sweep

    results = run_sweep(fn, tasks, name="transfer", store="runs/labsat.sqlite")

- ``fn`` is a **top-level** function (importable by its module and name, so picklable) of **one task
  dict** and returns its result: anything picklable (numbers, dicts, numpy arrays, torch tensors).
  It must compute the result from the task alone (seeded): then serial and distributed runs, in any
  task order, give bit-identical results.
- ``tasks`` is a list of plain, JSON-able dicts (str/int/float/bool/None, lists, dicts). A task's
  **key** is a stable hash of (``fn``'s module and name, ``version``, the task), see :func:`task_key`:
  the same task of the same code is computed once, whichever sweep asks for it first; change
  ``version`` (``run_sweep(..., version="2")`` or an attribute ``fn.sweep_version``) when ``fn``'s
  results change.
- ``store`` is the run database: a path to ``labsat.sqlite``, a folder (``<runs_dir>``, the file
  ``labsat.sqlite`` inside it), or an open :class:`SweepStore`. Results land in its table
  ``sweep_results`` as each task ends (one transaction each, written by the calling process, so
  workers on other machines need no access to the file). A re-run, after a crash, a Ctrl-C or a
  ``kill -9`` at any point, computes only the tasks whose results are missing.
- ``scheduler`` picks where tasks run:

  ``None`` (default)   an embedded ``LocalCluster`` sized to the machine: ``n_workers`` worker
                       processes (default: the CPUs this process may use), 1 thread each;
  ``"tcp://HOST:8786"`` an existing Dask cluster (``dask scheduler`` / ``dask worker``, dask-jobqueue);
  ``"serial"``         in this process, one task after the other (the reference; also what work bound
                       to a physical instrument uses: it stays on the process that owns the instrument).

  Without an argument the address is read from Dask's own configuration, key ``labsat.scheduler``
  (a YAML file in ``~/.config/dask/``, e.g. ``labsat: {scheduler: tcp://head:8786}``, or the
  environment variable ``DASK_LABSAT__SCHEDULER``).
- Every task runs with one torch thread (small tensors: threads cost more than they give, and the
  worker processes are the parallelism) and the environment's ``OMP_NUM_THREADS=1``.
- A worker killed mid-task (OOM killer, node lost) has its tasks rescheduled by the Dask scheduler
  on another worker (``distributed.scheduler.allowed-failures``, 3 by default). A task that raises is
  recorded with its error, the other tasks go on, and :class:`SweepError` lists the failures at the
  end; a re-run retries only those.
- ``progress=True`` shows one bar over the whole sweep (tasks already stored count as done) and
  prints the Dask dashboard address.

It returns the results in the order of ``tasks``.

Schema (in the run database ``<runs_dir>/labsat.sqlite``, beside the runs tables)::

    sweep_results(key TEXT PRIMARY KEY,  -- task_key(fn, task, version)
                  fn TEXT, version TEXT, task TEXT,   -- the task, JSON
                  status TEXT,           -- done | failed
                  result BLOB,           -- pickled result (done)
                  error TEXT,            -- the exception (failed)
                  seconds REAL,          -- the task's wall time on its worker
                  worker TEXT,           -- host:pid that computed it
                  sweep TEXT,            -- the name of the sweep that computed it
                  finished_utc TEXT)

Running on a lab's cluster::

    dask scheduler                                   # on the head node: tcp://HEAD:8786, dashboard :8787
    dask worker tcp://HEAD:8786 --nworkers 16 --nthreads 1   # on each node, in the labsat environment
    labsat experiment transfer --full --scheduler tcp://HEAD:8786

or under SLURM with dask-jobqueue (``SLURMCluster(cores=1, processes=1, ...).scale(jobs=32)``,
then pass ``cluster.scheduler_address`` as ``scheduler``).
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import pickle
import socket
import sqlite3
import time
import traceback
from pathlib import Path
from typing import Any, Callable, Iterable, Optional, Sequence

__all__ = ["run_sweep", "Sweeps", "task_key", "SweepStore", "SweepError", "open_client", "default_workers", "SERIAL"]

SERIAL = "serial"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS sweep_results (
    key TEXT PRIMARY KEY,
    fn TEXT NOT NULL,
    version TEXT NOT NULL,
    task TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('done', 'failed')),
    result BLOB,
    error TEXT,
    seconds REAL,
    worker TEXT,
    sweep TEXT,
    finished_utc TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS sweep_results_sweep ON sweep_results (sweep);
"""


class SweepError(RuntimeError):
    """Some tasks of a sweep failed; every other result is stored. ``failures``: [(task, error)]."""

    def __init__(self, name: str, failures: list[tuple[dict, str]], total: int):
        self.failures = failures
        first = failures[0][1].strip().splitlines()[-1] if failures else ""
        super().__init__(f"sweep {name!r}: {len(failures)} of {total} tasks failed (the others are stored; "
                         f"a re-run retries only these); first: {json.dumps(failures[0][0], sort_keys=True)}: "
                         f"{first}")


# --- keys ---
def fn_name(fn: Callable) -> str:
    """``module:qualname`` of a top-level function; refuses lambdas and nested functions."""
    qual = getattr(fn, "__qualname__", None)
    mod = getattr(fn, "__module__", None)
    if not qual or not mod or "<" in qual:
        raise ValueError(f"sweep task function must be a top-level function (picklable by name), got {fn!r}")
    return f"{mod}:{qual}"


def _canonical(task: dict) -> str:
    if not isinstance(task, dict):
        raise TypeError(f"a sweep task must be a dict, got {type(task).__name__}")
    try:
        return json.dumps(task, sort_keys=True, separators=(",", ":"), allow_nan=True)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"a sweep task must be plain JSON (str, int, float, bool, None, lists, dicts): {exc}") from exc


def _version(fn: Callable, version: Optional[str]) -> str:
    return str(version if version is not None else getattr(fn, "sweep_version", "1"))


def task_key(fn: Callable, task: dict, version: Optional[str] = None) -> str:
    """The stable key of ``task`` for ``fn``: sha256 of fn's name, the code version and the task's JSON."""
    blob = json.dumps([fn_name(fn), _version(fn, version), json.loads(_canonical(task))], sort_keys=True,
                      separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


# --- the store ---
class SweepStore:
    """The ``sweep_results`` table of the run database (opened through :class:`labsat.runs.RunDB`)."""

    def __init__(self, path: str | Path):
        from labsat.runs import DB_NAME, RunDB

        p = Path(path)
        if p.is_dir() or (not p.suffix and not p.exists()):
            p = p / DB_NAME
        self.db = RunDB(p)
        self.path = self.db.path
        with self.db.transaction() as c:
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    c.execute(statement)

    @classmethod
    def of(cls, store: "str | Path | SweepStore") -> "SweepStore":
        return store if isinstance(store, SweepStore) else cls(store)

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> "SweepStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def done(self, keys: Iterable[str]) -> set[str]:
        """The keys among ``keys`` whose results are stored."""
        keys = list(keys)
        out: set[str] = set()
        for i in range(0, len(keys), 500):
            chunk = keys[i:i + 500]
            rows = self.db.conn.execute(
                f"SELECT key FROM sweep_results WHERE status='done' AND key IN ({','.join('?' * len(chunk))})", chunk)
            out.update(r[0] for r in rows)
        return out

    def get(self, key: str) -> Any:
        row = self.db.conn.execute("SELECT result FROM sweep_results WHERE key=? AND status='done'", (key,)).fetchone()
        if row is None:
            raise KeyError(key)
        return pickle.loads(row[0])

    def put(self, key: str, fn: str, version: str, task: dict, *, result: Any = None, error: str | None = None,
            seconds: float | None = None, worker: str | None = None, sweep: str | None = None) -> None:
        """Store one task's result (or its failure) in one transaction; a stored result is never replaced
        by a failure."""
        from labsat.runs import now_utc

        status = "failed" if error is not None else "done"
        blob = None if error is not None else sqlite3.Binary(pickle.dumps(result, protocol=pickle.HIGHEST_PROTOCOL))
        with self.db.transaction() as c:
            if status == "failed" and c.execute("SELECT 1 FROM sweep_results WHERE key=? AND status='done'",
                                                (key,)).fetchone():
                return
            c.execute("INSERT OR REPLACE INTO sweep_results (key, fn, version, task, status, result, error, seconds,"
                      " worker, sweep, finished_utc) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                      (key, fn, version, _canonical(task), status, blob, error, seconds, worker, sweep, now_utc()))

    def rows(self, sweep: str | None = None) -> list[dict]:
        """Stored rows (without the result blob), oldest first; of one sweep when ``sweep`` is given."""
        q = "SELECT key, fn, version, task, status, error, seconds, worker, sweep, finished_utc FROM sweep_results"
        args: tuple = ()
        if sweep is not None:
            q, args = q + " WHERE sweep=?", (sweep,)
        return [dict(r) for r in self.db.conn.execute(q + " ORDER BY rowid", args)]


# --- running one task (on a worker or here) ---
def _worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def execute(fn: Callable, task: dict) -> tuple[Any, float, str]:
    """Run one task with one torch thread: (result, seconds, worker). What a Dask worker runs."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        t0 = time.perf_counter()
        result = fn(task)
        return result, time.perf_counter() - t0, _worker_id()
    finally:
        torch.set_num_threads(threads)


# --- the cluster ---
def default_workers() -> int:
    """Worker processes of the embedded cluster: the CPUs this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def configured_scheduler() -> Optional[str]:
    """The scheduler address from Dask's configuration (``labsat.scheduler``), or None."""
    import dask

    return dask.config.get("labsat.scheduler", None)


@contextlib.contextmanager
def open_client(scheduler: Optional[str] = None, n_workers: Optional[int] = None, log: Callable[[str], None] = print):
    """A ``distributed.Client``: on ``scheduler`` (an address) or on an embedded LocalCluster of
    ``n_workers`` processes with one thread each. Closed (and the embedded cluster shut down) on exit."""
    import dask
    from distributed import Client, LocalCluster

    env = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    with dask.config.set({"distributed.nanny.pre-spawn-environ": {
            **dask.config.get("distributed.nanny.pre-spawn-environ", {}), **env}}):
        if scheduler:
            client = Client(scheduler, timeout="30s")
            cluster = None
        else:
            cluster = LocalCluster(n_workers=n_workers or default_workers(), threads_per_worker=1, processes=True,
                                   dashboard_address=":0", silence_logs=40)
            client = Client(cluster)
    try:
        where = scheduler or f"LocalCluster, {len(client.scheduler_info()['workers'])} workers x 1 thread"
        log(f"dask: {where}; dashboard {client.dashboard_link}")
        yield client
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


# --- the sweep ---
class Sweeps:
    """Several sweeps that share one store and one cluster (an experiment's calibrations, then its
    trainings, then its evaluations). The cluster is started on the first sweep that has work to do,
    and shut down by :meth:`close` (or the ``with`` block's end)::

        with Sweeps("runs", scheduler=None, n_workers=2) as sw:
            twins = sw.run(calibrate, cal_tasks, name="calibrations")
            models = sw.run(train, [dict(t, twin=twins[i]) for i, t in ...], name="trainings")
    """

    def __init__(self, store: "str | Path | SweepStore", *, scheduler: Optional[str] = None,
                 n_workers: Optional[int] = None, progress: bool = True, client=None,
                 log: Callable[[str], None] = print):
        self._own_store = not isinstance(store, SweepStore)
        self.store = SweepStore.of(store)
        self.scheduler = scheduler if scheduler is not None or client is not None else configured_scheduler()
        self.n_workers, self.progress, self.log = n_workers, progress, log
        self.client = client
        self._client_cm = None

    @property
    def serial(self) -> bool:
        return self.scheduler == SERIAL and self.client is None

    def _client(self):
        if self.client is None:
            self._client_cm = open_client(self.scheduler, self.n_workers, log=self.log)
            self.client = self._client_cm.__enter__()
        return self.client

    def close(self) -> None:
        try:
            if self._client_cm is not None:
                cm, self._client_cm, self.client = self._client_cm, None, None
                cm.__exit__(None, None, None)
        finally:
            if self._own_store:
                self.store.close()

    def __enter__(self) -> "Sweeps":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def run(self, fn: Callable[[dict], Any], tasks: Sequence[dict], *, name: str,
            version: Optional[str] = None) -> list:
        """Run ``fn`` on every task not yet stored, store each result as its task ends, return all results
        in the order of ``tasks``."""
        tasks = list(tasks)
        fname, ver = fn_name(fn), _version(fn, version)
        keys = [task_key(fn, t, ver) for t in tasks]
        by_key = dict(zip(keys, tasks))  # the same task twice is computed once
        st = self.store
        todo = [k for k in by_key if k not in st.done(by_key)]
        failures: list[tuple[dict, str]] = []
        with _progress(self.progress, name, len(by_key), len(by_key) - len(todo)) as advance:
            def record(key, result=None, seconds=None, worker=None, error=None):
                st.put(key, fname, ver, by_key[key], result=result, error=error, seconds=seconds, worker=worker,
                       sweep=name)
                if error is not None:
                    failures.append((by_key[key], error))
                advance()

            if todo and self.serial:
                for key in todo:
                    try:
                        result, seconds, worker = execute(fn, by_key[key])
                    except Exception:  # recorded, the sweep goes on
                        record(key, error=traceback.format_exc())
                    else:
                        record(key, result, seconds, worker)
            elif todo:
                _distributed(self._client(), fn, todo, by_key, record)
        if failures:
            raise SweepError(name, failures, len(by_key))
        return [st.get(k) for k in keys]


def run_sweep(fn: Callable[[dict], Any], tasks: Sequence[dict], *, name: str, store: "str | Path | SweepStore",
              scheduler: Optional[str] = None, n_workers: Optional[int] = None, progress: bool = True,
              version: Optional[str] = None, client=None, log: Callable[[str], None] = print) -> list:
    """Run ``fn`` on every task not yet stored, store each result as its task ends, return all results in
    the order of ``tasks``. See the module docstring for the arguments; :class:`Sweeps` runs several
    sweeps on one cluster."""
    with Sweeps(store, scheduler=scheduler, n_workers=n_workers, progress=progress, client=client, log=log) as sw:
        return sw.run(fn, tasks, name=name, version=version)


def _distributed(client, fn, todo: list[str], by_key: dict, record) -> None:
    from distributed import as_completed

    # key= names each future after its task, so a resubmission of a stored key never duplicates work
    futures = [client.submit(execute, fn, by_key[k], key=f"labsat-{k}", pure=False) for k in todo]
    key_of = {f.key: f"{f.key}"[len("labsat-"):] for f in futures}
    try:
        for fut in as_completed(futures):
            key = key_of[fut.key]
            if fut.status == "finished":
                result, seconds, worker = fut.result()
                record(key, result, seconds, worker)
            else:
                exc = fut.exception()
                record(key, error="".join(traceback.format_exception(type(exc), exc, exc.__traceback__)))
            fut.release()
    finally:
        for f in futures:  # Ctrl-C or an error here: stop the rest; what finished is stored
            f.cancel()


@contextlib.contextmanager
def _progress(show: bool, name: str, total: int, done: int):
    if not show:
        yield lambda: None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TimeRemainingColumn(), transient=False) as bar:
        tid = bar.add_task(f"sweep {name}", total=total, completed=done)
        yield lambda: bar.advance(tid)
