"""The package's shape: imports go one way (no cycles) and no module grows past 500 lines.

The import graph is read from the source with :mod:`ast`, never by importing, so a cycle that
Python happens to tolerate (a name looked up late, an import moved into a function) still shows.

What counts as an edge ``A -> B``:
    * an import executed when ``A`` is imported: at module level, inside top-level ``if``/``try``
      blocks and class bodies; ``if TYPE_CHECKING:`` blocks are skipped (they never run);
    * the target is the module named, or for ``from P import x`` the submodule ``P.x`` when it is
      one; the parent packages that Python initialises on the way are not edges (every package's
      ``__init__`` re-exporting its submodules would otherwise be a cycle).

A module-level cycle is an error. An import inside a function that would close a cycle (``B``
reaches ``A`` through module-level imports) is a cycle dodged rather than removed, so it fails
too; imports deferred for other reasons (optional or heavy dependencies) are fine.

Beyond cycles, modules sit in :data:`LAYERS` and import only from their own layer or lower ones,
deferred imports included (a deferred import upward is still a dependency upward).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: Source folders and the package names they install as (pyproject's package-dir).
SOURCES = {"lpm": "lpm", "kernels": "lpm.kernels", "calibration": "lpm.calibration", "scenarios": "lpm.scenarios"}
MAX_LINES = 500

# Modules being split by topic in other branches right now (issue 13); remove each entry when its
# split lands, so the limit then holds for it too.
SIZE_ALLOWLIST: set[str] = set()

# Cycles that involve only modules being reworked in another branch (issue 13: effect types moving
# below both dynamics and interventions). Each entry is the sorted set of modules of one strongly
# connected component; remove it when that branch lands.
CYCLE_ALLOWLIST: list[frozenset[str]] = []

#: Layers, lowest first: a module imports only from its own layer and the ones before it. A module is
#: placed by its longest matching prefix; every module must be placed, so a new one's layer is a
#: decision made when it is added.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    # embed: text embeddings with no lpm dependency, used by cascade items and archetypes alike
    # params: constrained learnable parameters; effects: what interventions hand the dynamics
    # lpm.distributed spans layers: draws, partitions and layouts, the halo exchange, the partitioned run
    ("base", ("lpm.errors", "lpm.resources", "lpm.io_atomic", "lpm.state", "lpm.rng", "lpm.relax", "lpm.embed",
              "lpm.params", "lpm.effects", "lpm.executor", "lpm.distributed.rng", "lpm.distributed.capacity")),
    ("graph", ("lpm.graph", "lpm.io", "lpm.generators", "lpm.distributed.partition", "lpm.distributed.layout")),
    ("kernels", ("lpm.kernels", "lpm.distributed.halo")),
    # the Dynamics protocol and its StepContext: what every dynamics module implements
    ("interface", ("lpm.engine",)),
    ("dynamics", ("lpm.dynamics", "lpm.interventions", "lpm.levers")),
    ("engine", ("lpm.model", "lpm.simulate", "lpm.observables", "lpm.distributed")),
    ("analysis", ("lpm.metrics", "lpm.targets", "lpm.targets_series", "lpm.counterfactual", "lpm.variance",
                  "lpm.uncertainty", "lpm.data", "lpm.plots", "lpm.plots_optimize", "lpm.archetypes", "lpm.testing")),
    # the package root re-exports the public API of every layer, so it sits on top
    ("applications", ("lpm", "lpm.__main__", "lpm.calibration", "lpm.scenarios", "lpm.scenario", "lpm.sweep", "lpm.report", "lpm.bench", "lpm.cli",
                      "lpm.cli_calibrate", "lpm.optimize", "lpm.cli_optimize", "lpm.cli_plan", "lpm.config", "lpm.provenance",
                      "lpm.tables")),
]


def _modules() -> dict[str, Path]:
    found = {}
    for folder, package in SOURCES.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = list(path.relative_to(ROOT / folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join([package, *parts])] = path
    # The mapped source folders sit inside lpm/ only once installed; lpm/kernels etc. do not exist.
    return found


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(name: str, path: Path, modules: dict[str, Path]) -> tuple[set[str], set[str]]:
    """``(module-level, deferred)`` lpm modules imported by module ``name``."""
    is_package = path.name == "__init__.py"
    tree = ast.parse(path.read_text(), filename=str(path))
    eager: set[str] = set()
    deferred: set[str] = set()

    def resolve(node: ast.ImportFrom) -> str:
        if not node.level:
            return node.module or ""
        base = name.split(".")
        base = base if is_package else base[:-1]
        base = base[: len(base) - (node.level - 1)]
        return ".".join(base + ([node.module] if node.module else []))

    def targets(node: ast.AST) -> set[str]:
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            parent = resolve(node)
            names = [f"{parent}.{alias.name}" if f"{parent}.{alias.name}" in modules else parent
                     for alias in node.names]
        out = set()
        for target in names:
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target and target != name:
                out.add(target)
        return out

    def visit(node: ast.AST, in_function: bool) -> None:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            (deferred if in_function else eager).update(targets(node))
            return
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                visit(child, in_function)
            return
        function = isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
        for child in ast.iter_child_nodes(node):
            visit(child, in_function or function)

    visit(tree, False)
    return eager, deferred - eager


def import_graph() -> tuple[dict[str, set[str]], dict[str, set[str]], dict[str, Path]]:
    modules = _modules()
    eager, deferred = {}, {}
    for name, path in modules.items():
        eager[name], deferred[name] = _imports(name, path, modules)
    return eager, deferred, modules


def strongly_connected(graph: dict[str, set[str]]) -> list[frozenset[str]]:
    """Tarjan's strongly connected components with more than one module (iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = set()
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.add(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        components.append(frozenset(component))
    return components


def _reaches(graph: dict[str, set[str]], start: str, goal: str) -> bool:
    seen, todo = {start}, [start]
    while todo:
        node = todo.pop()
        if node == goal:
            return True
        for child in graph[node] - seen:
            seen.add(child)
            todo.append(child)
    return False


def test_no_import_cycle():
    eager, _, _ = import_graph()
    cycles = [c for c in strongly_connected(eager) if c not in CYCLE_ALLOWLIST]
    assert not cycles, "import cycles (module-level imports):\n" + "\n".join(
        "  " + " <-> ".join(sorted(c)) for c in cycles)


def test_no_cycle_dodged_by_a_deferred_import():
    eager, deferred, _ = import_graph()
    allowed = set().union(*CYCLE_ALLOWLIST) if CYCLE_ALLOWLIST else set()
    dodged = sorted(f"{a} -> {b}" for a, targets in deferred.items() for b in targets
                    if _reaches(eager, b, a) and not {a, b} <= allowed)
    assert not dodged, ("imports inside functions that would close an import cycle "
                        "(invert the dependency instead):\n  " + "\n  ".join(dodged))


def layer_of(module: str) -> int | None:
    # "lpm" names the package root only: as a prefix it would place every new module by default
    matches = [(len(prefix), i) for i, (_, prefixes) in enumerate(LAYERS) for prefix in prefixes
               if module == prefix or (prefix != "lpm" and module.startswith(prefix + "."))]
    return max(matches)[1] if matches else None


def test_every_module_has_a_layer():
    _, _, modules = import_graph()
    missing = sorted(m for m in modules if layer_of(m) is None)
    assert not missing, f"modules missing from LAYERS (place each in its layer): {missing}"


def test_layers_import_one_way():
    eager, deferred, _ = import_graph()
    upward = sorted(f"{a} ({LAYERS[layer_of(a)][0]}) -> {b} ({LAYERS[layer_of(b)][0]})"
                    for a in eager for b in eager[a] | deferred[a]
                    if layer_of(a) is not None and layer_of(b) is not None and layer_of(b) > layer_of(a))
    assert not upward, "imports from a higher layer:\n  " + "\n  ".join(upward)


def test_modules_under_500_lines():
    _, _, modules = import_graph()
    too_long = {}
    for path in modules.values():
        relative = path.relative_to(ROOT).as_posix()
        lines = len(path.read_text().splitlines())
        if lines >= MAX_LINES and relative not in SIZE_ALLOWLIST:
            too_long[relative] = lines
    assert not too_long, f"modules of {MAX_LINES} lines or more (split them by topic): {too_long}"


def test_allowlists_are_current():
    """An entry that no longer applies is removed, so the list never hides a new problem."""
    eager, _, _ = import_graph()
    for relative in SIZE_ALLOWLIST:
        assert (ROOT / relative).exists(), f"{relative} is gone: drop it from SIZE_ALLOWLIST"
    components = strongly_connected(eager)
    for allowed in CYCLE_ALLOWLIST:
        assert allowed in components, f"cycle {sorted(allowed)} is gone: drop it from CYCLE_ALLOWLIST"


def test_import_graph_sees_cycles(tmp_path):
    """The checker itself: a planted cycle and a dodged one are found."""
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert strongly_connected(graph) == [frozenset("abc")]
    assert _reaches(graph, "d", "c") and not _reaches(graph, "a", "d")
