"""Architecture rules checked on the source: edge aggregations only in kernels/, layers one way.

What ``test_edge_aggregations_only_in_kernels`` forbids, in lpm/, calibration/ and scenarios/ (kernels/
is where they belong; lpm/graph/core.py owns and builds the CSR arrays):

* any use of ``expand_segments`` (a CSR walk): call ``lpm.kernels.expand_segments`` ... through the
  ``kernels`` module object, e.g. ``kernels.expand_segments``, is the allowed spelling;
* indexing with or into the graph's CSR arrays: an expression ``<anything>.rowptr``, ``.col`` or
  ``.row``, the result of ``<anything>.followers()``, or a local name assigned from one of them
  (``row, col = graph.row.long(), graph.col.long()``), used in a subscript (``x[:, col]``,
  ``rowptr[i]``) or as an argument of an indexing or scatter op (``index_add_``,
  ``scatter_reduce_``, ``index_select``, ``gather``, ``bincount``, ...);
* the same with ``<anything>.edge_index`` used as an index (``x[graph.edge_index[0]]``); the
  ``(2, E)`` edge list itself is the export format, so filtering or converting it is allowed.

So ``index_add_`` / ``scatter_reduce_`` over other indices (cascade-tree members, clusters, threads)
stay allowed, and so does reading the arrays without indexing (hashing a graph, exporting its edge
list). Exempt files are listed below with the reason.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCANNED = ("lpm", "calibration", "scenarios")
EDGE_ARRAYS = {"rowptr", "col", "row"}
EXPORT = "edge_index"  # the (2, E) edge list: an index only inside a subscript or an op's arguments
INDEX_OPS = {"index_add_", "index_add", "index_select", "index_put_", "index_put", "index_copy_", "index_fill_",
             "scatter_reduce_", "scatter_reduce", "scatter_add_", "scatter_add", "scatter_", "scatter", "gather",
             "take", "take_along_dim", "bincount", "segment_reduce", "repeat_interleave"}
EXEMPT = {
    "lpm/graph/core.py": "owns the CSR arrays: builds them, their degrees and the follower order",
    "lpm/testing.py": "dense_adjacency, the independent dense oracle the kernels are tested against",
    "lpm/distributed/layout.py": "builds each rank's CSR rows and halo maps from the whole graph's CSR (construction)",
    "lpm/distributed/partition.py": "builds the undirected adjacency partitioners take, counts cut edges",
}


def _is_edge_source(node: ast.AST, export: bool) -> bool:
    if isinstance(node, ast.Attribute) and (node.attr in EDGE_ARRAYS or (export and node.attr == EXPORT)):
        return True
    return isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "followers"


def _mentions(node: ast.AST, names: set[str], export: bool = True) -> bool:
    return any(_is_edge_source(n, export) or (isinstance(n, ast.Name) and n.id in names) for n in ast.walk(node))


# methods that keep an edge array an edge array (a copy, a cast, a view), followed through aliases
_KEEPS_EDGES = {"long", "int", "cpu", "cuda", "to", "contiguous", "clone", "detach", "view", "reshape", "flatten",
                "expand", "expand_as", "unsqueeze"}


def _is_edge_array(node: ast.AST, names: set[str]) -> bool:
    """``node`` is an edge array, up to casts, copies, views and slicing: ``graph.col.long()``,
    ``row[None, :, None].expand_as(v)``, ``graph.followers()``, or a name bound to one."""
    while True:
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in _KEEPS_EDGES:
            node = node.func.value
        elif isinstance(node, ast.Subscript):
            node = node.value
        else:
            break
    return _is_edge_source(node, export=False) or (isinstance(node, ast.Name) and node.id in names)


def _edge_names(scope: ast.AST) -> set[str]:
    """Names bound to the graph's edge arrays (``row, col = graph.row.long(), graph.col.long()``)."""
    names: set[str] = set()
    while True:
        before = len(names)
        for node in ast.walk(scope):
            if not isinstance(node, ast.Assign):
                continue
            for target in node.targets:
                if isinstance(target, ast.Tuple) and isinstance(node.value, ast.Tuple):
                    pairs = zip(target.elts, node.value.elts)
                else:
                    pairs = [(element, node.value) for element in (target.elts if isinstance(target, ast.Tuple) else [target])]
                names.update(t.id for t, value in pairs if isinstance(t, ast.Name) and _is_edge_array(value, names))
        if len(names) == before:
            return names


def edge_aggregations(source: str) -> list[tuple[int, str]]:
    """``(line, why)`` of every aggregation over graph edges (or CSR walk) in ``source``."""
    tree = ast.parse(source)
    found = []
    for node in ast.walk(tree):
        if (isinstance(node, ast.Name) and node.id == "expand_segments") or \
                (isinstance(node, ast.alias) and node.name.split(".")[-1] == "expand_segments"):
            found.append((getattr(node, "lineno", 0), "a CSR walk (expand_segments) outside kernels"))
        elif isinstance(node, ast.Attribute) and node.attr == "expand_segments" and \
                not (isinstance(node.value, ast.Name) and node.value.id == "kernels"):
            found.append((node.lineno, "a CSR walk (expand_segments) outside kernels"))
    scopes = [tree] + [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))]
    for scope in scopes:
        names = _edge_names(scope) if not isinstance(scope, ast.Module) else set()
        for node in ast.walk(scope):
            if isinstance(node, ast.Subscript) and (_mentions(node.slice, names) or _mentions(node.value, names, export=False)):
                found.append((node.lineno, "indexing by graph edge arrays"))
            elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in INDEX_OPS \
                    and any(_mentions(arg, names) for arg in [*node.args, *(k.value for k in node.keywords)]):
                found.append((node.lineno, f"{node.func.attr} over graph edge arrays"))
    return sorted(set(found))


def _sources():
    for folder in SCANNED:
        for path in sorted((ROOT / folder).rglob("*.py")):
            yield path.relative_to(ROOT).as_posix(), path


def test_edge_aggregations_only_in_kernels():
    offences = []
    for rel, path in _sources():
        if rel in EXEMPT:
            continue
        offences += [f"{rel}:{line}: {why}" for line, why in edge_aggregations(path.read_text())]
    assert not offences, "aggregate over edges through lpm.kernels ops instead:\n" + "\n".join(offences)


def test_exemptions_are_still_needed():
    """An exempt file that no longer aggregates over edges comes off the list."""
    for rel, reason in EXEMPT.items():
        assert edge_aggregations((ROOT / rel).read_text()), f"{rel} is exempt ({reason}) but needs no exemption"


@pytest.mark.parametrize("code", [
    "def f(graph, x):\n    row, col = graph.row.long(), graph.col.long()\n    return x[:, col]",
    "def f(graph, x, w):\n    col = graph.col.long()\n    w.index_add_(1, col, x)",
    "def f(graph, x, out, v):\n    row = graph.row\n    idx = row[None, :, None].expand_as(v)\n    out.scatter_reduce_(1, idx, v, 'amin')",
    "def f(graph, x):\n    return x.index_select(1, graph.col)",
    "def f(graph, x):\n    starts, edges = graph.followers()\n    return x[edges]",
    "def f(graph, i):\n    rowptr = graph.rowptr.long()\n    return rowptr[i + 1] - rowptr[i]",
    "from lpm.kernels.reference import expand_segments",
    "from lpm.kernels import reference\ndef f(s, n):\n    return reference.expand_segments(s, n)",
    "import torch\ndef f(graph, n):\n    return torch.bincount(graph.col.long(), minlength=n)",
    "def f(graph, x):\n    return x[:, graph.edge_index[0]]",
])
def test_guard_catches_edge_aggregations(code):
    assert edge_aggregations(code)


@pytest.mark.parametrize("code", [
    "def f(members, sizes, sel):\n    sizes.index_add_(0, members.parent_pos.index_select(0, sel), sizes[sel])",
    "def f(graph):\n    return hash_tensors([graph.rowptr.long(), graph.col.long()])",
    "def f(graph):\n    return graph.edge_index.cpu().T.tolist()",
    "def f(graph):\n    edges = graph.edge_index.t().numpy()\n    return edges[edges[:, 0] < edges[:, 1]]",
    "from lpm import kernels\ndef f(s, n):\n    return kernels.expand_segments(s, n)",
    "def f(graph, x):\n    return kernels.gather_followees(graph, x)[:, 3]",
])
def test_guard_allows_other_indexing(code):
    assert not edge_aggregations(code)


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


@pytest.mark.parametrize("folder, forbidden", [
    ("lpm/dynamics", ("lpm.interventions", "lpm.model", "lpm.simulate")),
    ("kernels", ("lpm.dynamics", "lpm.interventions", "lpm.effects", "lpm.model", "lpm.state")),
    ("lpm/effects.py", ("lpm.dynamics", "lpm.interventions", "lpm.kernels", "lpm.graph")),
    ("lpm/params.py", ("lpm.dynamics", "lpm.interventions", "lpm.kernels", "lpm.graph")),
])
def test_layers_import_one_way(folder, forbidden):
    """state/rng/relax -> graph -> kernels -> dynamics/interventions: nothing imports upward."""
    target = ROOT / folder
    for path in [target] if target.is_file() else sorted(target.rglob("*.py")):
        bad = sorted(name for name in _imports(path) if name.startswith(forbidden))
        assert not bad, f"{path.relative_to(ROOT)} imports {bad}"
