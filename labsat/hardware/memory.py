"""Large buffers reused, not faulted in afresh: glibc's malloc told to keep freed memory for the next step.

A hardware forward at paper scale (64 modes, batch 6000) handles a dozen arrays of 1.5–3 MB: the inputs,
the modulator voltages and their float32 block, the DAQ's block and its float64 values, the twin's
6000 × 128 float32 products and their gradients. glibc serves every allocation above its mmap threshold
(128 KiB at start, raised only up to the largest block freed so far) with a fresh ``mmap`` and returns it
with ``munmap`` on free, or trims the heap top once more than twice that is free, so each step touched
~13 MB of new pages: ~3300 page faults and 8–14 ms of kernel time per forward, more than all the
driver's Python together (benchmarks/README.md "Round 5"). With the threshold at its ceiling and trimming
only above :data:`TRIM_THRESHOLD_BYTES`, the heap keeps those pages and the next step reuses them.

:func:`reuse_freed_memory` sets this once per process (the bench adapter calls it when a station builds
a layer, :class:`labsat.hardware.heater_bank.HeaterBankHardware`); a no-op where the C library is not
glibc. The cost is memory: up to :data:`TRIM_THRESHOLD_BYTES` of freed heap may stay mapped.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import sys

M_TRIM_THRESHOLD = -1  # glibc <malloc.h>
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 32 << 20   # glibc's ceiling on 64-bit (HEAP_MAX_SIZE / 2): blocks below it come from the heap
TRIM_THRESHOLD_BYTES = 256 << 20  # free heap kept for reuse before it is returned to the system

ENABLED = True  # False: leave glibc's own (dynamic) thresholds, as before round 5 (the benchmark's A/B)
_done: bool | None = None


def reuse_freed_memory() -> bool:
    """Tune glibc's malloc as the module docstring says (once per process); True when it took effect."""
    global _done
    if not ENABLED:
        return False
    if _done is None:
        _done = malloc_thresholds(MMAP_THRESHOLD_BYTES, TRIM_THRESHOLD_BYTES)
    return _done


def malloc_thresholds(mmap_bytes: int, trim_bytes: int) -> bool:
    """Set glibc's ``M_MMAP_THRESHOLD`` and ``M_TRIM_THRESHOLD`` (``mallopt``); False where there is no
    glibc. (Setting either turns glibc's dynamic thresholds off for good.)"""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and others: no mallopt
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, int(mmap_bytes))) and bool(mallopt(M_TRIM_THRESHOLD, int(trim_bytes)))
