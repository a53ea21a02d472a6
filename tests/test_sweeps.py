"""labsat.sweeps: keys, the store, serial vs LocalCluster, failures, killed workers, killed sweeps."""
from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import cloudpickle
import pytest
import torch

from labsat.sweeps import SweepError, SweepStore, run_sweep, task_key

# the task functions below are defined in this test module, which Dask's worker processes cannot import
# by name: ship them by value
cloudpickle.register_pickle_by_value(sys.modules[__name__])


def matmul_task(task: dict) -> dict:
    """Seeded float work whose rounding depends on the thread count: a bit-identity check has teeth."""
    g = torch.Generator().manual_seed(task["seed"])
    a = torch.randn(96, 96, generator=g)
    for _ in range(task.get("steps", 5)):
        a = torch.tanh(a @ a.T / 96)
    return {"seed": task["seed"], "sum": float(a.sum()), "corner": a[:3, :3].clone(),
            "threads": torch.get_num_threads()}


def counted_task(task: dict) -> int:
    """Appends one line per execution to task['log'], so a test counts what was computed."""
    with open(task["log"], "a") as f:
        f.write(f"{task['i']}\n")
    if task.get("fail") == task["i"]:
        raise ValueError(f"task {task['i']} refuses")
    return task["i"] ** 2


def dies_once_task(task: dict) -> int:
    """Kills its own worker process the first time it runs (like the OOM killer), then succeeds."""
    marker = Path(task["marker"])
    if not marker.exists():
        marker.write_text(str(os.getpid()))
        os.kill(os.getpid(), signal.SIGKILL)
    return task["i"] + 100


def _computed(log: Path) -> list[int]:
    return sorted(int(x) for x in log.read_text().split()) if log.exists() else []


@pytest.fixture(scope="module")
def client():
    from labsat.sweeps import open_client

    with open_client(None, n_workers=2, log=lambda m: None) as c:
        yield c


def test_task_key_is_stable_and_code_versioned():
    a = task_key(matmul_task, {"seed": 1, "steps": 2})
    assert a == task_key(matmul_task, {"steps": 2, "seed": 1})  # dict order does not matter
    assert a != task_key(matmul_task, {"seed": 1, "steps": 3})
    assert a != task_key(matmul_task, {"seed": 1, "steps": 2}, version="2")  # new code version, new key
    assert a != task_key(counted_task, {"seed": 1, "steps": 2})
    with pytest.raises(ValueError, match="top-level"):
        task_key(lambda t: t, {"seed": 1})
    with pytest.raises(TypeError, match="plain JSON"):
        task_key(matmul_task, {"seed": object()})


def test_serial_sweep_stores_each_result_and_rerun_computes_only_what_is_missing(tmp_path):
    log = tmp_path / "log"
    tasks = [{"i": i, "log": str(log)} for i in range(4)]
    assert run_sweep(counted_task, tasks, name="sq", store=tmp_path, scheduler="serial", progress=False) == [0, 1, 4, 9]
    assert _computed(log) == [0, 1, 2, 3]
    # the table is in the run database, next to the runs tables
    con = sqlite3.connect(tmp_path / "labsat.sqlite")
    assert con.execute("SELECT count(*) FROM sweep_results WHERE status='done' AND sweep='sq'").fetchone()[0] == 4
    assert con.execute("SELECT count(*) FROM runs").fetchone()[0] == 0
    con.close()
    more = tasks + [{"i": 4, "log": str(log)}, tasks[0]]  # one new task, one repeated
    assert run_sweep(counted_task, more, name="sq", store=tmp_path, scheduler="serial", progress=False) == [0, 1, 4, 9, 16, 0]
    assert _computed(log) == [0, 1, 2, 3, 4]


def test_failed_task_is_recorded_others_kept_and_rerun_retries_only_it(tmp_path):
    log = tmp_path / "log"
    tasks = [{"i": i, "log": str(log), "fail": 2} for i in range(4)]
    with pytest.raises(SweepError, match=r"1 of 4 tasks failed.*task 2 refuses"):
        run_sweep(counted_task, tasks, name="f", store=tmp_path, scheduler="serial", progress=False)
    with SweepStore(tmp_path) as st:
        rows = {r["key"]: r for r in st.rows("f")}
        assert sorted(r["status"] for r in rows.values()) == ["done", "done", "done", "failed"]
        assert "task 2 refuses" in rows[task_key(counted_task, tasks[2])]["error"]
    with pytest.raises(SweepError):
        run_sweep(counted_task, tasks, name="f", store=tmp_path, scheduler="serial", progress=False)
    assert _computed(log) == [0, 1, 2, 2, 3]  # only the failed one ran again


def test_local_cluster_equals_serial_bit_for_bit_in_any_order(tmp_path, client):
    tasks = [{"seed": s} for s in range(6)]
    serial = run_sweep(matmul_task, tasks, name="m", store=tmp_path / "a", scheduler="serial", progress=False)
    dist = run_sweep(matmul_task, tasks[::-1], name="m", store=tmp_path / "b", client=client, progress=False)[::-1]
    for s, d in zip(serial, dist):
        assert s["seed"] == d["seed"] and s["threads"] == d["threads"] == 1
        assert s["sum"] == d["sum"] and torch.equal(s["corner"], d["corner"])
    with SweepStore(tmp_path / "b") as st:
        workers = {r["worker"] for r in st.rows("m")}
    assert all(str(os.getpid()) not in w for w in workers)  # really computed elsewhere


def test_killed_worker_task_is_retried(tmp_path, client):
    tasks = [{"i": i, "marker": str(tmp_path / f"m{i}")} for i in range(2)]
    assert run_sweep(dies_once_task, tasks, name="k", store=tmp_path, client=client, progress=False) == [100, 101]
    assert all((tmp_path / f"m{i}").exists() for i in range(2))  # each task's first worker did die


SWEEP_SCRIPT = textwrap.dedent("""
    import sys, time
    from labsat.sweeps import run_sweep

    def slow_task(task):
        with open(task["log"], "a") as f:
            f.write(f"{task['i']}\\n")
        time.sleep(task["sleep"])
        return task["i"] * 3

    if __name__ == "__main__":
        tasks = [{"i": i, "log": sys.argv[2], "sleep": 0.4} for i in range(int(sys.argv[3]))]
        out = run_sweep(slow_task, tasks, name="killme", store=sys.argv[1], scheduler=sys.argv[4] or None,
                        n_workers=2, progress=False)
        print(out)
""")


@pytest.mark.parametrize("scheduler", ["serial", ""])
def test_sweep_killed_midway_resumes_and_computes_only_what_is_missing(tmp_path, scheduler):
    script = tmp_path / "sweep_script.py"
    script.write_text(SWEEP_SCRIPT)
    log, n = tmp_path / "log", 12
    cmd = [sys.executable, str(script), str(tmp_path), str(log), str(n), scheduler]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    db = tmp_path / "labsat.sqlite"
    deadline = time.monotonic() + 120
    stored = 0
    while time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.2)
        if db.exists():
            with sqlite3.connect(db) as con:
                try:
                    stored = con.execute("SELECT count(*) FROM sweep_results").fetchone()[0]
                except sqlite3.OperationalError:
                    stored = 0
            if stored >= 3:
                break
    assert proc.poll() is None, proc.stdout.read().decode()
    proc.kill()  # SIGKILL: no cleanup of any kind
    proc.wait()
    with sqlite3.connect(db) as con:
        kept = con.execute("SELECT count(*) FROM sweep_results WHERE status='done'").fetchone()[0]
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert 3 <= kept < n
    started_before = len(_computed(log))
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.strip().splitlines()[-1] == str([3 * i for i in range(n)])
    # the re-run computed exactly the tasks without a stored result (those in flight at the kill included)
    assert len(_computed(log)) - started_before == n - kept
