"""Every default a front door shows, written once (CLI options, GUI fields, demo, workflows).

A leaf module: it imports nothing from labsat, so the training core, the workflows and the front doors
all read it without an import cycle.
"""
from __future__ import annotations

import os

# --- sharpness-aware training (labsat.train.TrainConfig, `labsat train`, the GUI training panel) ---
RHO = 0.05  # SAM radius in control units (u in [0, 1]); Foret et al.'s default, the benchmarks' choice
LR = 0.03
EPOCHS = 20
BATCH_SIZE = 64
OPTIMIZER = "sam"  # what `labsat train` and the GUI start with
BASE_OPTIMIZER = "adam"
# `--optimizer sam` is the SAT the benchmarks recommend: the radius covers the physical controls only
# (the digital readout is not perturbed) ...
PERTURB = "controls"
# ... and online it does one hardware forward per step: the clean pass on the hardware, the perturbed
# (w + e) pass on the twin. The naive two-forward SAM is `perturbed_pass="hardware"`.
PERTURBED_PASS = "twin"

# --- online training: the twin's pass behind a hardware forward (labsat.physical.PhysicalLayer) ---
# it only supplies the gradient; a twin whose forward takes ``dtype=`` computes it in this precision
# (a torch dtype name; None: the twin's own, float64). Online SAM's passes whose gradient only gives a
# direction (the clean pass: the ascent e; the perturbed pass on the twin) run their readout and loss in it too
# (labsat.sat.step.Batch.ascent / on_twin; benchmarks/README.md "Round 5b", "Round 5c")
BACKWARD_DTYPE: str | None = "float32"

# --- calibration (`labsat calibrate`, the GUI calibration panel, the demo) ---
CAL_SETTINGS = 64  # random heater settings measured
CAL_INPUTS = 32  # inputs per setting
CAL_HOLDOUT = 0.2  # fraction of settings held out to test the fit



# --- the demo ---
DEMO_CHIP_A = 1
DEMO_CHIP_B = 2
DEMO_OFFLINE_EPOCHS = 30
DEMO_ONLINE_EPOCHS = 10
EVAL_OTHER_CHIP_SEED = 2

# --- torch threads ---
# Intra-op threads only pay off on large tensors: for the CLI/demo sizes (a few thousand elements per op)
# two threads cost 1.6x the CPU of one for the same run (issue 12). Above this many elements per op
# (batch x modes^2 of the twin) torch keeps its own choice.
SMALL_TENSOR_ELEMENTS = 1 << 18


def torch_threads(elements_per_op: int, requested: int | None = None) -> int:
    """The intra-op thread count for ops of ``elements_per_op`` elements: ``requested`` when the user
    said, 1 for small tensors, else torch's own default (the cores available)."""
    if requested is not None:
        if requested < 1:
            raise ValueError(f"--threads must be at least 1, got {requested}")
        return requested
    if elements_per_op <= SMALL_TENSOR_ELEMENTS:
        return 1
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1))

# Larger meshes need a smaller rate: every step moves N(N-1) phases and a path crosses ~N of them. Tuned
# (benchmarks/paper_scale_lr.py, tuning chips 1-2, offline SAT on the chip's twin, digits, 20 epochs): best
# 0.01 / 0.01 / 0.003 / 0.001 at N = 8 / 16 / 32 / 64; LR (0.03) stays the rate up to LR_MODES inputs.
LR_MODES = 8
LR_EXPONENT = 1.6


def lr_for(modes: int | None) -> float:
    """The default learning rate for a layer with ``modes`` inputs: :data:`LR` up to :data:`LR_MODES`,
    then ``LR * (LR_MODES / modes) ** LR_EXPONENT`` (16: 0.0099, 32: 0.0033, 64: 0.0011). None: LR."""
    if modes is None or modes <= LR_MODES:
        return LR
    return LR * (LR_MODES / modes) ** LR_EXPONENT
