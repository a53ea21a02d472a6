"""Physics-aware training (PAT) vs in-silico training on the pulse shaper + SHG kind, two physical layers.

The network (as in Wright et al., Nature 2022, Fig. 4): vowel features -> SHG layer 1 -> digital linear
layer + sigmoid -> SHG layer 2 -> digital linear readout. Both physical layers run on the same device in
turn (stations/pulse.yaml: 8 input macro-pixels, 40 parameter macro-pixels each, 20 spectrometer pixels),
each with its own 40 parameters; they share the device's learned twin (an ensemble,
labsat.twins.pulse_learned).  ``--physical-layers`` / ``--hidden`` change the network (more physical layers, a hidden
layer in the digital layers between), ``--averages`` the spectrometer's averaging count (exposures per spectrum).

Per device: calibrate (random parameters and inputs, ``--cal-settings`` x 4 queries) and fit the twin;
report its held-out R². Per device and seed, from the same initial network:

- **in silico**: trained on the twin alone, then deployed on the device;
- **PAT**: continues from the in-silico network, forward on the device, backward through the twin, the
  twin refreshed online from the training's own measurements (the pulse kind's default, labsat.calibration.pulse.OnlineRefresh);
- **PAT, cautious**: the same, with gradients through the twin scaled by the ensemble's trust factor
  (smaller steps where the members disagree): the uncertainty ablation.

After PAT, the twin's R² near the final parameters (fresh queries at the inputs the layers really receive,
parameters within ``--near`` of the final ones) is measured for the refreshed twin and for the
calibration-only twin. Devices and seeds are declared: tune on ``--tune`` (device 1, seed 0), report on
the others; every run is written to results.json.

    .venv/bin/python benchmarks/pulse_pat.py --devices 2 3 4 5 6 --seeds 0 1 2 --out runs/bench/pulse-pat
"""
from __future__ import annotations

import argparse
import copy
import dataclasses
import functools
import json
import time
from pathlib import Path

import numpy as np
import torch
import yaml
from labsat.calibration import measure
from labsat.calibration.learned import collect
from labsat.calibration.measure import Measurements
from labsat.calibration.pulse import OnlineRefresh, fit_learned, prediction_error
from labsat.calibration.sweeps import concat

from labsat.config import parse_config
from labsat.data import load_digits
from labsat.hardware.pulse import input_pixels
from labsat.kinds import KINDS
from labsat.multilayer import DeepClassifier
from labsat.physical import PhysicalLayer
from labsat.station import Station
from labsat.train import TrainConfig, accuracy, train
from labsat.vowels import load_vowels

REPO = Path(__file__).resolve().parents[1]
# declared data sets, split seed 0, features = the layer's input pixels
DATASETS = {"vowels": load_vowels, "digits": load_digits}


def station_config(path: Path, n_controls: int | None, tmp: Path, n_inputs: int | None = None,
                   averages: int | None = None):
    """The station's config with its folders under ``tmp`` and, if given, the layer's parameter / input pixel
    counts overridden (inputs stay where ``input_layout`` puts them; the data sets get ``n_inputs`` features)
    and the spectrometer's averaging count (``averages``: exposures per spectrum)."""
    d = yaml.safe_load(path.read_text())
    d["station"]["calibration_dir"] = str(tmp / "cal")
    d["station"]["runs_dir"] = str(tmp / "runs")
    layer = next(iter(d["layers"].values()))
    if n_controls:
        layer["n_controls"] = n_controls
    if n_inputs:
        layer["n_inputs"] = n_inputs
    if averages:
        d["instruments"][layer["outputs"]["instrument"]]["averages"] = averages
    return parse_config(d)


def detector_averages(cfg, lname: str) -> int:
    """The averaging count of the spectrometer that reads layer ``lname``."""
    return cfg.instruments[cfg.layers[lname].outputs.instrument].averages


def bright_order(data, n_inputs: int, n_controls: int, layout: str):
    """The data's features re-ordered so that the k-th feature (PCA: the k-th largest variance) is written
    into the k-th brightest input pixel (the nearest to the pulse's centre; the virtual pulse is a Gaussian
    centred on the band), instead of into input pixel k."""
    pix = input_pixels(n_inputs, n_controls, layout)
    rank = np.argsort(np.argsort(np.abs(pix - (n_inputs + n_controls - 1) / 2), kind="stable"), kind="stable")
    perm = torch.as_tensor(rank)  # input pixel j gets feature rank[j]
    return dataclasses.replace(data, x_train=data.x_train[:, perm], x_test=data.x_test[:, perm])


def initial_controls(n: int, seed: int, init: str) -> torch.Tensor:
    """'flat': every parameter pixel near phase pi (a flat spectral phase: a bright, input-sensitive SH
    signal); 'random': uniform in [0.1, 0.8] (PhysicalLayer's default: a dim, speckle-like SH signal)."""
    g = torch.Generator().manual_seed(seed)
    if init == "flat":
        return 0.5 + 0.02 * torch.randn(n, generator=g, dtype=torch.float64)
    return 0.1 + 0.7 * torch.rand(n, generator=g, dtype=torch.float64)


def build(twin, hw, seed: int, n_classes: int, init: str = "flat", physical: int = 2,
          hidden: int = 0) -> DeepClassifier:
    """``physical`` physical layers on the same device (own parameters, the device's shared twin), a digital
    layer between each two (``hidden`` > 0: with a hidden layer that wide)."""
    layers = [PhysicalLayer(twin, hw, seed=seed + 101 * k) for k in range(physical)]
    with torch.no_grad():
        for k, layer in enumerate(layers):
            layer.u.copy_(initial_controls(twin.n_controls, seed + 101 * k, init))
    return DeepClassifier(layers, n_classes, seed=seed, between="linear", hidden=hidden)


def layer_inputs(model: DeepClassifier, x: torch.Tensor) -> list[np.ndarray]:
    """The inputs each physical layer receives for data ``x`` (on the twin; for local-accuracy queries)."""
    out, h = [], x
    with torch.no_grad():
        for k, layer in enumerate(model.physical.layers):
            out.append(h.numpy())
            if k < len(model.electronics):
                h = model.electronics[k](layer.twin(h, layer.controls()))
    return out


def near_queries(hw, model, x: torch.Tensor, near: float, settings: int, seed: int) -> Measurements:
    """Fresh queries near each layer's final parameters, at the inputs that layer really receives."""
    rng = np.random.default_rng(seed)
    us, xs, ps = [], [], []
    for layer, inputs in zip(model.physical.layers, layer_inputs(model, x)):
        u = layer.controls().detach().numpy()
        for _ in range(settings):
            uk = np.clip(u + near * rng.uniform(-1, 1, u.shape), 0, 1)
            xk = inputs[rng.choice(len(inputs), 4, replace=False)]
            us.append(uk), xs.append(xk), ps.append(hw.forward(xk, uk))
    return Measurements(np.array(us), np.array(xs), np.array(ps))


def noisy_twin_accuracy(model, twin, data, seed: int, averages: int = 1) -> float:
    """Test accuracy on the twin with the detector's noise added to its outputs (a diagnostic: shot noise
    of the counts plus 15 counts of read noise, over sqrt(``averages``) exposures averaged; outputs in 10^4
    counts as stations/pulse.yaml; no queries)."""
    g = torch.Generator().manual_seed(seed + 4242)

    def add_noise(module, inputs, out):
        counts = (out.detach() * 1e4).clamp_min(0.0)
        sd = torch.sqrt((counts + 15.0 ** 2) / averages) / 1e4
        return out + sd * torch.randn(out.shape, generator=g, dtype=out.dtype)

    hook = twin.register_forward_hook(add_noise)
    try:
        return accuracy(model, data.x_test, data.y_test, on_hardware=False)
    finally:
        hook.remove()


def calibrate_device(hw, cfg, lname: str, device: int, args) -> tuple:
    """Calibrate one device (``args.cal_settings`` x 4 queries, a share ``args.cal_near`` of them near the
    start) and fit the kind's twin; returns the twin and its record (held-out errors, queries, times)."""
    layer_cfg = cfg.layers[lname]
    t0 = time.time()
    n_near = int(round(args.cal_near * args.cal_settings))
    glob = measure(hw, args.cal_settings - n_near, 4, seed=device)
    fit_set, held = glob.split(0.2, seed=device)
    near_held = None
    if n_near:  # active sampling: around the parameters training starts from
        centre = initial_controls(layer_cfg.n_controls, 0, args.init).numpy()
        near = collect(hw, n_near, 4, seed=device + 500, center=centre, sigma=args.cal_sigma)
        near_fit, near_held = near.split(0.2, seed=device)
        fit_set = concat(fit_set, near_fit)
    t_measure = time.time() - t0
    twin = KINDS["pulse_shg"].make_twin(cfg, lname)  # the kind's twin, with its online refresh
    fit_learned(twin, fit_set, epochs=args.twin_epochs)
    record = {"held_out": prediction_error(twin, held),
              "held_out_near_start": None if near_held is None else prediction_error(twin, near_held),
              "queries": int(args.cal_settings * 4),
              "detector_s": args.cal_settings * 4 * detector_averages(cfg, lname)
              * cfg.instruments[layer_cfg.outputs.instrument].integration_s,
              "measure_s": t_measure, "fit_s": time.time() - t0 - t_measure,
              "reference_spread": float(twin.reference_spread)}
    print(f"device {device}: twin R² {record['held_out']['r2']:.3f} global, "
          f"{(record['held_out_near_start'] or {}).get('r2', float('nan')):.3f} near the start "
          f"({time.time() - t0:.0f} s)", flush=True)
    return twin, record


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--station", default=str(REPO / "stations" / "pulse.yaml"))
    ap.add_argument("--n-controls", type=int, default=None, help="override the station's parameter pixels")
    ap.add_argument("--n-inputs", type=int, default=None,
                    help="override the station's input pixels (= the data's features: PCA / formant features)")
    ap.add_argument("--averages", type=int, default=None,
                    help="override the spectrometer's averaging count (SENS:AVER:COUN: noise / sqrt(n), time x n)")
    ap.add_argument("--feature-order", default="index", choices=("index", "bright"),
                    help="feature k into input pixel k, or into the k-th brightest input pixel")
    ap.add_argument("--physical-layers", type=int, default=2, help="physical (SHG) layers in the network")
    ap.add_argument("--hidden", type=int, default=0,
                    help="width of a hidden layer in each digital layer between physical layers (0: one linear map)")
    ap.add_argument("--data", nargs="+", default=["vowels"], choices=tuple(DATASETS),
                    help="one or more (each device's calibration serves all): vowels (synthetic, 10 classes, "
                         "digital ceiling 82-89 %%) or digits (sklearn 8x8, PCA to the input pixels, 10 classes, "
                         "digital ceiling ~95 %% at 8 features)")
    ap.add_argument("--devices", type=int, nargs="+", default=[2, 3, 4, 5, 6])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--cal-settings", type=int, default=1500)
    ap.add_argument("--cal-near", type=float, default=0.0,
                    help="fraction of calibration settings near the start (bright rows: they dominate the ShgTwin fit, "
                         "global R² 0.99 -> 0.70-0.85 at 0.25; benchmarks/README.md)")
    ap.add_argument("--cal-sigma", type=float, default=0.05)
    ap.add_argument("--init", default="flat", choices=("flat", "random"))
    ap.add_argument("--twin-epochs", type=int, default=60)
    ap.add_argument("--insilico-epochs", type=int, default=30)
    ap.add_argument("--pat-epochs", type=int, default=4)
    ap.add_argument("--lr", type=float, default=0.02)
    ap.add_argument("--pat-lr", type=float, default=0.01)
    ap.add_argument("--pat-batch", type=int, default=32)
    ap.add_argument("--norm-inputs", type=int, default=256)
    ap.add_argument("--pat-from", default="insilico", choices=("insilico", "scratch"),
                    help="PAT starts from the in-silico network (same seed) or from the same initial network")
    ap.add_argument("--near", type=float, default=0.02)
    ap.add_argument("--near-settings", type=int, default=40)
    ap.add_argument("--methods", nargs="+", default=["in silico", "PAT", "PAT cautious"],
                    help="in silico, PAT, PAT cautious, PAT probe (measure more where the members disagree), "
                         "PAT frozen twin")
    ap.add_argument("--probe-threshold", type=float, default=1.0,
                    help="PAT probe: extra measurements when the members' disagreement on a batch exceeds this "
                         "multiple of its calibration median")
    ap.add_argument("--probe-settings", type=int, default=4, help="PAT probe: extra settings per triggered batch")
    ap.add_argument("--probe-sigma", type=float, default=0.02, help="PAT probe: spread of the extra settings")
    ap.add_argument("--near-insilico", action="store_true",
                    help="also measure the twin's R² near the in-silico network's final parameters")
    ap.add_argument("--out", default=str(REPO / "runs" / "bench" / "pulse-pat"))
    ap.add_argument("--merge", nargs="+", default=None,
                    help="only summarise the results.json files of these output folders (runs split over processes)")
    ap.add_argument("--baseline", nargs="+", default=None,
                    help="with --merge: output folders of another configuration; per method, paired differences "
                         "(same device, seed, method) of the merged runs against these")
    args = ap.parse_args()
    if args.merge:
        blobs = [json.loads((Path(m) / "results.json").read_text()) for m in args.merge]
        devices = {k: v for b in blobs for k, v in b["devices"].items()}
        args.seeds = sorted({r["seed"] for b in blobs for r in b["runs"]})
        args.methods = list(dict.fromkeys(r["method"] for b in blobs for r in b["runs"]))
        runs = [r for b in blobs for r in b["runs"]]
        print(summarise(runs, devices, args))
        if args.baseline:
            base = [r for m in args.baseline for r in json.loads((Path(m) / "results.json").read_text())["runs"]]
            print("\n".join(["", f"Against {' '.join(args.baseline)}:"] + against(runs, base, args.methods)))
        return
    torch.set_num_threads(1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cfg = station_config(Path(args.station), args.n_controls, out, args.n_inputs, args.averages)
    lname = next(iter(cfg.layers))
    layer_cfg = cfg.layers[lname]
    averages = detector_averages(cfg, lname)
    integration_s = cfg.instruments[layer_cfg.outputs.instrument].integration_s
    datasets = {name: DATASETS[name](layer_cfg.n_inputs, seed=0) for name in args.data}
    if args.feature_order == "bright":
        datasets = {k: bright_order(d, layer_cfg.n_inputs, layer_cfg.n_controls, layer_cfg.input_layout)
                    for k, d in datasets.items()}
    runs, devices = [], {}
    t_all = time.time()
    for device in args.devices:
        with Station(cfg, chip_seed=device) as st:
            hw = st.layer()
            twin, devices[device] = calibrate_device(hw, cfg, lname, device, args)
            for data_name, data in datasets.items():
                for seed in args.seeds:
                    insilico = None
                    for method in args.methods:
                        t1 = time.time()
                        own = copy.deepcopy(twin)
                        own.refresh_online = method != "PAT frozen twin"
                        own.cautious = method == "PAT cautious"
                        # every online method records the members' disagreement per batch; "PAT probe" also measures
                        # more around the parameters when it exceeds --probe-threshold x the calibration median
                        own.refresher = functools.partial(
                            OnlineRefresh, hardware=hw, probe_threshold=(args.probe_threshold if method == "PAT probe"
                                                                         else float("inf")),
                            probe_settings=args.probe_settings, probe_sigma=args.probe_sigma)
                        model = build(own, hw, seed, data.n_classes, args.init, args.physical_layers, args.hidden)
                        online = method != "in silico"
                        if online and args.pat_from == "insilico":  # PAT continues from the in-silico network
                            state = {k: v for k, v in insilico.state_dict().items() if ".twin." not in k}
                            model.load_state_dict(state, strict=False)
                        q0 = hw.samples
                        tc = TrainConfig(mode="online" if online else "offline", optimizer="adam",
                                         epochs=args.pat_epochs if online else args.insilico_epochs,
                                         lr=args.pat_lr if online else args.lr, seed=seed,
                                         batch_size=args.pat_batch if online else 64)
                        history = train(model, data, tc)
                        # batch-norm statistics at the final parameters: on the twin for in silico (what it
                        # believes), on the device for PAT (--norm-inputs training inputs, counted as queries)
                        model.recalibrate_norms(data.x_train[:args.norm_inputs] if online else data.x_train,
                                                on_hardware=online)
                        if not online:
                            insilico = model
                        queries = hw.samples - q0
                        run = {"data": data_name, "device": device, "seed": seed, "method": method, "queries": queries,
                               "train_s": time.time() - t1, "averages": averages,
                               # modelled detector time of the training's spectra: exposures x integration
                               "detector_s": queries * averages * integration_s,
                               "twin_test": accuracy(model, data.x_test, data.y_test, on_hardware=False),
                               "twin_noisy_test": noisy_twin_accuracy(model, own, data, seed, averages),
                               "device_test": accuracy(model, data.x_test, data.y_test, on_hardware=True),
                               "train_loss": [e.loss for e in history.epochs]}
                        if online:
                            r = own.online
                            run["refreshes"] = 0 if r is None else r.refreshes
                            run["refresh_errors"] = [] if r is None else r.errors
                            d = np.array([np.nan] if r is None or not r.disagreement else r.disagreement)
                            run["disagreement"] = {"median": float(np.median(d)), "p90": float(np.percentile(d, 90)),
                                                   "max": float(d.max()), "batches": len(d),
                                                   "above_threshold": float(np.mean(d > args.probe_threshold))}
                            run["probes"] = 0 if r is None else r.probes
                            run["probe_queries"] = 0 if r is None else r.probe_queries
                        if online or args.near_insilico:
                            near = near_queries(hw, model, data.x_train, args.near, args.near_settings, seed + 17)
                            run["r2_near_final"] = prediction_error(own, near)["r2"]
                            run["r2_near_final_calibration_twin"] = prediction_error(twin, near)["r2"]
                        runs.append(run)
                        print(f"  {data_name} seed {seed} {method:>14}: device {100 * run['device_test']:.1f} %, "
                              f"twin {100 * run['twin_test']:.1f} % (with detector noise "
                              f"{100 * run['twin_noisy_test']:.1f} %), "
                              f"{queries} queries, {run['train_s']:.0f} s"
                              + (f", disagreement / calibration median {run['disagreement']['median']:.2f} (p90 "
                                 f"{run['disagreement']['p90']:.2f}), {run['probes']} probes" if online else "")
                              + (f", R² near final {run['r2_near_final']:.3f} (calibration twin "
                                 f"{run['r2_near_final_calibration_twin']:.3f})" if "r2_near_final" in run else ""),
                              flush=True)
                        (out / "results.json").write_text(json.dumps({"args": vars(args), "devices": devices,
                                                                      "runs": runs}, indent=1))
    table = summarise(runs, devices, args)
    (out / "table.md").write_text(table + "\n")
    print(table)
    print(f"total {time.time() - t_all:.0f} s")


def summarise(runs: list[dict], devices: dict, args) -> str:
    names = list(dict.fromkeys(r.get("data", "vowels") for r in runs))
    return "\n\n".join(f"**{name}**\n\n" + summarise_one([r for r in runs if r.get("data", "vowels") == name],
                                                             devices, args) for name in names)


def summarise_one(runs: list[dict], devices: dict, args) -> str:
    ms = lambda v: f"{100 * np.mean(v):.1f} ± {100 * np.std(v):.1f}"  # noqa: E731
    r2 = [d["held_out"]["r2"] for d in devices.values()]
    r2n = [d["held_out_near_start"]["r2"] for d in devices.values() if d.get("held_out_near_start")]
    near_start = f", near the start {np.mean(r2n):.3f} ± {np.std(r2n):.3f}" if r2n else ""
    lines = [f"devices {list(devices)}, seeds {args.seeds}; twin held-out R² global "
             f"{np.mean(r2):.3f} ± {np.std(r2):.3f}{near_start}, from "
             f"{np.mean([d['queries'] for d in devices.values()]):.0f} calibration queries per device", "",
             "| method | test accuracy on the device (%) | on the twin (%) | training queries | R² near final "
             "parameters (refreshed / calibration twin) | members' disagreement / calibration median (median, p90) "
             "| probes per run | wall s per run | detector s per run (modelled: spectra x averages x "
             "integration) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for method in args.methods:
        rs = [r for r in runs if r["method"] == method]
        if not rs:
            continue
        near = (f"{np.mean([r['r2_near_final'] for r in rs]):.3f} / "
                f"{np.mean([r['r2_near_final_calibration_twin'] for r in rs]):.3f}") if "r2_near_final" in rs[0] else "—"
        dis = (f"{np.mean([r['disagreement']['median'] for r in rs]):.2f}, "
               f"{np.mean([r['disagreement']['p90'] for r in rs]):.2f}") if "disagreement" in rs[0] else "—"
        probes = f"{np.mean([r['probes'] for r in rs]):.0f}" if "probes" in rs[0] else "—"
        lines.append(f"| {method} | {ms([r['device_test'] for r in rs])} | {ms([r['twin_test'] for r in rs])} | "
                     f"{np.mean([r['queries'] for r in rs]):.0f} | {near} | {dis} | {probes} | "
                     f"{np.mean([r['train_s'] for r in rs]):.0f} | "
                     f"{np.mean([r.get('detector_s', r['queries'] * 1e-3) for r in rs]):.0f} |")
    lines += [""] + paired(runs, args.methods)
    lines += ["", "Every run (test accuracy on the device, %; in brackets: on the twin):", "",
              "| device | seed | " + " | ".join(args.methods) + " |", "|---|---|" + "---|" * len(args.methods)]
    for device in sorted({r["device"] for r in runs}):
        for seed in sorted({r["seed"] for r in runs}):
            cells = []
            for method in args.methods:
                rs = [r for r in runs if (r["device"], r["seed"], r["method"]) == (device, seed, method)]
                cells.append(f"{100 * rs[0]['device_test']:.1f} ({100 * rs[0]['twin_test']:.1f})" if rs else "—")
            if any(c != "—" for c in cells):
                lines.append(f"| {device} | {seed} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def paired(runs: list[dict], methods: list[str]) -> list[str]:
    """Paired differences on the device (same device and seed): each online method against in silico, and the
    PAT variants against plain PAT."""
    acc = {(r["device"], r["seed"], r["method"]): r["device_test"] for r in runs}
    pairs = [(m, "in silico") for m in methods if m != "in silico"]
    pairs += [(m, "PAT") for m in methods if m not in ("in silico", "PAT")]
    lines = []
    for a, b in pairs:
        d = np.array([acc[(dv, sd, a)] - acc[(dv, sd, b)] for dv, sd, m in acc if m == a and (dv, sd, b) in acc])
        if len(d):
            lines.append(f"- {a} minus {b}, paired: {100 * d.mean():+.1f} ± {100 * d.std():.1f} points, "
                         f"{a} better in {int((d > 0).sum())} of {len(d)}")
    return lines


def against(runs: list[dict], base: list[dict], methods: list[str]) -> list[str]:
    """Per method, paired differences (same device, seed and method) of ``runs`` against ``base``: on the
    device and on the noiseless twin."""
    b = {(r["device"], r["seed"], r["method"]): r for r in base}
    lines = []
    for m in methods:
        p = [(r, b[(r["device"], r["seed"], m)]) for r in runs if r["method"] == m and (r["device"], r["seed"], m) in b]
        if not p:
            continue
        dev = 100 * np.array([[r["device_test"], o["device_test"]] for r, o in p])
        twin = 100 * np.array([[r["twin_test"], o["twin_test"]] for r, o in p])
        d = dev[:, 0] - dev[:, 1]
        lines.append(f"- {m}: {dev[:, 0].mean():.1f} ± {dev[:, 0].std():.1f} vs {dev[:, 1].mean():.1f} ± "
                     f"{dev[:, 1].std():.1f} % on the device, paired {d.mean():+.1f} ± {d.std():.1f} points, better "
                     f"in {int((d > 0).sum())} of {len(d)}; on the noiseless twin {twin[:, 0].mean():.1f} vs "
                     f"{twin[:, 1].mean():.1f} %")
    return lines


if __name__ == "__main__":
    main()
