"""Imports run one way: no module cycles in labsat/, drivers/ and calibration/, and the drivers never
reach the training core or torch. Built from the source with ``ast`` (every import statement, at module
level or inside a function, counts: a lazy import is still a dependency)."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = {"labsat": ROOT / "labsat", "labsat.drivers": ROOT / "drivers", "labsat.calibration": ROOT / "calibration"}


def modules() -> dict[str, Path]:
    found = {}
    for package, folder in FOLDERS.items():
        for path in folder.rglob("*.py"):
            rel = path.relative_to(folder).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            name = ".".join([package, *parts])
            if package == "labsat" and parts and parts[0] in ("drivers", "calibration"):
                continue  # not there; listed under their own folders
            found[name] = path
    return found


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    is_pkg = path.name == "__init__.py"
    here = name if is_pkg else name.rsplit(".", 1)[0]
    out = set()
    for node in ast.walk(tree):
        targets = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here.split(".")
                base = base[:len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            subs = [f"{mod}.{a.name}" for a in node.names]
            targets = [t for t in subs if t in known]  # `from pkg import module` needs only that module
            if len(targets) < len(subs):
                targets.append(mod)
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "import_module":
            # importlib.import_module(name): a constant argument, or the module names listed in a tuple or
            # list in this file (a loop over feature modules)
            listed = [e for c in ast.walk(tree) if isinstance(c, (ast.Tuple, ast.List)) for e in c.elts]
            args = node.args[:1]
            targets = [c.value for c in [*args, *listed] if isinstance(c, ast.Constant) and c.value in known]
        for t in targets:
            while t and t not in known:  # labsat.x.y.Name -> the module labsat.x.y
                t = t.rpartition(".")[0]
            if t and t != name:
                out.add(t)
    return out


def graph() -> dict[str, set[str]]:
    mods = modules()
    known = set(mods)
    return {name: imports_of(name, path, known) for name, path in mods.items()}


def cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v, counter=[0]):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in g.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    import sys

    sys.setrecursionlimit(10000)
    for v in sorted(g):
        if v not in index:
            visit(v)
    return out


def ancestors(name: str, known) -> list[str]:
    """Importing ``a.b.c`` runs ``a/__init__`` and ``a.b/__init__`` first."""
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts)) if ".".join(parts[:i]) in known]


def reachable(g, start: str) -> set[str]:
    """What importing ``start`` runs: its imports, theirs, and every package ``__init__`` on the way."""
    seen, todo = set(), [start, *ancestors(start, g)]
    while todo:
        v = todo.pop()
        for w in [*g.get(v, ()), *ancestors(v, g)]:
            if w not in seen:
                seen.add(w)
                todo.append(w)
    return seen


def test_the_graph_finds_imports():
    g = graph()
    assert "labsat.station" in g["labsat.cli"] or "labsat.station" in reachable(g, "labsat.cli")
    assert "labsat.drivers.base" in g["labsat.drivers.heater_dac"]


def test_no_module_cycles():
    found = cycles(graph())
    assert found == [], "import cycles:\n" + "\n".join(" <-> ".join(c) for c in found)


def test_drivers_never_reach_the_training_core_or_torch():
    g = graph()
    neutral = {"labsat", "labsat.config", "labsat.geometry"}  # the station file's schema, shared geometry
    core = {m for m in g if not m.startswith("labsat.drivers") and m not in neutral}
    for name in (m for m in g if m.startswith("labsat.drivers")):
        reached = reachable(g, name) & core
        assert not reached, f"{name} reaches {sorted(reached)}"
    torch_users = [m for m in g if m.startswith("labsat.drivers")
                   and any(isinstance(n, (ast.Import, ast.ImportFrom)) and "torch" in ast.dump(n)
                           for n in ast.walk(ast.parse(modules()[m].read_text())))]
    assert torch_users == []


@pytest.mark.parametrize("module", ["labsat.drivers.heater_dac", "labsat.drivers.sim.servers"])
def test_drivers_import_without_torch(module):
    import subprocess
    import sys

    code = (f"import sys; sys.modules['torch'] = None; import {module}; "
            "print('labsat.train' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "False"


# --- folders: one way, bottom to top ---
# Each group may import only from the groups before it (and within itself, one way: no module cycles).
LAYERS = [
    ("foundation", {"labsat", "labsat.geometry", "labsat.defaults", "labsat.data", "labsat.vowels"}),
    ("drivers and the virtual lab", {"labsat.drivers"}),
    ("core: twins, bench adapters, optimizers, the physical layer",
     {"labsat.twins", "labsat.hardware", "labsat.sat", "labsat.physical", "labsat.multilayer"}),
    ("the station file's schema", {"labsat.config"}),
    ("calibration: measure, fit, store, check", {"labsat.calibration"}),
    ("network kinds", {"labsat.kinds"}),
    ("station, training, run database, sweeps",
     {"labsat.station", "labsat.train", "labsat.guards", "labsat.runs", "labsat.sweeps", "labsat.qcodes",
      "labsat.lab_process"}),
    ("workflows", {"labsat.workflows"}),
    ("front doors", {"labsat.cli", "labsat.cli_common", "labsat.cli_format", "labsat.cli_calibration",
                     "labsat.cli_runs", "labsat.logs", "labsat.gui", "labsat.experiments", "labsat.experiment_units",
                     "labsat.freespace_experiment", "labsat.paper"}),
]
# scripts run with `python -m` that live beside what they report on: front doors wherever they are
SCRIPTS = {"labsat.calibration.report"}


def folder_of(module: str) -> str:
    """``labsat.kinds.mesh`` -> ``labsat.kinds``; a top-level module is its own folder."""
    return ".".join(module.split(".")[:2])


def layer_of(module: str) -> int:
    if module in SCRIPTS:
        return len(LAYERS) - 1
    folder = folder_of(module)
    for rank, (_, members) in enumerate(LAYERS):
        if folder in members:
            return rank
    raise AssertionError(f"{folder}: not placed in tests/test_import_graph.py LAYERS; put the new folder in its "
                         "layer (what it imports must sit below it)")


def layering_violations(g: dict[str, set[str]]) -> list[str]:
    out = []
    for a, targets in sorted(g.items()):
        for b in sorted(targets):
            if layer_of(b) > layer_of(a):
                out.append(f"{a} ({LAYERS[layer_of(a)][0]}) imports {b} ({LAYERS[layer_of(b)][0]})")
    return out


def test_folders_import_one_way():
    """drivers < core (twins, hardware, sat) < config < calibration < kinds < station/training < workflows <
    front doors: nothing imports from a layer above its own."""
    found = layering_violations(graph())
    assert found == [], "imports against the layering:\n" + "\n".join(found)


def test_the_layering_check_fails_on_a_violation():
    g = graph()
    g["labsat.calibration.fit"] = g["labsat.calibration.fit"] | {"labsat.kinds.registry"}  # calibration -> kinds
    g["labsat.drivers.base"] = g["labsat.drivers.base"] | {"labsat.train"}
    found = layering_violations(g)
    assert any(v.startswith("labsat.calibration.fit (calibration") and "labsat.kinds.registry" in v for v in found)
    assert any(v.startswith("labsat.drivers.base") and "labsat.train" in v for v in found)
    with pytest.raises(AssertionError, match="not placed"):
        layer_of("labsat.brand_new_folder.x")
