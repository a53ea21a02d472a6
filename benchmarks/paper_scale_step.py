"""Per-step wall time vs modelled instrument time, and Python's share, at N = 8, 16, 32, 64 (issue 12, item 6).

    .venv/bin/python benchmarks/paper_scale_step.py [--modes 8 16 32 64] [--forwards 10] [--batch 64 6000] \
        [--rounds 3] [--variants float64 float32 float32+overlap] [--grad-steps 5]

Station: stations/paper-mzi.yaml resized to N modes (N(N-1) heaters on the LAN block DAC, N-channel
modulator and DAQ, the paper's error model), its timing model (LAN round trip 0.2 ms per answered
message, every byte of a message and its reply at 100 Mbit/s, 1 ms thermal settling after a heater
change, 10 µs per sample), the virtual lab in a child process. Batch 6000 is the SAT paper's MZI batch
(the bench adapter sends a batch in chunks of the instruments' memory depth, ``max_points``: 65536 on
paper-mzi.yaml, so one sequence; 1024 before round 5). Cases, as in benchmarks/throughput.py (whose ``run_case`` this reuses):
- ``update``: a hardware forward at new controls (every heater changes; what one training step costs
  the bench);
- ``sam:<variant>`` (``--sam``): the step of ``labsat train --mode online --optimizer sam``: the clean pass on
  the hardware (twin backward), the perturbed (w + ε) pass on the twin, digital readout, 10 classes;
- ``layer:<variant>``: an online training step through ``PhysicalLayer``: hardware forward, twin backward
  at N modes, optimizer step; the variant is the twin pass's precision (float64: the twin's own; float32:
  ``labsat.defaults.BACKWARD_DTYPE``) and whether its forward overlaps the measurement (``+overlap``).
Columns: wall per step in the realtime run (the simulator sleeps the modelled instrument time), the
modelled instrument time, the client's Python CPU time (labsat, drivers, pyvisa, torch: everything that
is not waiting for an instrument), Python / wall, and messages (round trips + writes) per step.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from throughput import ChildClock, run_case  # noqa: E402

from labsat.config import parse_config  # noqa: E402
from labsat.lab_process import LabProcess  # noqa: E402
from labsat.station import Station  # noqa: E402


def config_for(modes: int, realtime: bool):
    data = yaml.safe_load((ROOT / "stations" / "paper-mzi.yaml").read_text())
    h = modes * (modes - 1)
    data["instruments"]["heaters"]["channels"] = max(h, 1)
    data["instruments"]["modulator"]["channels"] = modes
    data["instruments"]["detectors"]["channels"] = modes
    mesh = data["layers"]["mesh"]
    mesh.update(modes=modes, heaters={"instrument": "heaters", "channels": f"0-{h - 1}"},
                inputs={"instrument": "modulator", "channels": f"0-{modes - 1}"},
                outputs={"instrument": "detectors", "channels": f"0-{modes - 1}"})
    data["station"]["sim"]["timing"]["realtime"] = realtime
    data["station"]["runs_dir"] = "/tmp/labsat-bench-runs"
    return parse_config(data, f"stations/paper-mzi.yaml at {modes} modes")


VARIANTS = {  # the layer case's twin pass: (backward precision, overlap with the measurement)
    "float64": (None, False),             # the twin's own precision (before round 4)
    "float32": ("float32", False),        # labsat.defaults.BACKWARD_DTYPE
    "float32+overlap": ("float32", True),  # and its forward on a worker thread while the instruments measure
}


def configure(variant: str):
    import torch

    dtype, overlap = VARIANTS[variant]

    def setup(layer):
        layer.backward_dtype = None if dtype is None else getattr(torch, dtype)
        layer.overlap_twin = overlap
    return setup


# Round 5's, 5b's and 5c's changes, switched at run time so that they run in one process, interleaved: ``r5c`` is
# the code as it is; ``r5b`` reverts round 5c's (online SAM's clean pass: the hardware's readings, the readout and
# the loss back to float64, ``Batch.ascent`` a no-op); ``r5`` reverts those and round 5b's (online SAM's perturbed pass: its twin's outputs back to float64 with
# the gains applied to them, the readout back to float64; the clean pass's twin outputs back to float64; the
# loss back to nn.CrossEntropyLoss on (B, C)); ``r4`` reverts those and, for its cases, (1) the instruments' memory depth (the batch in chunks of 1024, 7
# messages each: round 4's adapter), (2) the big blocks' path (pyvisa-py's 4 KiB send/recv loops instead of
# base.send_block / read_float_block straight to the socket), (3) the twin's |U x|^2 through plain autograd
# instead of clements._RealPowers; run()'s smaller numpy changes and the column product's vecdot stay. The
# allocator (hardware/memory.py) cannot be switched back within a process (glibc's dynamic thresholds stay
# off once set): ``--glibc-malloc`` runs the whole benchmark with glibc's own, as before round 5.
STACKS = ("r5c", "r5b", "r5", "r4")


@contextlib.contextmanager
def round5c(name: str):
    """Round 5c's change reverted (``r5b``, ``r5``, ``r4``), or not (``r5c``)."""
    if name == "r5c":
        yield
        return
    from labsat.sat.step import Batch

    saved = Batch.ascent
    Batch.ascent = lambda self: contextlib.nullcontext()
    try:
        with round5(name):
            yield
    finally:
        Batch.ascent = saved


@contextlib.contextmanager
def round5(name: str):
    """Round 5b's changes reverted (``r5``, ``r4``), or not (``r5b``)."""
    if name == "r5b":
        yield
        return
    from torch import nn

    import labsat.physical as physical
    from labsat.train import ClassLoss

    def r5_gradient_twin(twin, x, u, dtype):  # round 5: the twin's result in float64 whatever the dtype
        return twin(x, u) if dtype is None else twin(x, u, dtype=dtype)

    saved = physical._gradient_twin, physical.HybridClassifier.forward, ClassLoss.forward
    physical._gradient_twin = r5_gradient_twin
    physical.HybridClassifier.forward = lambda self, x: self.readout(self.physical(x))
    ClassLoss.forward = nn.CrossEntropyLoss.forward
    try:
        yield
    finally:
        physical._gradient_twin, physical.HybridClassifier.forward, ClassLoss.forward = saved


@contextlib.contextmanager
def stack(name: str, st):
    with round5c(name):
        if name in ("r5c", "r5b", "r5"):
            yield
            return
        with round4(st):
            yield


@contextlib.contextmanager
def round4(st):
    """Round 5's transfer and twin changes reverted (see above)."""
    import labsat.twins.mzi as mzi
    from labsat.drivers import base

    def plain_powers(u, x):  # round 4's clements.powers for real inputs
        n = u.shape[-1]
        y = torch.matmul(x.to(u.real.dtype), torch.cat([u.real, u.imag], -2).transpose(-1, -2))
        return y[..., :n] ** 2 + y[..., n:] ** 2

    import torch

    insts = [i for i in st.instruments.values() if hasattr(i, "max_points")]
    depth = {id(i): i.max_points for i in insts}
    powers, raw = mzi.powers, base.RAW_SOCKET_MIN_BYTES
    mzi.powers, base.RAW_SOCKET_MIN_BYTES = plain_powers, 1 << 62
    for i in insts:
        i.max_points = 1024
    try:
        yield
    finally:
        mzi.powers, base.RAW_SOCKET_MIN_BYTES = powers, raw
        for i in insts:
            i.max_points = depth[id(i)]


def gradient_agreement(st, batch: int, steps: int, seed: int = 1) -> dict:
    """The twin's gradient in float32 vs float64 on real steps: at each of ``steps`` control settings a
    hardware forward, the benchmark's loss gradient at the measured outputs (2 y), and the twin's
    vector-Jacobian product in both precisions at the same (x, u, dL/dy)."""
    import numpy as np
    import torch

    from labsat.kinds.mesh import twin_for
    from labsat.physical import _twin_graph

    mesh = st.mesh()
    cfg = st.config.layers["mesh"]
    twin = twin_for(cfg, st.config.instruments[cfg.heaters.instrument].limits.resistance_ohm)
    rng = np.random.default_rng(seed)
    x = rng.uniform(0.1, 1.0, (batch, mesh.modes))
    cos, rel = [], []
    for _ in range(steps):
        u = rng.uniform(0.1, 0.9, mesh.n_controls)
        g_y = torch.as_tensor(2 * mesh.forward(x, u))
        grads = {}
        for dtype in (None, torch.float32):
            inputs, y = _twin_graph(twin, torch.as_tensor(x), torch.as_tensor(u), False, dtype)
            grads[dtype] = torch.autograd.grad(y, inputs, g_y)[0]
        a, b = grads[None], grads[torch.float32]
        cos.append(float(a @ b / (a.norm() * b.norm())))
        rel.append(float((a - b).norm() / a.norm()))
    return dict(batch=batch, steps=steps, min_cosine=min(cos), max_rel_error=max(rel))


class Replay:
    """The bench's hardware, replaying its last reading while ``replay`` is set (the same detector noise)."""

    def __init__(self, hardware):
        self.hardware, self.replay, self.last = hardware, False, None

    def forward(self, x, u):
        if not self.replay:
            self.last = self.hardware.forward(x, u)
        return self.last


def sam_gradient_agreement(st, batch: int, steps: int, seed: int = 2) -> dict:
    """Online SAM's perturbed (w + ε) pass, the code as it is (twin and readout in ``backward_dtype``) vs
    all float64, on real steps: the step of ``labsat train --mode online --optimizer sam`` (hardware clean
    pass, ascent), then the perturbed pass's gradient both ways at the same w + ε (controls, readout weights
    and bias, each and all together), then the descent (the float64 gradient's) to the next step."""
    import numpy as np
    import torch

    from labsat.kinds.mesh import twin_for
    from labsat.physical import HybridClassifier, PhysicalLayer
    from labsat.sat.step import Batch
    from labsat.train import ClassLoss, TrainConfig, make_optimizer

    mesh = st.mesh()
    cfg = st.config.layers["mesh"]
    layer = PhysicalLayer(twin_for(cfg, st.config.instruments[cfg.heaters.instrument].limits.resistance_ohm), mesh)
    layer.use_hardware = True
    model = HybridClassifier(layer, 10, seed=seed)
    opt = make_optimizer(model.parameters(), TrainConfig(mode="online", optimizer="sam", lr=1e-3), model=model)
    rng = np.random.default_rng(seed)
    b = Batch(model, torch.as_tensor(rng.uniform(0.1, 1.0, (batch, mesh.modes))),
              torch.as_tensor(rng.integers(0, 10, batch)), torch.arange(batch), ClassLoss())
    params = [p for p in model.parameters() if p.requires_grad]  # u, the readout's weight and bias
    new = layer.backward_dtype
    out = {"all": ([], []), "controls": ([], []), "readout": ([], [])}
    reading = Replay(mesh)
    layer.hardware = reading
    asc = {"float64": ([], [], []), "r5b": ([], [], [])}  # ε cosine, ε relative error, loss relative difference
    for _ in range(steps):
        # the clean pass as SAM.step_batch takes it (the code as it is), then at the same hardware reading with all
        # float64 and as round 5b (readout and loss float64, twin float32); the ascent ε = rho g / |g| over the
        # perturbed groups (the controls): its direction is that of the gradients computed there
        clean = {}
        for name, dtype, ascent in (("new", new, True), ("float64", None, True), ("r5b", new, False)):
            layer.backward_dtype, reading.replay = dtype, name != "new"
            with opt._ascent_only(), (b.ascent() if ascent else contextlib.nullcontext()):
                loss, _ = b.forward_backward(opt)
            clean[name] = float(loss.detach()), torch.cat([p.grad.flatten() for p in params if p.grad is not None])
        layer.backward_dtype, reading.replay = new, False
        for name in asc:
            (l0, a), (l1, c) = clean[name], clean["new"]
            asc[name][0].append(float(a @ c / (a.norm() * c.norm())))
            asc[name][1].append(float((a - c).norm() / a.norm()))
            asc[name][2].append(abs(l1 - l0) / abs(l0))
        opt.first_step(zero_grad=True)  # the ascent from the last (r5b's) gradient
        grads = {}
        for name, dtype in (("float64", None), ("new", new)):
            layer.backward_dtype = dtype
            opt.zero_grad()
            with b.on_twin(gradient_only=True):
                b.forward_backward(opt)
            grads[name] = [p.grad.clone() for p in params]
        layer.backward_dtype = new
        for p, g in zip(params, grads["float64"]):  # descend with the float64 gradient
            p.grad = g
        opt.second_step(zero_grad=True)
        layer.project_()
        for part, sel in (("all", slice(None)), ("controls", slice(0, 1)), ("readout", slice(1, None))):
            a = torch.cat([g.flatten() for g in grads["float64"][sel]])
            c = torch.cat([g.flatten() for g in grads["new"][sel]])
            out[part][0].append(float(a @ c / (a.norm() * c.norm())))
            out[part][1].append(float((a - c).norm() / a.norm()))
    layer.hardware = mesh
    return dict(batch=batch, steps=steps, pass_="sam perturbed", backward_dtype=str(new),
                **{f"ascent_vs_{k}_{m}": (min(v[0]) if m == "min_cosine" else max(v[i]))
                   for k, v in asc.items() for i, m in ((0, "min_cosine"), (1, "max_rel_error"), (2, "max_loss_rel"))},
                **{f"{k}_min_cosine": min(v[0]) for k, v in out.items()},
                **{f"{k}_max_rel_error": max(v[1]) for k, v in out.items()})


def median_row(rows: list[dict]) -> dict:
    import numpy as np

    out = dict(rows[0])
    for key in ("wall_s", "modelled_s", "python_s", "process_s", "sim_s", "slept_s", "messages"):
        out[key] = float(np.median([r[key] for r in rows]))
    out["rounds"] = len(rows)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--modes", type=int, nargs="+", default=[8, 16, 32, 64])
    ap.add_argument("--forwards", type=int, default=10, help="steps per case and round")
    ap.add_argument("--rounds", type=int, default=1, help="interleaved rounds of every case (median)")
    ap.add_argument("--batch", type=int, nargs="+", default=[64])
    ap.add_argument("--variants", nargs="+", default=["float64", "float32"], choices=list(VARIANTS),
                    help="the layer case's twin pass (see VARIANTS)")
    ap.add_argument("--sam", action="store_true", help="also the step of `labsat train --mode online "
                    "--optimizer sam` (hardware clean pass, twin perturbed pass) in each variant")
    ap.add_argument("--grad-steps", type=int, default=0, help="also measure float32 vs float64 gradients on "
                    "this many real steps per batch size")
    ap.add_argument("--stacks", nargs="+", default=["r5c"], choices=STACKS,
                    help="r5c: the code as it is; r5b: round 5c's clean-pass change reverted; r5: that and round "
                         "5b's SAM-step changes reverted; r4: those and round "
                         "5's transfer and twin changes reverted at run time (see STACKS), interleaved in one "
                         "process")
    ap.add_argument("--profile", action="store_true", help="after the rounds, one more run of each sam case "
                    "under cProfile (client thread CPU time), its top functions by own time printed and kept")
    ap.add_argument("--glibc-malloc", action="store_true", help="keep glibc's own malloc thresholds (before "
                    "round 5; labsat.hardware.memory not applied)")
    ap.add_argument("--no-realtime", action="store_true", help="skip the realtime run (the wall column); the "
                    "Python share comes from the fast run either way")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "paper_scale_step.json")
    args = ap.parse_args()
    import torch

    from labsat.hardware import memory

    memory.ENABLED = not args.glibc_malloc

    torch.set_num_threads(1)  # what labsat train chooses for these sizes (defaults.torch_threads)
    rows, agreement, profiles = [], [], []
    cases = ["update"] + [f"layer:{v}" for v in args.variants] + [f"sam:{v}" for v in args.variants if args.sam]
    cases = [c if k == "r5c" else f"{c}@{k}" for k in args.stacks for c in cases]
    for n in args.modes:
        for realtime in ((False,) if args.no_realtime else (True, False)):
            with LabProcess(config_for(n, realtime)) as lab, Station(lab.config) as st:
                if args.grad_steps and not realtime:
                    for batch in args.batch:
                        agreement.append(dict(modes=n, **gradient_agreement(st, batch, args.grad_steps)))
                        print(agreement[-1], flush=True)
                        if args.sam:
                            agreement.append(dict(modes=n, **sam_gradient_agreement(st, batch, args.grad_steps)))
                            print(agreement[-1], flush=True)
                for batch in args.batch:
                    got = {c: [] for c in cases}
                    for _ in range(args.rounds):  # interleaved: A, B, C, A, B, C, ...
                        for c in cases:
                            what, _, code = c.partition("@")
                            kind, _, variant = what.partition(":")
                            with stack(code or "r5c", st):
                                r = run_case(st, ChildClock(lab), kind, batch, args.forwards,
                                             configure=configure(variant) if variant else None)
                            r.pop("per_instrument", None)
                            got[c].append(r)
                    if args.profile:
                        for c in cases:
                            what, _, code = c.partition("@")
                            kind, _, variant = what.partition(":")
                            if kind != "sam":
                                continue
                            with stack(code or "r5c", st):
                                r = run_case(st, ChildClock(lab), kind, batch, args.forwards, profile=True,
                                             configure=configure(variant) if variant else None)
                            profiles.append(dict(modes=n, batch=batch, case=c, profile=r["profile"]))
                            print(f"--- profile {c}, N = {n}, batch {batch}, {args.forwards} steps, client thread "
                                  f"CPU {1e3 * r['python_s'] / args.forwards:.1f} ms/step ---\n{r['profile']}",
                                  flush=True)
                    for c in cases:
                        r = median_row(got[c])
                        r.update(case=c, modes=n, realtime=realtime, malloc="glibc" if args.glibc_malloc else "labsat")
                        rows.append(r)
                        print({k: r[k] for k in ("modes", "case", "batch", "realtime", "wall_s", "modelled_s",
                                                 "python_s", "process_s", "messages")}, flush=True)
                        args.out.parent.mkdir(parents=True, exist_ok=True)
                        args.out.write_text(json.dumps({"rows": rows, "gradients": agreement, "profiles": profiles}, indent=1,
                                                       default=float))  # as it goes
    print(f"\n{args.forwards} steps per case, median of {args.rounds} interleaved rounds\n")
    print("| N | heaters | batch | case | wall ms/step (realtime) | modelled instrument ms/step | Python CPU ms/step "
          "(client thread) | client process CPU ms/step | Python / (Python + modelled) | messages/step |")
    print("|---|---:|---:|---|---:|---:|---:|---:|---:|---:|")
    for fast in rows:
        if fast["realtime"]:
            continue
        wall = next((x for x in rows if x["modes"] == fast["modes"] and x["case"] == fast["case"]
                     and x["batch"] == fast["batch"] and x["realtime"]), None)
        f = fast["forwards"]
        py, model = fast["python_s"] / f, fast["modelled_s"] / f
        wall_ms = "-" if wall is None else f"{1e3 * wall['wall_s'] / f:.1f}"
        print(f"| {fast['modes']} | {fast['modes'] * (fast['modes'] - 1)} | {fast['batch']} | {fast['case']} | "
              f"{wall_ms} | {1e3 * model:.1f} | {1e3 * py:.1f} | "
              f"{1e3 * fast['process_s'] / f:.1f} | {100 * py / (py + model):.0f} % | {fast['messages'] / f:.1f} |")
    if agreement:
        print("\n| N | batch | real steps | min cosine (float32 vs float64 gradient) | max relative error |")
        print("|---|---:|---:|---:|---:|")
        for a in agreement:
            if "min_cosine" in a:
                print(f"| {a['modes']} | {a['batch']} | {a['steps']} | {a['min_cosine']:.12f} | {a['max_rel_error']:.2e} |")
        print("\nOnline SAM's perturbed pass (twin + readout in backward_dtype vs float64), min cosine / max relative error")
        print("| N | batch | real steps | all parameters | controls | readout |")
        print("|---|---:|---:|---:|---:|---:|")
        for a in agreement:
            if "all_min_cosine" in a:
                print(f"| {a['modes']} | {a['batch']} | {a['steps']} | " + " | ".join(
                    f"{a[k + '_min_cosine']:.12f} / {a[k + '_max_rel_error']:.1e}" for k in ("all", "controls", "readout"))
                    + " |")
        print("\nOnline SAM's clean pass (the ascent ε; readout and loss in backward_dtype) vs all float64 / vs round "
              "5b (readout float64): min ε cosine, max ε relative error, max relative loss difference")
        print("| N | batch | real steps | vs all float64 | vs round 5b |")
        print("|---|---:|---:|---:|---:|")
        for a in agreement:
            if "ascent_vs_float64_min_cosine" in a:
                print(f"| {a['modes']} | {a['batch']} | {a['steps']} | " + " | ".join(
                    f"{a[f'ascent_vs_{k}_min_cosine']:.12f} / {a[f'ascent_vs_{k}_max_rel_error']:.1e} / "
                    f"{a[f'ascent_vs_{k}_max_loss_rel']:.1e}" for k in ("float64", "r5b")) + " |")


if __name__ == "__main__":
    main()
