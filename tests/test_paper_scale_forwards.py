"""Hardware forwards per training step, every training mode: the hardware's own counter against the
counts benchmarks/README.md documents (benchmarks/paper_scale_forwards.py, issue 12 item 4)."""
from __future__ import annotations

import importlib.util
from pathlib import Path

from labsat.config import parse_config
from labsat.station import Station

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "paper_scale_forwards.py"


def _bench():
    spec = importlib.util.spec_from_file_location("paper_scale_forwards", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_forwards_per_step_match_the_documented_counts(tmp_path):
    bench = _bench()
    with Station(parse_config(bench.station_config(tmp_path))) as st:
        for (mode, optimizer, perturbed), documented in bench.DOCUMENTED.items():
            per_step = bench.count(st, mode, optimizer, perturbed, steps=1, batch=4)
            assert len(per_step) == 2, (mode, optimizer, perturbed)  # two epochs of one step
            assert per_step == [documented] * 2, (mode, optimizer, perturbed, per_step)


def test_the_readme_table_states_the_documented_counts():
    """benchmarks/README.md's table is the one DOCUMENTED holds (a changed count changes both)."""
    bench = _bench()
    readme = (BENCH.parent / "README.md").read_text()
    for (mode, optimizer, perturbed), documented in bench.DOCUMENTED.items():
        assert f"| {mode} | {optimizer} | {perturbed} | {documented} |" in readme, (mode, optimizer, perturbed)
