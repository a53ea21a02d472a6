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


def test_scheduler_from_dask_config(tmp_path):
    import dask

    log = tmp_path / "log"
    with dask.config.set({"labsat.scheduler": "serial"}):  # as ~/.config/dask/labsat.yaml would
        assert run_sweep(counted_task, [{"i": 3, "log": str(log)}], name="c", store=tmp_path, progress=False) == [9]
    with SweepStore(tmp_path) as st:
        assert st.rows("c")[0]["worker"].endswith(f":{os.getpid()}")  # ran here, no cluster started


def test_sweeps_add_their_bars_to_the_callers_live_display(tmp_path):
    """progress= a running rich Progress (the CLI's, on its console): each sweep is one more bar in it, no
    second live display (rich allows one), stored tasks count as done."""
    import io

    from rich.console import Console
    from rich.progress import Progress

    log = tmp_path / "log"
    tasks = [{"i": i, "log": str(log)} for i in range(3)]
    out = io.StringIO()
    notes = []
    with Progress(console=Console(file=out, width=120)) as bar:
        bar.add_task("experiment x", total=None)
        assert run_sweep(counted_task, tasks[:1], name="p1", store=tmp_path, scheduler="serial", progress=bar,
                         log=notes.append) == [0]
        assert run_sweep(counted_task, tasks, name="p2", store=tmp_path, scheduler="serial", progress=bar,
                         log=notes.append) == [0, 1, 4]
        sweeps = {t.description: (t.completed, t.total) for t in bar.tasks}
    assert sweeps == {"experiment x": (0, None), "sweep p1": (1, 1), "sweep p2": (3, 3)}
    assert _computed(log) == [0, 1, 2]
    assert notes[-1].startswith("sweep p2: 1 of 3 results already in")
    assert "sweep p2" in out.getvalue()


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
    # through the scheduler's address, as `--scheduler tcp://HOST:8786` does
    dist = run_sweep(matmul_task, tasks[::-1], name="m", store=tmp_path / "b", scheduler=client.scheduler.address,
                     progress=False)[::-1]
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


@pytest.mark.parametrize("scheduler", ["serial", "local"])
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


def test_experiment_units_on_local_cluster_equal_serial(tmp_path, client):
    """Real units: offline and online trainings, then evaluations on two virtual chips (one at a drift)."""
    from dataclasses import asdict

    from labsat import experiment_units as units
    from labsat.config import load_config
    from labsat.train import TrainConfig

    station = Path(__file__).resolve().parents[1] / "instruments.yaml"
    env = units.env_of(load_config(station), "digits", None, None)
    offline = [{"env": env, "chip": None, "seed": seed, "twin": None, "start": None,
                "config": asdict(TrainConfig(epochs=1, seed=seed, optimizer=opt, perturb="controls"))}
               for seed, opt in ((0, "adam"), (1, "sam"))]

    def sweep(where: dict, store: Path) -> tuple[list, list]:
        trained = run_sweep(units.train, offline, name="offline", store=store, progress=False, **where)
        online = [{"env": env, "chip": 1, "seed": 0, "twin": None, "start": units.state_json(trained[0]["state"]),
                   "config": asdict(TrainConfig(mode="online", epochs=1, seed=0))}]
        trained += run_sweep(units.train, online, name="online", store=store, progress=False, **where)
        evals = [{"env": env, "chip": chip, "delta_kelvin": dk, "twin": True,
                  "model": {"seed": t["meta"]["seed"], "state": units.state_json(t["state"])}}
                 for t in trained for chip, dk in ((1, 0.0), (2, 1.5))]
        return trained, run_sweep(units.evaluate, evals[::-1] if where.get("client") else evals, name="eval",
                                  store=store, progress=False, **where)[::-1 if where.get("client") else 1]

    s_models, s_acc = sweep({"scheduler": "serial"}, tmp_path / "serial")
    d_models, d_acc = sweep({"client": client}, tmp_path / "dask")
    assert s_models[-1]["meta"]["hardware_queries"] > 0  # the online one really ran on a virtual chip
    for a, b in zip(s_models, d_models):
        assert a["state"].keys() == b["state"].keys()
        assert all(torch.equal(a["state"][k], b["state"][k]) for k in a["state"])
        assert a["meta"]["final_loss"] == b["meta"]["final_loss"]
    assert s_acc == d_acc and len(s_acc) == 6
    assert len({a["device"] for a in s_acc}) > 1  # the numbers are not all alike
