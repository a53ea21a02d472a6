"""Random edits of a parsed station file (nested dicts and lists) for the hypothesis tests of config parsing
(tests/test_faults_parsers.py) and of every front door's refusal (tests/test_inputs_station.py)."""
from __future__ import annotations

import copy

from hypothesis import strategies as st


def paths(node, prefix=()):
    """Every path (a tuple of keys and indices) into the nested dict/list, the root's () first."""
    yield prefix
    if isinstance(node, dict):
        for k, v in node.items():
            yield from paths(v, prefix + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from paths(v, prefix + (i,))


def at(node, path):
    """The value at ``path`` (keys and indices) in the nested dict/list."""
    for key in path:
        node = node[key]
    return node


def mutate(data: dict, draw, values, keys, max_edits: int, ops=("replace", "delete", "add")) -> dict:
    """1..``max_edits`` random edits of a copy of ``data``: replace a value with one drawn from ``values``
    (any type, any structure), delete a key or item, or add one (a key drawn from ``keys``); ``ops`` is
    sampled uniformly, so repeating an op weights it."""
    data = copy.deepcopy(data)
    for _ in range(draw(st.integers(min_value=1, max_value=max_edits))):
        found = [p for p in paths(data) if p]
        if not found:
            break
        path = draw(st.sampled_from(found))
        parent = at(data, path[:-1])
        op = draw(st.sampled_from(list(ops)))
        if op == "replace":
            parent[path[-1]] = draw(values)
        elif op == "delete":
            del parent[path[-1]]
        else:
            target = parent[path[-1]]
            if isinstance(target, dict):
                target[draw(keys)] = draw(values)
            elif isinstance(target, list):
                target.append(draw(values))
            else:
                parent[path[-1]] = draw(values)
    return data
