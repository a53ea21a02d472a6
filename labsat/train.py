"""Training and evaluation loops: offline on the twin, online (physics-aware) on the hardware."""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from labsat import defaults
from labsat.data import Dataset, Encoder
from labsat.guards import check_finite_loss
from labsat.kinds.mesh import twin_for
from labsat.physical import HybridClassifier, MeshClassifier, PhysicalLayer
from labsat.sat import MESA, SAF, SAM, NoiseInjection, PartialSAM
from labsat.sat.step import Batch, step_batch

OPTIMIZERS = ("sgd", "adam", "sam", "asam", "saf", "mesa", "noise")


@dataclass
class TrainConfig:
    mode: str = "offline"  # offline (twin) | online (hardware forward, twin backward)
    optimizer: str = "adam"  # sgd | adam | sam | asam
    base: str = defaults.BASE_OPTIMIZER  # base optimizer of sam/asam
    rho: float = defaults.RHO
    lr: float | None = defaults.LR  # None: the layer's default (labsat.workflows.default_lr, by mesh size)
    epochs: int = defaults.EPOCHS
    batch_size: int = defaults.BATCH_SIZE
    seed: int = 0
    # sharpness-aware variants (labsat.sat); keyword-only additions, defaults keep the old behaviour
    sigma: float = 0.01  # noise: Gaussian perturbation std (control units for u)
    lam: float | None = None  # saf/mesa: trajectory-loss weight (None: 0.3 for saf, 0.8 for mesa)
    tau: float = 5.0  # saf/mesa: softmax temperature
    lag: int = 2  # saf: outputs recorded this many epochs earlier
    warmup: int = 1  # saf/mesa: epochs before the trajectory loss starts
    ema_decay: float = 0.95  # mesa: EMA decay per step
    # sam/asam/noise perturb only the physical 'controls' (the benchmarks' SAT) or 'all' parameters
    perturb: str = defaults.PERTURB
    # online sam/asam: the perturbed (w+e) pass runs on the twin (1 hardware forward per step); False is
    # the naive SAM with both passes on the hardware (2 forwards per step)
    twin_perturbed: bool = defaults.PERTURBED_PASS == "twin"

    def __post_init__(self):
        if self.mode not in ("offline", "online"):
            raise ValueError(f"mode must be 'offline' or 'online', got {self.mode!r}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}")
        if self.base not in ("sgd", "adam"):
            raise ValueError(f"base must be 'sgd' or 'adam', got {self.base!r}")
        if self.epochs < 0 or self.batch_size < 1 or (self.lr is not None and self.lr <= 0) or self.rho < 0:
            raise ValueError("epochs >= 0, batch_size >= 1, lr > 0 and rho >= 0 are required")
        if self.sigma < 0 or self.tau <= 0 or self.lag < 1 or self.warmup < 0 or not 0 <= self.ema_decay < 1:
            raise ValueError("sigma >= 0, tau > 0, lag >= 1, warmup >= 0 and 0 <= ema_decay < 1 are required")
        if self.lam is not None and self.lam < 0:
            raise ValueError(f"lam must be non-negative, got {self.lam}")
        if self.perturb not in ("all", "controls"):
            raise ValueError(f"perturb must be 'all' or 'controls', got {self.perturb!r}")

    @property
    def sharpness_aware(self) -> bool:
        return self.optimizer in ("sam", "asam")


@dataclass
class EpochRecord:
    epoch: int
    loss: float
    train_accuracy: float
    seconds: float
    hardware_batches: int = 0
    test_accuracy: float | None = None


@dataclass
class History:
    config: TrainConfig
    epochs: list[EpochRecord] = field(default_factory=list)
    step_hardware_batches: list[int] = field(default_factory=list)  # hardware forwards of each step

    def as_dict(self) -> dict:
        return {"config": asdict(self.config), "epochs": [asdict(e) for e in self.epochs],
                "step_hardware_batches": list(self.step_hardware_batches)}


def _base(name: str):
    return {"sgd": lambda params, lr: torch.optim.SGD(params, lr=lr, momentum=0.9),
            "adam": lambda params, lr: torch.optim.Adam(params, lr=lr)}[name]


def make_optimizer(params, cfg: TrainConfig, n_samples: int | None = None, n_outputs: int | None = None,
                   model: nn.Module | None = None) -> torch.optim.Optimizer:
    """The optimizer ``cfg`` names. SAF needs ``n_samples``/``n_outputs``; with ``model`` given and
    ``cfg.perturb == 'controls'``, SAM/noise leave the digital readout unperturbed."""
    if cfg.optimizer in ("sam", "asam", "saf", "mesa", "noise"):
        base_cls = torch.optim.SGD if cfg.base == "sgd" else torch.optim.Adam
        extra = {"momentum": 0.9} if cfg.base == "sgd" else {}
        if model is not None and cfg.perturb == "controls" and cfg.optimizer in ("sam", "asam", "noise"):
            key = "rho" if cfg.optimizer != "noise" else "sigma"
            controls = [p for n, p in model.named_parameters() if n.startswith("physical.")]
            digital = [p for n, p in model.named_parameters() if not n.startswith("physical.")]
            params = [{"params": controls}, {"params": digital, key: 0.0}]
        if cfg.optimizer == "saf":
            if n_samples is None or n_outputs is None:
                raise ValueError("saf needs n_samples and n_outputs")
            lam = 0.3 if cfg.lam is None else cfg.lam
            return SAF(params, base_cls, n_samples, n_outputs, lam=lam, tau=cfg.tau, lag=cfg.lag,
                       warmup=cfg.warmup, lr=cfg.lr, **extra)
        if cfg.optimizer == "mesa":
            lam = 0.8 if cfg.lam is None else cfg.lam
            return MESA(params, base_cls, decay=cfg.ema_decay, lam=lam, tau=cfg.tau, warmup=cfg.warmup,
                        lr=cfg.lr, **extra)
        if cfg.optimizer == "noise":
            return NoiseInjection(params, base_cls, sigma=cfg.sigma,
                                  generator=torch.Generator().manual_seed(cfg.seed + 7919), lr=cfg.lr, **extra)
        sam_cls = PartialSAM if (model is not None and cfg.perturb == "controls") else SAM
        sam = sam_cls(params, base_cls, rho=cfg.rho, adaptive=cfg.optimizer == "asam", lr=cfg.lr, **extra)
        sam.twin_perturbed = cfg.twin_perturbed  # online: the perturbed pass on the twin
        return sam
    return _base(cfg.optimizer)(params, cfg.lr)


def model_for(config, layer: str, n_classes: int, seed: int = 0, twin_state: dict | None = None,
              hardware=None) -> HybridClassifier:
    """The classifier over layer ``layer`` of a station config, whatever its kind."""
    from labsat.kinds import kind_of

    twin = kind_of(config, layer).make_twin(config, layer)
    if twin_state is not None:
        twin.load_fitted_state(twin_state)
    return HybridClassifier(PhysicalLayer(twin, hardware, seed=seed), n_classes, seed=seed)


def build_model(layer_cfg, heater_resistance_ohm: float, n_classes: int, seed: int = 0,
                twin_state: dict | None = None, hardware=None) -> MeshClassifier:
    twin = twin_for(layer_cfg, heater_resistance_ohm)
    if twin_state is not None:
        twin.load_fitted_state(twin_state)
    return MeshClassifier(PhysicalLayer(twin, hardware, seed=seed), n_classes, seed=seed)


class ClassLoss(nn.CrossEntropyLoss):
    """The training loss: cross-entropy of (B, C) logits and class indices, computed on the (1, C, B) view
    (classes along dim 1): the same mean, but torch's log-softmax across the batch instead of along a short
    last dim (C = 10) is ~2.5× less CPU (batch 6000, forward + backward: float64 1.6 → 0.6 ms, float32 1.8 →
    0.4 ms; twice per online SAM step, benchmarks/README.md "Round 5b")."""

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if input.dim() == 2 and not target.is_floating_point():
            return super().forward(input.T.unsqueeze(0), target.unsqueeze(0))
        return super().forward(input, target)


def train(model: MeshClassifier, data: Dataset, cfg: TrainConfig,
          on_step: Callable[[int, int], None] | None = None,
          on_epoch: Callable[[EpochRecord], None] | None = None,
          evaluate_each_epoch: bool = False, *, resume: dict | None = None,
          checkpoint: Callable[[EpochRecord, dict], None] | None = None) -> History:
    """Train ``model`` in place. ``on_step(step, steps_per_epoch)`` reports progress within an epoch.

    ``checkpoint(record, state)``, if given, is called after every epoch (before ``on_epoch``) with the
    whole training state (:func:`training_state`); ``resume=state`` continues after that state's epoch
    up to ``cfg.epochs`` in total, with the model, optimizer and data-order RNG as they were.
    """
    if cfg.lr is None:
        raise ValueError("TrainConfig.lr is None: the workflow resolves it for the layer "
                         "(labsat.workflows.default_lr)")
    physical = model.physical
    physical.use_hardware = cfg.mode == "online"
    loss_fn = ClassLoss()
    opt = make_optimizer(model.parameters(), cfg, n_samples=len(data.x_train), n_outputs=data.n_classes,
                         model=model)
    history = History(cfg)
    gen = torch.Generator().manual_seed(cfg.seed)
    start_epoch = 0 if resume is None else load_training_state(resume, model, opt, gen)
    n = len(data.x_train)
    steps = (n + cfg.batch_size - 1) // cfg.batch_size
    hw = physical.hardware
    for epoch in range(start_epoch + 1, cfg.epochs + 1):
        t0 = time.perf_counter()
        hw_before = hw.batches if hw is not None else 0
        model.train()
        if hasattr(opt, "set_epoch"):
            opt.set_epoch(epoch)
        order = torch.randperm(n, generator=gen)
        total_loss, correct = 0.0, 0
        for step in range(steps):
            idx = order[step * cfg.batch_size:(step + 1) * cfg.batch_size]
            xb, yb = data.x_train[idx], data.y_train[idx]

            hw_step = hw.batches if hw is not None else 0
            loss, out = step_batch(opt, Batch(model, xb, yb, idx, loss_fn))  # the optimizer's own passes
            check_finite_loss(loss, epoch, step + 1, steps)  # issue 14: a NaN loss stops training at once
            physical.project_()
            if hw is not None:
                history.step_hardware_batches.append(hw.batches - hw_step)
            total_loss += loss.item() * len(idx)
            correct += int((out.argmax(1) == yb).sum())
            if on_step:
                on_step(step + 1, steps)
        record = EpochRecord(epoch, total_loss / n, correct / n, time.perf_counter() - t0,
                             (hw.batches - hw_before) if hw is not None else 0)
        if evaluate_each_epoch:
            record.test_accuracy = accuracy(model, data.x_test, data.y_test, on_hardware=physical.use_hardware)
        history.epochs.append(record)
        if checkpoint:
            checkpoint(record, training_state(epoch, model, opt, gen))
        if on_epoch:
            on_epoch(record)
    return history


def _optimizer_chain(opt) -> list:
    """The optimizer and the base optimizers it wraps (SAM-style ``base_optimizer``), outermost first."""
    chain = [opt]
    while getattr(chain[-1], "base_optimizer", None) is not None:
        chain.append(chain[-1].base_optimizer)
    return chain


_NOT_EXTRA = ("state", "param_groups", "defaults", "base_optimizer")


def _optimizer_extras(o) -> dict:
    """State a wrapper keeps in plain attributes, outside ``state_dict`` (SAF's output memory, an epoch
    counter, a noise generator): public tensors, numbers and generators."""
    out = {}
    for k, v in vars(o).items():
        if k.startswith("_") or k in _NOT_EXTRA:
            continue
        if isinstance(v, torch.Tensor):
            out[k] = v.detach().clone()
        elif isinstance(v, torch.Generator):
            out[k] = ("generator", v.get_state())
        elif isinstance(v, (bool, int, float)):
            out[k] = v
    return out


def _load_optimizer_extras(o, extras: dict) -> None:
    for k, v in extras.items():
        current = getattr(o, k, None)
        if isinstance(v, tuple) and v[:1] == ("generator",) and isinstance(current, torch.Generator):
            current.set_state(v[1])
        elif isinstance(v, torch.Tensor) and isinstance(current, torch.Tensor) and current.shape == v.shape:
            current.copy_(v)
        elif not isinstance(v, tuple):
            setattr(o, k, v)


def training_state(epoch: int, model: nn.Module, opt: torch.optim.Optimizer, gen: torch.Generator) -> dict:
    """Everything needed to continue training after ``epoch`` exactly as if never stopped."""
    chain = _optimizer_chain(opt)
    return {"epoch": epoch, "model": model.state_dict(),
            "optimizers": [o.state_dict() for o in chain],
            "optimizer_extras": [_optimizer_extras(o) for o in chain],
            "data_rng": gen.get_state(), "torch_rng": torch.get_rng_state()}


def load_training_state(state: dict, model: nn.Module, opt: torch.optim.Optimizer, gen: torch.Generator) -> int:
    """Restore :func:`training_state` into ``model``, ``opt`` and ``gen``; return its epoch."""
    model.load_state_dict(state["model"])
    chain = _optimizer_chain(opt)
    if len(chain) != len(state["optimizers"]):
        raise ValueError("checkpoint: its optimizer does not match this run's optimizer")
    shared = [len(chain) > 1 and o.param_groups is o.base_optimizer.param_groups for o in chain[:-1]]
    for o, s in zip(chain, state["optimizers"]):
        o.load_state_dict(s)
    for o, share in zip(chain[:-1], shared):  # a wrapper steps its base's groups: keep them one object
        if share:
            o.param_groups = o.base_optimizer.param_groups
    for o, extras in zip(chain, state.get("optimizer_extras", [])):
        _load_optimizer_extras(o, extras)
    gen.set_state(state["data_rng"])
    torch.set_rng_state(state["torch_rng"])
    return int(state["epoch"])


@torch.no_grad()
def accuracy(model: MeshClassifier, x: torch.Tensor, y: torch.Tensor, on_hardware: bool,
             batch_size: int = 512) -> float:
    physical = model.physical
    previous = physical.use_hardware
    physical.use_hardware = on_hardware
    model.eval()
    try:
        correct = 0
        for start in range(0, len(x), batch_size):
            out = model(x[start:start + batch_size])
            correct += int((out.argmax(1) == y[start:start + batch_size]).sum())
        return correct / len(x)
    finally:
        physical.use_hardware = previous


# --- saved models ---
def save_model(path: str | Path, model: MeshClassifier, encoder: Encoder, meta: dict) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v for k, v in model.state_dict().items() if not k.startswith("physical.twin.")}
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save({"format": "labsat-model", "version": 1, "state_dict": state,
                "encoder": encoder.state(), "meta": meta}, tmp)
    tmp.replace(path)
    return path


def load_model_file(path: str | Path) -> dict:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such model file; train one with `labsat train`")
    blob = torch.load(path, map_location="cpu", weights_only=False)
    if not isinstance(blob, dict) or blob.get("format") != "labsat-model":
        raise ValueError(f"{path}: not a labsat model file")
    return blob
