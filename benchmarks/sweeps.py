"""Speed-up of a fixed sweep of trainings on a LocalCluster vs serial, measured in one run, and the
overhead a task costs. Writes benchmarks/results/sweeps.json.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/sweeps.py                 # 12 trainings, 2 workers
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/sweeps.py --tasks 4 --epochs 2   # a quick look

The sweep: offline trainings on the nominal twin of instruments.yaml's mesh (digits, 8 modes), Adam and
SAM alternating, one seed each (the experiments' `train` unit, labsat/experiment_units.py). It runs
(1) serially in this process, (2) on an embedded LocalCluster (``--workers`` processes x 1 thread), with
fresh stores, and checks that both give bit-identical models.

On a shared machine wall times carry the other users' load, so the CPU time of each task (the thread
that ran it) is recorded too: the **load-free speed-up** is serial CPU time / the busiest worker's CPU
time, what the cluster gives when each worker has a core of its own. Overhead per task: no-op tasks
through the same path (submit, run, result back, stored in sqlite), wall time per task and this
process's CPU time per task.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from collections import defaultdict
from dataclasses import asdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def noop(task: dict) -> int:
    return task["i"]


def proc_cpu() -> float:
    """CPU time of this whole process (every thread), user + system."""
    import resource

    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _pid_cpu() -> tuple[int, float]:
    return os.getpid(), proc_cpu()


def cluster_cpu(client) -> dict[str, float]:
    """CPU time of every worker process of the cluster (the nannies of a LocalCluster live in this process,
    whose CPU time is counted apart)."""
    here = os.getpid()
    return {f"worker {pid}": cpu for pid, cpu in client.run(_pid_cpu).values() if pid != here}


def delta(after: dict, before: dict) -> dict:
    return {k: after[k] - before.get(k, 0.0) for k in after}


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tasks", type=int, default=12)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--noops", type=int, default=200)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "sweeps.json")
    args = ap.parse_args()

    import torch

    from labsat import experiment_units as units
    from labsat.config import load_config
    from labsat.sweeps import SweepStore, open_client, run_sweep
    from labsat.train import TrainConfig

    env = units.env_of(load_config(ROOT / "instruments.yaml"), "digits", None, None)
    tasks = [{"env": env, "chip": None, "seed": i, "twin": None, "start": None,
              "config": asdict(TrainConfig(epochs=args.epochs, seed=i, optimizer=("adam", "sam")[i % 2],
                                           perturb="controls", rho=0.05))} for i in range(args.tasks)]
    tmp = Path(tempfile.mkdtemp(prefix="labsat-sweeps-bench-"))
    report: dict = {"tasks": args.tasks, "epochs": args.epochs, "workers": args.workers, "cpus": os.cpu_count(),
                    "python": platform.python_version(), "torch": torch.__version__, "load_before": load()}

    def stats(store: Path, sweep: str) -> list[dict]:
        with SweepStore(store) as st:
            return st.rows(sweep)

    # (1) serial, in this process
    for t in [dict(tasks[0], config=asdict(TrainConfig(epochs=1, seed=0, optimizer=o, perturb="controls")))
              for o in ("adam", "sam")]:
        _warm(t)  # the same warm-up as each worker gets
    t0, c0 = time.perf_counter(), proc_cpu()
    serial = run_sweep(units.train, tasks, name="bench", store=tmp / "serial", scheduler="serial", progress=False)
    wall_serial, cpu_serial_proc = time.perf_counter() - t0, proc_cpu() - c0
    rows_s = stats(tmp / "serial", "bench")
    report["load_after_serial"] = load()

    # (2) LocalCluster: start (timed apart), warm each worker (imports, data set), then the same sweep
    t0 = time.perf_counter()
    with open_client(None, n_workers=args.workers, log=lambda m: None) as client:
        started = time.perf_counter() - t0
        # warm-up: imports, data set and a 1-epoch training of each optimizer on every worker (once per worker)
        warm = [dict(t, config=asdict(TrainConfig(epochs=1, seed=0, optimizer=o, perturb="controls")))
                for t, o in zip(tasks[:1] * 2, ("adam", "sam"))]
        t1 = time.perf_counter()
        for w in client.scheduler_info()["workers"]:
            for t in warm:
                client.submit(_warm, t, workers=[w], pure=False).result()
        warmed = time.perf_counter() - t1
        k0 = cluster_cpu(client)
        t2, c2 = time.perf_counter(), proc_cpu()
        dist = run_sweep(units.train, tasks, name="bench", store=tmp / "dask", client=client, progress=False)
        wall_dist, cpu_dist_proc = time.perf_counter() - t2, proc_cpu() - c2
        k1 = cluster_cpu(client)
        rows_d = stats(tmp / "dask", "bench")
        report["load_after_dask"] = load()
        # overhead per task: no-ops through the same path (every process of the cluster counted)
        t3, c3 = time.perf_counter(), proc_cpu()
        run_sweep(noop, [{"i": i} for i in range(args.noops)], name="noop", store=tmp / "noop", client=client,
                  progress=False)
        noop_wall, noop_cpu = time.perf_counter() - t3, proc_cpu() - c3
        k2 = cluster_cpu(client)
    t4, c4 = time.perf_counter(), proc_cpu()
    run_sweep(noop, [{"i": i} for i in range(args.noops)], name="noop", store=tmp / "noop-serial",
              scheduler="serial", progress=False)
    noop_serial_wall, noop_serial_cpu = time.perf_counter() - t4, proc_cpu() - c4

    identical = all(a["state"].keys() == b["state"].keys() and all(torch.equal(a["state"][k], b["state"][k])
                                                                  for k in a["state"]) for a, b in zip(serial, dist))
    cpu_s = sum(r["cpu_seconds"] for r in rows_s)
    per_worker: dict[str, float] = defaultdict(float)
    for r in rows_d:
        per_worker[r["worker"]] += r["cpu_seconds"]
    cpu_d = sum(per_worker.values())
    # every process's CPU during the sweep: on an idle machine with `workers` cores the sweep takes at least
    # the busiest worker process's CPU time and at least the total CPU time / cores
    sweep_cpu = delta(k1, k0)
    busiest = max(v for k, v in sweep_cpu.items() if k.startswith("worker"))
    total = sum(sweep_cpu.values()) + cpu_dist_proc
    idle_wall = max(busiest, total / args.workers)
    noop_total = sum(delta(k2, k1).values()) + noop_cpu
    report.update({
        "identical": identical,
        "serial": {"wall_s": wall_serial, "task_cpu_s": cpu_s, "process_cpu_s": cpu_serial_proc,
                   "task_wall_s": sum(r["seconds"] for r in rows_s)},
        "dask": {"cluster_start_s": started, "warm_up_s": warmed, "wall_s": wall_dist, "task_cpu_s": cpu_d,
                 "process_cpu_s": sweep_cpu, "all_processes_cpu_s": total, "idle_wall_estimate_s": idle_wall,
                 "busiest_worker_cpu_s": max(per_worker.values()), "per_worker_cpu_s": dict(per_worker),
                 "client_process_cpu_s": cpu_dist_proc, "task_wall_s": sum(r["seconds"] for r in rows_d)},
        "speedup_wall": wall_serial / wall_dist,
        "speedup_wall_incl_start": wall_serial / (wall_dist + started + warmed),
        "speedup_cpu": cpu_serial_proc / idle_wall,
        "task_cpu_inflation": cpu_d / cpu_s,
        "noop": {"n": args.noops, "dask_wall_ms_per_task": 1e3 * noop_wall / args.noops,
                 "dask_client_cpu_ms_per_task": 1e3 * noop_cpu / args.noops,
                 "dask_all_processes_cpu_ms_per_task": 1e3 * noop_total / args.noops,
                 "serial_wall_ms_per_task": 1e3 * noop_serial_wall / args.noops,
                 "serial_cpu_ms_per_task": 1e3 * noop_serial_cpu / args.noops},
        "training_cpu_s_mean": cpu_s / len(tasks),
    })
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))
    d, s = report["dask"], report["serial"]
    print(f"load (1/5/15 min) before {report['load_before']}, after serial {report['load_after_serial']}, "
          f"after dask {report['load_after_dask']}; {os.cpu_count()} CPUs")
    print(f"{args.tasks} trainings x {args.epochs} epochs; bit-identical serial vs dask: {identical}")
    print("| | serial | LocalCluster |\n|---|---|---|")
    print(f"| wall (s) | {s['wall_s']:.1f} | {d['wall_s']:.1f} (+ start {d['cluster_start_s']:.1f}, "
          f"warm-up {d['warm_up_s']:.1f}) |")
    print(f"| task CPU, sum (s) | {s['task_cpu_s']:.1f} | {d['task_cpu_s']:.1f} (busiest worker "
          f"{d['busiest_worker_cpu_s']:.1f}) |")
    print(f"| CPU of every process (s) | {s['process_cpu_s']:.1f} | {d['all_processes_cpu_s']:.1f} (busiest worker "
          f"process {busiest:.1f}) |")
    print(f"| idle-machine wall estimate (s) | {s['process_cpu_s']:.1f} | {idle_wall:.1f} |")
    print(f"speed-up: wall {report['speedup_wall']:.2f}x (with start and warm-up "
          f"{report['speedup_wall_incl_start']:.2f}x), load-free (CPU) {report['speedup_cpu']:.2f}x; "
          f"task CPU on workers / serial {report['task_cpu_inflation']:.3f}")
    n = report["noop"]
    print(f"overhead per task: dask {n['dask_wall_ms_per_task']:.1f} ms wall, {n['dask_client_cpu_ms_per_task']:.1f} "
          f"ms client CPU, {n['dask_all_processes_cpu_ms_per_task']:.1f} ms CPU of all processes; serial {n['serial_wall_ms_per_task']:.1f} ms wall (store write); a training "
          f"here costs {report['training_cpu_s_mean']:.2f} s CPU")
    print(f"wrote {args.out}")


def _warm(task: dict) -> None:
    from labsat import experiment_units as units
    from labsat.sweeps import execute

    execute(units.train, task)  # imports, config and data set (once per process), first training


if __name__ == "__main__":
    main()
